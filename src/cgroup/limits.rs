//! The limits of a container's unit, planned from its definition's
//! `[resources]`, pure (tests/purity.rs): what the generator's drop-in
//! writes, what the transient scope of an ad hoc `berth run` asks systemd
//! for, and how `berth stats` turns the unit's values back into the
//! container's.
//!
//! In service mode these properties are the container's only limits: its
//! `payload/` cgroup gets none of its own and so lives within the unit's,
//! which systemd owns (`systemctl show` shows them, `systemctl
//! set-property` raises or lowers them at once). The supervisor runs in the
//! same unit (in `supervisor/`), so the memory and task limits are the
//! definition's value plus the supervisor's share ([`SUPERVISOR_MEMORY`],
//! [`SUPERVISOR_TASKS`]): the container's own processes get the full value
//! they were given. Health checks and `berth exec` processes run in
//! `payload/` and count as the container's, as in Docker. CPU and IO limits
//! are given as they are: a waiting supervisor uses neither.

use std::path::PathBuf;

use crate::config::Resources;

/// The supervisor's share of the unit's memory: what `memory.current` of
/// `<unit>/supervisor` showed with a container running, in the User-Mode
/// Linux guest of tests/uml_limits.rs (`systemd_supervisor_share_is_measured`
/// reports it: kernel stacks, page tables, its heap and the files it wrote),
/// rounded up. The supervisor never gets OOM-killed for it (oom_score_adj
/// -1000), so a container that eats into it only loses its own processes.
pub const SUPERVISOR_MEMORY: u64 = 4 * 1024 * 1024;

/// The supervisor's share of the unit's tasks: its one thread while it
/// waits (a health check it starts is in `payload/`). Before READY=1 it
/// was seen with two (tests/uml_limits.rs, during the systemd-machined
/// call), so a container forking its limit's worth at once in its first
/// milliseconds can find one task fewer.
pub const SUPERVISOR_TASKS: u64 = 1;

/// One resource-control property of the unit.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// `MemoryMax=` bytes, the supervisor's share included.
    MemoryMax(u64),
    /// `TasksMax=`, the supervisor's share included.
    TasksMax(u64),
    /// `CPUQuota=` as a number of CPUs.
    CpuQuota(f64),
    /// `IOWeight=` 1..=10000.
    IoWeight(u64),
    /// `MemorySwapMax=` bytes of swap (cgroup v2 counts swap apart).
    MemorySwapMax(u64),
    /// `MemoryLow=` bytes, the supervisor's share included: Docker's and
    /// Podman's `--memory-reservation` is a soft limit "activated when the
    /// system detects memory contention" (podman-run(1)), which runc's
    /// cgroup v2 driver writes as memory.low (libcontainer/cgroups/fs2/
    /// memory.go), not memory.high, which would throttle at all times.
    MemoryLow(u64),
    /// `AllowedCPUs=` as cpuset.cpus takes it.
    AllowedCpus(String),
    /// `CPUWeight=` 1..=10000.
    CpuWeight(u64),
    /// `IOReadBandwidthMax=` and its three siblings: one device's limit.
    Io {
        kind: IoKind,
        device: PathBuf,
        value: u64,
    },
}

/// Which of a device's IO limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    ReadBandwidth,
    WriteBandwidth,
    ReadIops,
    WriteIops,
}

impl IoKind {
    /// The unit property.
    pub fn property(self) -> &'static str {
        match self {
            IoKind::ReadBandwidth => "IOReadBandwidthMax",
            IoKind::WriteBandwidth => "IOWriteBandwidthMax",
            IoKind::ReadIops => "IOReadIOPSMax",
            IoKind::WriteIops => "IOWriteIOPSMax",
        }
    }
}

impl Limit {
    /// The property's name, as in a unit file and on the bus.
    pub fn name(&self) -> &'static str {
        match self {
            Limit::MemoryMax(_) => "MemoryMax",
            Limit::TasksMax(_) => "TasksMax",
            Limit::CpuQuota(_) => "CPUQuota",
            Limit::IoWeight(_) => "IOWeight",
            Limit::MemorySwapMax(_) => "MemorySwapMax",
            Limit::MemoryLow(_) => "MemoryLow",
            Limit::AllowedCpus(_) => "AllowedCPUs",
            Limit::CpuWeight(_) => "CPUWeight",
            Limit::Io { kind, .. } => kind.property(),
        }
    }

    /// The value as a unit file writes it.
    pub fn text(&self) -> String {
        match self {
            Limit::MemoryMax(v)
            | Limit::TasksMax(v)
            | Limit::IoWeight(v)
            | Limit::MemorySwapMax(v)
            | Limit::MemoryLow(v)
            | Limit::CpuWeight(v) => v.to_string(),
            Limit::CpuQuota(c) => cpu_quota(*c),
            Limit::AllowedCpus(c) => c.clone(),
            Limit::Io { device, value, .. } => format!("{} {value}", device.display()),
        }
    }
}

