//! The runtime's names for `crate::cgroup` (the cgroupfs code both modes
//! share): its errors become `RuntimeError`s and its warnings go to the
//! runtime's sink (`super::warn`, the OCI `--log`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::RuntimeError;
pub use crate::cgroup::{
    blkio_to_io_weight, freeze as cgroup_freeze, missing_dirs, pids as cgroup_pids,
    read_state as cgroup_state, shares_to_weight, CgroupState, CGROUP_ROOT,
};

/// Create `path` and any missing parents; returns the directories created,
/// deepest last, for the record.
pub fn setup_cgroup(path: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    Ok(crate::cgroup::setup(path, &super::warn)?)
}

/// Step (parent, before clone): write the limits, so they hold from the
/// container's first instruction.
pub fn apply_resources(path: &Path, r: &LinuxResources) -> Result<(), RuntimeError> {
    Ok(crate::cgroup::apply_resources(path, r, &super::warn)?)
}

/// Move `pid` into the cgroup (when CLONE_INTO_CGROUP was refused).
pub fn add_process(path: &Path, pid: Pid) -> Result<(), RuntimeError> {
    Ok(crate::cgroup::move_into(path, pid.as_raw())?)
}

/// Kill what is left, wait until the cgroup is empty, and remove it together
/// with any child cgroups the container made inside it.
pub fn remove_cgroup(path: &Path) -> Result<(), RuntimeError> {
    Ok(crate::cgroup::kill_and_remove(
        path,
        Duration::from_secs(10),
    )?)
}

/// Signal every process in the cgroup tree (SIGKILL: through `cgroup.kill`).
pub fn cgroup_kill(path: &Path, sig: nix::sys::signal::Signal) -> Result<(), RuntimeError> {
    Ok(crate::cgroup::kill(path, sig)?)
}
