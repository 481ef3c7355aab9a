//! cgroup v2 by plain cgroupfs reads and writes, for both modes: create a
//! container's directory (enabling controllers on the way), apply
//! `linux.resources`, place, signal, freeze, read usage, and remove. No
//! D-Bus here: a systemd-owned cgroup is created and removed by systemd, and
//! berth only writes inside what it was delegated. Only directories berth
//! created are ever removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::plan::{parse_cpu_usage, parse_events, parse_unit_cgroup, plan_resources};
use super::{CgroupState, CGROUP_ROOT};

/// Errors on cgroupfs; each names the cgroup or file.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    // The cause is part of the message and not also a `source`, so an error
    // chain (`log::error_chain`) prints it once.
    #[error("{op} '{path}': {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cgroup '{path}' still has processes after {millis} ms")]
    Busy { path: PathBuf, millis: u64 },
    #[error("linux.resources.unified key '{key}' is not a cgroup file name")]
    UnifiedKey { key: String },
    #[error("'{path}' has no cgroup2 entry (\"0::/...\"): berth needs the unified hierarchy")]
    NotUnified { path: PathBuf },
}

fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.into();
    move |error| CgroupError::Io { op, path, error }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(io("write cgroup file", p))
}

/// Create `dir` (fine if it exists).
pub fn make(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("create cgroup", dir)(e)),
    }
}

/// The directories `setup(path)` would create now, outermost first.
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

/// Create `path` and any missing parents; returns the directories created,
/// deepest last, for the record. Controllers reach the container's cgroup
/// only through every level's subtree_control, so they are enabled in the
/// intermediate directories made here (never in a cgroup someone else
/// owns); a refusal is passed to `warn`.
pub fn setup(path: &Path, warn: &dyn Fn(&str)) -> Result<Vec<PathBuf>, CgroupError> {
    let mut created = Vec::new();
    for d in missing_dirs(path) {
        match std::fs::create_dir(&d) {
            Ok(()) => created.push(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("create cgroup", d)(e)),
        }
    }
    for d in created.iter().filter(|d| d.as_path() != path) {
        if let Err(e) = enable_controllers(d) {
            warn(&format!("{e}, ignoring"));
        }
    }
    Ok(created)
}

/// Enable in `dir`'s subtree_control every controller `dir` has, for its
/// children. Only valid once `dir` holds no process (cgroups(7), "no
/// internal processes"). Without controllers (the namespace box has none)
/// there is nothing to do.
pub fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let Ok(available) = std::fs::read_to_string(dir.join("cgroup.controllers")) else {
        return Ok(());
    };
    let line: Vec<String> = available
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if line.is_empty() {
        return Ok(());
    }
    let control = dir.join("cgroup.subtree_control");
    std::fs::write(&control, line.join(" ")).map_err(io("enable controllers in", control))
}

/// Write the limits of `r` (parent, before clone: they hold from the
/// container's first instruction). A controller that is not enabled here
/// cannot be limited: `warn` and go on (the box has no controllers at all).
pub fn apply_resources(
    path: &Path,
    r: &LinuxResources,
    warn: &dyn Fn(&str),
) -> Result<(), CgroupError> {
    for (file, value) in plan_resources(r) {
        if file.contains('/') || file.contains("..") {
            return Err(CgroupError::UnifiedKey { key: file });
        }
        if !path.join(&file).exists() {
            warn(&format!(
                "cgroup '{}' has no '{file}' (controller not enabled), not applying '{value}', ignoring",
                path.display()
            ));
            continue;
        }
        write(path, &file, &value)?;
    }
    Ok(())
}

/// Move process `pid` (0: the caller) into `dir` (also when
/// CLONE_INTO_CGROUP was refused).
pub fn move_into(dir: &Path, pid: i32) -> Result<(), CgroupError> {
    write(dir, "cgroup.procs", &pid.to_string())
}

/// cgroupfs directory of the unit the calling process runs in.
pub fn unit_cgroup_dir() -> Result<PathBuf, CgroupError> {
    let file = "/proc/self/cgroup";
    let text = std::fs::read_to_string(file).map_err(io("read", file))?;
    let rel = parse_unit_cgroup(&text).ok_or_else(|| CgroupError::NotUnified {
        path: PathBuf::from(file),
    })?;
    Ok(Path::new(CGROUP_ROOT).join(rel.trim_start_matches('/')))
}

/// What `cgroup.events` says now.
pub fn read_state(path: &Path) -> Result<CgroupState, CgroupError> {
    let p = path.join("cgroup.events");
    let text = std::fs::read_to_string(&p).map_err(io("read", p))?;
    Ok(parse_events(&text))
}

/// Every PID in the cgroup and its descendants.
pub fn pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut out = Vec::new();
    let p = path.join("cgroup.procs");
    let text = std::fs::read_to_string(&p).map_err(io("read", p))?;
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for child in child_dirs(path) {
        out.extend(pids(&child)?);
    }
    Ok(out)
}

fn child_dirs(path: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect()
}

