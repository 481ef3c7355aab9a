//! config: container and network definitions (DESIGN.md §1) and global settings.
//!
//! Reads TOML under a root prefix, merges drop-ins, applies the `/etc` > `/run` >
//! `/usr/lib` precedence and validates every key, reporting each error with
//! file:line:column. Pure apart from reading files: no writes, no processes.
//!
//! Layout: `values` (string parsers), `raw` (serde key table with spans, merge),
//! `load` (precedence, masks, drop-ins, limits), `validate` (raw → typed),
//! `definition` (the typed result), `diag` (error rendering).

pub mod container_keys;
pub mod definition;
pub mod diag;
pub mod global;
pub mod load;
pub mod raw;
pub mod validate;
pub mod values;
pub mod volume_file;

pub use definition::*;
pub use diag::{Diagnostic, Diagnostics};
pub use global::{load_globals, Globals, Registry};
pub use load::{
    definition_names, load_all, load_all_networks, load_definition, load_network, LoadResult,
    CONTAINER_DIRS, MAX_FILE_SIZE, NETWORK_DIRS,
};
pub use values::{parse_duration, parse_size, validate_name};
pub use volume_file::{load_all_volumes, load_volume, VolumeDefinition, VOLUME_DIRS};
