//! berth: a declarative system-container manager built around systemd.
//!
//! The library holds every concern in its own module; the binary in `main.rs`
//! only dispatches on its name (`berth`, `berth-generator`, `berth-runtime`).
//! See ARCHITECTURE.md for the map.

pub mod build;
pub mod cgroup;
pub mod cli;
pub mod compose;
pub mod config;
pub mod containers;
pub mod distribution;
pub mod fault;
pub mod generator;
pub mod image;
pub mod log;
pub mod network;
pub mod oci;
pub mod private;
pub mod rootcopy;
pub mod rootfile;
pub mod runtime;
pub mod spec;
pub mod store;
pub mod supervise;
pub mod sys;
pub mod systemd;
pub mod teardown;
pub mod trace;
