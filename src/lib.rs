//! forwarden
pub mod yaml;
