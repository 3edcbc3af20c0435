//! OTLP/JSON for profiles (being written).
