//! config: read definitions and global settings from TOML, with spans for errors.
//!
//! Pure: no syscalls beyond reading files; nothing here starts processes.

pub mod diag;
pub mod global;
pub mod raw;
pub mod values;

pub use diag::{Diagnostic, Diagnostics};
pub use global::{load_globals, Globals, Registry};
pub use values::{parse_duration, parse_size, validate_name};
