//! placeholder
pub mod config;
pub mod error;
pub mod protocol;
pub use error::{Error, ProtocolError};
