//! cgroup v2 by plain cgroupfs writes: create the container's directory,
//! apply `linux.resources`, place, kill, freeze and remove. Only directories
//! this runtime created are ever removed. No D-Bus here (systemd-owned cgroups
//! are the supervisor's business).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::RuntimeError;

/// Where cgroup2 is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn write(path: &Path, file: &str, value: &str) -> Result<(), RuntimeError> {
    let p = path.join(file);
    std::fs::write(&p, value).map_err(|e| RuntimeError::io("write cgroup file", p, e))
}

/// Create `path` and any missing parents; returns the directories created,
/// deepest last, for the record.
pub fn setup_cgroup(path: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let mut created = Vec::new();
    for d in missing_dirs(path) {
        match std::fs::create_dir(&d) {
            Ok(()) => created.push(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(RuntimeError::io("create cgroup", d, e)),
        }
    }
    // Controllers reach the container's cgroup only through every level's
    // subtree_control; enable them in the intermediate directories we made
    // (never in a cgroup someone else owns).
    for d in created.iter().filter(|d| d.as_path() != path) {
        enable_controllers(d);
    }
    Ok(created)
}

/// The directories `setup_cgroup(path)` would create now, outermost first.
pub fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    let mut missing = Vec::new();
    let mut p = path.to_path_buf();
    while !p.exists() {
        missing.push(p.clone());
        if !p.pop() {
            break;
        }
    }
    missing.reverse();
    missing
}

/// Enable in `dir`'s subtree_control every controller `dir` has.
fn enable_controllers(dir: &Path) {
    let Ok(available) = std::fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let line: Vec<String> = available
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if line.is_empty() {
        return;
    }
    if let Err(e) = std::fs::write(dir.join("cgroup.subtree_control"), line.join(" ")) {
        super::warn(&format!(
            "enabling controllers in '{}': {e}, ignoring",
            dir.display()
        ));
    }
}

pub use crate::cgroup::{blkio_to_io_weight, shares_to_weight};

fn limit(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// The (file, value) writes for `resources`, in order. Pure.
pub fn plan_resources(r: &LinuxResources) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            out.push(("memory.max".into(), limit(l)));
            // OCI swap is memory+swap (v1); v2 wants swap alone.
            if let Some(s) = m.swap() {
                let swap = if s < 0 || l < 0 {
                    "max".to_string()
                } else {
                    (s - l).max(0).to_string()
                };
                out.push(("memory.swap.max".into(), swap));
            }
        }
        if let Some(res) = m.reservation() {
            out.push(("memory.low".into(), limit(res)));
        }
    }
    if let Some(p) = r.pids() {
        out.push(("pids.max".into(), limit(p.limit())));
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s > 0) {
            out.push(("cpu.weight".into(), shares_to_weight(s).to_string()));
        }
        if c.quota().is_some() || c.period().is_some() {
            let quota = c
                .quota()
                .filter(|q| *q > 0)
                .map(|q| q.to_string())
                .unwrap_or_else(|| "max".into());
            let period = c.period().unwrap_or(100_000);
            out.push(("cpu.max".into(), format!("{quota} {period}")));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(("cpuset.cpus".into(), cpus.to_string()));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(("cpuset.mems".into(), mems.to_string()));
        }
    }
    if let Some(w) = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|w| *w > 0)
    {
        out.push((
            "io.weight".into(),
            format!("default {}", blkio_to_io_weight(w)),
        ));
    }
    let mut unified: Vec<_> = r.unified().iter().flatten().collect();
    unified.sort();
    for (k, v) in unified {
        out.push((k.clone(), v.clone()));
    }
    out
}

/// Step (parent, before clone): write the limits, so they hold from the
/// container's first instruction. A controller that is not enabled here
/// cannot be limited: warn and go on (the box has no controllers at all).
pub fn apply_resources(path: &Path, r: &LinuxResources) -> Result<(), RuntimeError> {
    for (file, value) in plan_resources(r) {
        if file.contains('/') || file.contains("..") {
            return Err(RuntimeError::InvalidSpec {
                id: String::new(),
                reason: format!("linux.resources.unified key '{file}' is not a cgroup file name"),
            });
        }
        if !path.join(&file).exists() {
            super::warn(&format!(
                "cgroup '{}' has no '{file}' (controller not enabled), not applying '{value}', ignoring",
                path.display()
            ));
            continue;
        }
        write(path, &file, &value)?;
    }
    Ok(())
}