/// Signal every process in the cgroup tree; SIGKILL uses `cgroup.kill`
/// (Linux 5.14) which cannot miss a forking process.
pub fn kill(path: &Path, sig: Signal) -> Result<(), CgroupError> {
    if sig == Signal::SIGKILL && path.join("cgroup.kill").exists() {
        return write(path, "cgroup.kill", "1");
    }
    for pid in pids(path)? {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
    }
    Ok(())
}

/// Freeze or thaw the cgroup and wait until the kernel says it is done.
pub fn freeze(path: &Path, frozen: bool) -> Result<(), CgroupError> {
    write(path, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let limit = Duration::from_secs(5);
    let start = Instant::now();
    while start.elapsed() < limit {
        if read_state(path)?.frozen == frozen {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(CgroupError::Busy {
        path: path.to_path_buf(),
        millis: limit.as_millis() as u64,
    })
}

/// Kill what is left, wait up to `wait` until the cgroup is empty, and
/// remove it together with any child cgroups the container made inside
/// it. Missing is fine.
pub fn kill_and_remove(path: &Path, wait: Duration) -> Result<(), CgroupError> {
    if !path.exists() {
        return Ok(());
    }
    kill(path, Signal::SIGKILL)?;
    let start = Instant::now();
    while read_state(path).is_ok_and(|s| s.populated) {
        if start.elapsed() > wait {
            return Err(CgroupError::Busy {
                path: path.to_path_buf(),
                millis: wait.as_millis() as u64,
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    remove_tree(path)
}

fn remove_tree(path: &Path) -> Result<(), CgroupError> {
    for child in child_dirs(path) {
        remove_tree(&child)?;
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
            Err(e) => return Err(io("remove cgroup", path)(e)),
        }
    }
}

/// Remove `dir` if it has no processes (and no child cgroups); missing is
/// fine.
pub fn remove_empty(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove cgroup", dir)(e)),
    }
}

/// What a cgroup uses, for `berth stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    /// `memory.current` (absent without the memory controller).
    pub memory_bytes: Option<u64>,
    /// `memory.max`, `None` when unlimited or absent.
    pub memory_max: Option<u64>,
    /// `pids.current`, else the count of tasks in the cgroup.
    pub pids: u64,
    /// `usage_usec` of `cpu.stat` (always there in cgroup v2).
    pub cpu_usec: Option<u64>,
    pub frozen: bool,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn count_tasks(cgroup: &Path) -> u64 {
    let threads = std::fs::read_to_string(cgroup.join("cgroup.threads"))
        .map(|t| t.lines().count() as u64)
        .unwrap_or(0);
    threads
        + child_dirs(cgroup)
            .iter()
            .map(|c| count_tasks(c))
            .sum::<u64>()
}

/// Read the usage of `cgroup`; what a missing controller does not count is
/// `None`.
pub fn usage(cgroup: &Path) -> Usage {
    Usage {
        memory_bytes: read_u64(&cgroup.join("memory.current")),
        memory_max: read_u64(&cgroup.join("memory.max")),
        pids: read_u64(&cgroup.join("pids.current")).unwrap_or_else(|| count_tasks(cgroup)),
        cpu_usec: std::fs::read_to_string(cgroup.join("cpu.stat"))
            .ok()
            .and_then(|t| parse_cpu_usage(&t)),
        frozen: read_state(cgroup).map(|s| s.frozen).unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dirs_are_the_ones_setup_creates_outermost_first() {
        let t = tempfile::tempdir().unwrap();
        let leaf = t.path().join("a/b/c");
        let planned = missing_dirs(&leaf);
        assert_eq!(
            planned,
            vec![t.path().join("a"), t.path().join("a/b"), leaf.clone()]
        );
        assert_eq!(setup(&leaf, &|_| {}).unwrap(), planned);
        assert!(missing_dirs(&leaf).is_empty());
    }

    #[test]
    fn controllers_pass_to_children_and_a_refusal_is_an_error_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        // No cgroup.controllers (not cgroupfs, or no controllers): nothing to do.
        enable_controllers(t.path()).unwrap();
        std::fs::write(t.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        enable_controllers(t.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        let sub = t.path().join("sub");
        std::fs::create_dir_all(sub.join("cgroup.subtree_control")).unwrap();
        std::fs::write(sub.join("cgroup.controllers"), "cpu").unwrap();
        let e = enable_controllers(&sub).unwrap_err();
        // The cause once: in the message, not again as a source.
        assert!(std::error::Error::source(&e).is_none());
        let e = e.to_string();
        assert!(
            e.starts_with("enable controllers in '") && e.contains("cgroup.subtree_control"),
            "{e}"
        );
    }

    #[test]
    fn usage_reads_what_is_there() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("memory.current"), "4096\n").unwrap();
        std::fs::write(t.path().join("memory.max"), "max\n").unwrap();
        std::fs::write(t.path().join("cgroup.threads"), "1\n2\n").unwrap();
        std::fs::write(t.path().join("cpu.stat"), "usage_usec 77\n").unwrap();
        std::fs::write(t.path().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        let u = usage(t.path());
        assert_eq!(u.memory_bytes, Some(4096));
        assert_eq!(u.memory_max, None);
        assert_eq!(u.pids, 2);
        assert_eq!(u.cpu_usec, Some(77));
        assert!(u.frozen);
    }
}
