//! Extensions: things beside the pipelines (health, auth, storage).

pub mod bearertokenauth;
pub mod file_storage;
pub mod health_check;
pub mod hotspan_ui;
