//! The attack suite (issue 12): each module is one escape class that runc or
//! crun has already paid for with a CVE, and each test runs the real attack
//! against berth — as `berth-runtime` on a hostile bundle (`Sandbox`) and, where
//! the class reaches it, in service mode under a real systemd (`SystemdBox`) —
//! then asserts that the host is untouched: no file read or written outside the
//! root, no host fd or namespace reachable, no disk filled.
//!
//! Where a peer runtime is installed (crun, runc), the same bundle runs on it
//! too and what the peer does is printed (a peer is a reference, not a proof).
//!
//! Adding a case: add a `#[test]` to the module of its class, or a new module
//! file beside this one and a `mod` line below.

mod exe;
mod fds;
mod files;
mod paths;
mod procfs;
mod reaper;
#[path = "../support/registry.rs"]
mod reg;
mod registry;
#[path = "../support/runtime.rs"]
mod rt;
mod store;
#[path = "../support/mod.rs"]
mod support;
