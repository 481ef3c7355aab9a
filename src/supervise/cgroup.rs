//! The unit's delegated cgroup (systemd.resource-control(5), Delegate=yes):
//! the supervisor moves itself into `<unit>/supervisor` and the container
//! runs in `<unit>/payload`, so systemd's accounting and limits cover both
//! while the supervisor's own memory never counts as the container's.

use std::path::{Path, PathBuf};

use super::SuperviseError;
use crate::runtime::CGROUP_ROOT;

/// The cgroup2 path in `/proc/self/cgroup` text (`0::/berth.slice/x.service`).
/// Control processes of a delegated unit run in `<unit>/.control`, and a
/// supervisor that moved itself runs in `<unit>/supervisor`; both map back
/// to the unit.
pub fn parse_unit_cgroup(proc_self_cgroup: &str) -> Option<String> {
    let path = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim();
    if !path.starts_with('/') {
        return None;
    }
    let unit = path
        .strip_suffix("/.control")
        .or_else(|| path.strip_suffix("/supervisor"))
        .unwrap_or(path);
    Some(unit.to_string())
}

/// cgroupfs directory of the unit the calling process runs in.
pub fn unit_cgroup_dir() -> Result<PathBuf, SuperviseError> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| SuperviseError::io("read", "/proc/self/cgroup", e))?;
    let rel = parse_unit_cgroup(&text).ok_or_else(|| SuperviseError::Cgroup {
        path: PathBuf::from("/proc/self/cgroup"),
        reason: "no cgroup2 entry (\"0::/...\"): berth needs the unified hierarchy".into(),
    })?;
    Ok(Path::new(CGROUP_ROOT).join(rel.trim_start_matches('/')))
}

/// `oom_kill N` of a cgroup's `memory.events` (cgroup-v2.rst): how many
/// processes the OOM killer ended in it.
pub fn parse_oom_kills(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Create `dir` (fine if it exists).
pub fn make(dir: &Path) -> Result<(), SuperviseError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(SuperviseError::io("create cgroup", dir, e)),
    }
}

/// Pass every controller the unit has on to its children (`supervisor/`,
/// `payload/`), so the container's own limits apply to `payload/` alone.
/// Only valid once the unit's own cgroup holds no process (cgroups(7), "no
/// internal processes"). Without controllers (a box without them) there is
/// nothing to do; a refusal only loses the per-payload limits, systemd's
/// limits on the whole unit still hold, so it is a warning.
pub fn enable_controllers(unit: &Path) -> Option<String> {
    let available = std::fs::read_to_string(unit.join("cgroup.controllers")).ok()?;
    let line: Vec<String> = available
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if line.is_empty() {
        return None;
    }
    let control = unit.join("cgroup.subtree_control");
    std::fs::write(&control, line.join(" "))
        .err()
        .map(|e| format!("cannot enable controllers in '{}': {e}", control.display()))
}

/// Move process `pid` (0: the caller) into `dir`.
pub fn move_into(dir: &Path, pid: i32) -> Result<(), SuperviseError> {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).map_err(|e| SuperviseError::io("write", &procs, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_from_memory_events() {
        let t = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(t), 1);
        assert_eq!(parse_oom_kills(""), 0);
    }

    #[test]
    fn unit_from_proc_self_cgroup() {
        let u = |s: &str| parse_unit_cgroup(s);
        assert_eq!(
            u("0::/berth.slice/berth@web.service\n").as_deref(),
            Some("/berth.slice/berth@web.service")
        );
        assert_eq!(
            u("0::/berth.slice/berth@web.service/.control\n").as_deref(),
            Some("/berth.slice/berth@web.service")
        );
        assert_eq!(
            u("12:pids:/x\n0::/berth.slice/berth@web.service/supervisor\n").as_deref(),
            Some("/berth.slice/berth@web.service")
        );
        assert_eq!(u("1:name=systemd:/x\n"), None);
    }
}