/// Move `pid` into the cgroup (when CLONE_INTO_CGROUP was refused).
pub fn add_process(path: &Path, pid: Pid) -> Result<(), RuntimeError> {
    write(path, "cgroup.procs", &pid.to_string())
}

/// What `cgroup.events` says.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CgroupState {
    pub populated: bool,
    pub frozen: bool,
}

pub fn cgroup_state(path: &Path) -> Result<CgroupState, RuntimeError> {
    let p = path.join("cgroup.events");
    let text = std::fs::read_to_string(&p).map_err(|e| RuntimeError::io("read", p, e))?;
    let mut s = CgroupState::default();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("populated", v)) => s.populated = v == "1",
            Some(("frozen", v)) => s.frozen = v == "1",
            _ => {}
        }
    }
    Ok(s)
}

/// Every PID in the cgroup and its descendants.
pub fn cgroup_pids(path: &Path) -> Result<Vec<i32>, RuntimeError> {
    let mut out = Vec::new();
    let p = path.join("cgroup.procs");
    let text = std::fs::read_to_string(&p).map_err(|e| RuntimeError::io("read", p, e))?;
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(cgroup_pids(&e.path())?);
            }
        }
    }
    Ok(out)
}

/// Signal every process in the cgroup tree; SIGKILL uses `cgroup.kill`
/// (Linux 5.14) which cannot miss a forking process.
pub fn cgroup_kill(path: &Path, sig: nix::sys::signal::Signal) -> Result<(), RuntimeError> {
    if sig == nix::sys::signal::Signal::SIGKILL && path.join("cgroup.kill").exists() {
        return write(path, "cgroup.kill", "1");
    }
    for pid in cgroup_pids(path)? {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
    }
    Ok(())
}

/// Freeze or thaw the cgroup and wait until the kernel says it is done.
pub fn cgroup_freeze(path: &Path, frozen: bool) -> Result<(), RuntimeError> {
    write(path, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if cgroup_state(path)?.frozen == frozen {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(RuntimeError::CgroupBusy {
        path: path.to_path_buf(),
        millis: 5000,
    })
}

/// Kill what is left, wait until the cgroup is empty, and remove it together
/// with any child cgroups the container made inside it.
pub fn remove_cgroup(path: &Path) -> Result<(), RuntimeError> {
    if !path.exists() {
        return Ok(());
    }
    cgroup_kill(path, nix::sys::signal::Signal::SIGKILL)?;
    let start = Instant::now();
    let limit = Duration::from_secs(10);
    loop {
        match cgroup_state(path) {
            Ok(s) if s.populated => {}
            _ => break,
        }
        if start.elapsed() > limit {
            return Err(RuntimeError::CgroupBusy {
                path: path.to_path_buf(),
                millis: limit.as_millis() as u64,
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    remove_tree(path)
}

fn remove_tree(path: &Path) -> Result<(), RuntimeError> {
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    // rmdir on cgroupfs can race with the last exiting task: retry briefly.
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 500 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(RuntimeError::io("remove cgroup", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder,
    };

    #[test]
    fn missing_dirs_are_the_ones_setup_creates_outermost_first() {
        let t = tempfile::tempdir().unwrap();
        let leaf = t.path().join("a/b/c");
        let planned = missing_dirs(&leaf);
        assert_eq!(
            planned,
            vec![t.path().join("a"), t.path().join("a/b"), leaf.clone()]
        );
        assert_eq!(setup_cgroup(&leaf).unwrap(), planned);
        assert!(missing_dirs(&leaf).is_empty());
    }

    #[test]
    fn resources_plan_to_v2_files() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(268_435_456i64)
                    .swap(536_870_912i64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(200i64).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .shares(1024u64)
                    .build()
                    .unwrap(),
            )
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(100u16)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let plan = plan_resources(&r);
        let get = |k: &str| plan.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        assert_eq!(get("memory.max"), Some("268435456"));
        assert_eq!(get("memory.swap.max"), Some("268435456"));
        assert_eq!(get("pids.max"), Some("200"));
        assert_eq!(get("cpu.max"), Some("50000 100000"));
        assert_eq!(get("cpu.weight"), Some("39"));
        assert_eq!(get("io.weight"), Some("default 910"));
    }

    #[test]
    fn negative_limits_mean_max() {
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(-1i64).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            plan_resources(&r),
            vec![("pids.max".to_string(), "max".to_string())]
        );
    }

    #[test]
    fn weight_conversions_match_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }
}
