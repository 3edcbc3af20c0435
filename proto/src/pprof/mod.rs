//! pprof decoding and conversion to OTLP profiles (being written).
