//! config: read definitions and global settings from TOML, with spans for errors.
//!
//! Pure: no syscalls beyond reading files; nothing here starts processes.

pub mod global;

pub use global::{load_globals, Globals, Registry};
