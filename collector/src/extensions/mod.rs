//! Extensions: things beside the pipelines (health, auth, storage).

pub mod health_check;