/// `CPUQuota=` for a number of CPUs: 0.5 → `50%`, 1.25 → `125%`; systemd
/// accepts two decimals of a percent.
pub fn cpu_quota(cpus: f64) -> String {
    let hundredths = (cpus * 10_000.0).round() as u64;
    let (int, frac) = (hundredths / 100, hundredths % 100);
    if frac == 0 {
        format!("{int}%")
    } else if frac % 10 == 0 {
        format!("{int}.{}%", frac / 10)
    } else {
        format!("{int}.{frac:02}%")
    }
}

/// The unit's limits for `r`, in the order the drop-in writes them.
pub fn unit_limits(r: &Resources) -> Vec<Limit> {
    let mut out = Vec::new();
    if let Some(m) = r.memory {
        out.push(Limit::MemoryMax(unit_memory(m)));
    }
    if let Some(c) = r.cpus {
        out.push(Limit::CpuQuota(c));
    }
    if let Some(p) = r.pids {
        out.push(Limit::TasksMax(p.saturating_add(SUPERVISOR_TASKS)));
    }
    if let Some(w) = r.io_weight {
        out.push(Limit::IoWeight(u64::from(w)));
    }
    if let Some(s) = r.memory_swap {
        out.push(Limit::MemorySwapMax(s));
    }
    if let Some(l) = r.memory_reservation {
        out.push(Limit::MemoryLow(unit_memory(l)));
    }
    if let Some(c) = &r.cpuset {
        out.push(Limit::AllowedCpus(c.clone()));
    }
    if let Some(w) = r.cpu_weight {
        out.push(Limit::CpuWeight(u64::from(w)));
    }
    for d in &r.io_max {
        let each = [
            (IoKind::ReadBandwidth, d.rbps),
            (IoKind::WriteBandwidth, d.wbps),
            (IoKind::ReadIops, d.riops),
            (IoKind::WriteIops, d.wiops),
        ];
        for (kind, v) in each {
            if let Some(value) = v {
                out.push(Limit::Io {
                    kind,
                    device: d.device.clone(),
                    value,
                });
            }
        }
    }
    out
}

/// A container's memory as the unit's: plus the supervisor's share.
pub fn unit_memory(container: u64) -> u64 {
    container.saturating_add(SUPERVISOR_MEMORY)
}

/// The container's memory limit under a unit's `memory.max` (or
/// MemoryMax=): what is left after the supervisor's share.
pub fn container_memory(unit: u64) -> u64 {
    unit.saturating_sub(SUPERVISOR_MEMORY)
}

/// The container's task limit under a unit's `pids.max` (TasksMax=).
pub fn container_tasks(unit: u64) -> u64 {
    unit.saturating_sub(SUPERVISOR_TASKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas() {
        assert_eq!(cpu_quota(0.5), "50%");
        assert_eq!(cpu_quota(2.0), "200%");
        assert_eq!(cpu_quota(0.333), "33.3%");
        assert_eq!(cpu_quota(0.0125), "1.25%");
    }

    #[test]
    fn memory_and_tasks_carry_the_supervisors_share_and_come_back_without_it() {
        let r = Resources {
            memory: Some(20 << 20),
            pids: Some(5),
            cpus: Some(0.5),
            io_weight: Some(100),
            ..Resources::default()
        };
        let l = unit_limits(&r);
        assert_eq!(
            l,
            vec![
                Limit::MemoryMax((20 << 20) + SUPERVISOR_MEMORY),
                Limit::CpuQuota(0.5),
                Limit::TasksMax(5 + SUPERVISOR_TASKS),
                Limit::IoWeight(100),
            ]
        );
        assert_eq!(container_memory(unit_memory(20 << 20)), 20 << 20);
        assert_eq!(container_tasks(5 + SUPERVISOR_TASKS), 5);
        assert_eq!(l[1].text(), "50%");
        assert_eq!(container_memory(1), 0);
    }

    #[test]
    fn the_new_keys_become_their_properties() {
        let r = Resources {
            memory_swap: Some(0),
            memory_reservation: Some(10 << 20),
            cpuset: Some("0-1,3".into()),
            cpu_weight: Some(50),
            io_max: vec![crate::config::IoMax {
                device: "/dev/sda".into(),
                rbps: Some(10 << 20),
                wiops: Some(100),
                ..Default::default()
            }],
            ..Resources::default()
        };
        let lines: Vec<String> = unit_limits(&r)
            .iter()
            .map(|l| format!("{}={}", l.name(), l.text()))
            .collect();
        assert_eq!(
            lines,
            [
                "MemorySwapMax=0".to_string(),
                format!("MemoryLow={}", (10 << 20) + SUPERVISOR_MEMORY),
                "AllowedCPUs=0-1,3".into(),
                "CPUWeight=50".into(),
                "IOReadBandwidthMax=/dev/sda 10485760".into(),
                "IOWriteIOPSMax=/dev/sda 100".into(),
            ]
        );
    }
}
