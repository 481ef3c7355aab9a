//! cgroups, for both modes. `plan` is pure (tests/purity.rs): the OCI
//! spec's resources as cgroup v2 files and the conversions systemd's
//! properties share (weights, CPU quota), where `linux.cgroupsPath` puts a
//! container, and the parsers of cgroupfs files. `fs` acts on cgroupfs: the
//! runtime's container cgroup (`runtime::cgroup` names it for the runtime),
//! service mode's `supervisor/` and `payload/` in the unit's delegated
//! cgroup, and the usage `berth stats` reads.

pub mod fs;
pub mod limits;
pub mod plan;

pub use fs::{
    apply_resources, enable_controllers, freeze, kill, kill_and_remove, make, missing_dirs,
    move_into, pids, read_state, remove_empty, setup, unit_cgroup_dir, usage, CgroupError, Usage,
};
pub use plan::{
    blkio_to_io_weight, cgroup_dir, cpu_max, cpus_to_quota, devices_only, expand_slice,
    parse_events, parse_oom_kills, parse_unit_cgroup, plan_resources, quota_per_second,
    shares_to_weight, systemd_scope, CgroupState, SystemdScope, CGROUP_ROOT, CPU_PERIOD_USEC,
};
