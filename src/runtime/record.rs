//! The record of everything a start created on the host (state dir, cgroup
//! directories, exec FIFO, overlay mount point), written once with all it
//! will create before any of it exists (teardown skips what is missing), so
//! that `cleanup` can undo a start that crashed at any point.
//! Mounts are not recorded: they all live in the container's own mount
//! namespace and vanish with it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RuntimeError;

pub const RECORD_FILE: &str = "record.json";
/// The init's PID, beside the record: see [`Record::save_init`].
pub const INIT_FILE: &str = "init.json";

#[derive(Debug, Serialize, Deserialize)]
struct InitRecord {
    pid: i32,
    start_time: Option<u64>,
}

/// What a start created, in the order it created it.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    /// The init, once cloned; with its start time to tell it from a reused PID.
    pub pid: Option<i32>,
    pub start_time: Option<u64>,
    /// The container's cgroup (created or not).
    pub cgroup: Option<PathBuf>,
    /// The cgroup directories this start created, outermost first.
    #[serde(default)]
    pub cgroup_dirs: Vec<PathBuf>,
    pub rootfs_mountpoint: Option<PathBuf>,
    pub exec_fifo: Option<PathBuf>,
    #[serde(default)]
    pub dir_created: bool,
}

/// `state_dir/ID`.
pub fn container_dir(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join(id)
}

/// Container IDs become path components and cgroup names: no separators, no
/// dot-dot, nothing a shell or cgroupfs would trip over.
pub fn validate_id(id: &str) -> Result<(), RuntimeError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidSpec {
            id: id.to_string(),
            reason: "container id must match [A-Za-z0-9][A-Za-z0-9_.+-]*".into(),
        })
    }
}

impl Record {
    pub fn new(id: &str) -> Self {
        Record {
            id: id.to_string(),
            ..Default::default()
        }
    }

    /// Write atomically (temp file + rename), so a crash never leaves half a record.
    pub fn save(&self, dir: &Path) -> Result<(), RuntimeError> {
        let path = dir.join(RECORD_FILE);
        let tmp = dir.join(".record.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| RuntimeError::Record {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        crate::private::write_atomic(&tmp, &path, &text)
            .map_err(|e| RuntimeError::io("write record", &path, e))
    }

    /// Save the init's PID and start time in a file of their own, created
    /// once: writing them into the record would rename over record.json,
    /// and on ext4 a rename over an existing file starts writeback that
    /// the removal of the state dir then waits for. Atomic like `save`.
    pub fn save_init(&self, dir: &Path) -> Result<(), RuntimeError> {
        let Some(pid) = self.pid else {
            return Ok(());
        };
        let path = dir.join(INIT_FILE);
        let tmp = dir.join(".init.json.tmp");
        let init = InitRecord {
            pid,
            start_time: self.start_time,
        };
        let text = serde_json::to_vec(&init).map_err(|e| RuntimeError::Record {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        crate::private::write_atomic(&tmp, &path, &text)
            .map_err(|e| RuntimeError::io("write record", &path, e))
    }

    pub fn load(dir: &Path) -> Result<Self, RuntimeError> {
        let path = dir.join(RECORD_FILE);
        let text = std::fs::read(&path).map_err(|e| RuntimeError::io("read record", &path, e))?;
        let mut rec: Record = serde_json::from_slice(&text).map_err(|e| RuntimeError::Record {
            path,
            reason: e.to_string(),
        })?;
        let path = dir.join(INIT_FILE);
        match std::fs::read(&path) {
            Ok(text) => {
                let init: InitRecord =
                    serde_json::from_slice(&text).map_err(|e| RuntimeError::Record {
                        path,
                        reason: e.to_string(),
                    })?;
                rec.pid = Some(init.pid);
                rec.start_time = init.start_time;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::io("read record", &path, e)),
        }
        Ok(rec)
    }
}

/// Remove everything in `rec`, newest first, continuing past failures.
pub fn teardown(dir: &Path, rec: &Record) -> Result<(), Vec<RuntimeError>> {
    let mut errors = Vec::new();
    if let Some(cg) = &rec.cgroup {
        if rec.cgroup_dirs.iter().any(|d| d == cg) {
            if let Err(e) = super::cgroup::remove_cgroup(cg) {
                errors.push(e);
            }
            for d in rec.cgroup_dirs.iter().rev().filter(|d| *d != cg) {
                if let Err(e) = std::fs::remove_dir(d) {
                    // A parent this start made may since hold another
                    // container's cgroup (EBUSY): it is theirs now too.
                    let busy = matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY));
                    if e.kind() != std::io::ErrorKind::NotFound && !busy {
                        errors.push(RuntimeError::io("remove cgroup", d, e));
                    }
                }
            }
        } else if cg.exists() {
            // A cgroup the caller made: empty it, but leave the directory.
            if let Err(e) = super::cgroup::cgroup_kill(cg, nix::sys::signal::Signal::SIGKILL) {
                errors.push(e);
            }
        }
    }
    if let Some(f) = &rec.exec_fifo {
        if let Err(e) = std::fs::remove_file(f) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(RuntimeError::io("remove exec fifo", f, e));
            }
        }
    }
    if let Some(m) = &rec.rootfs_mountpoint {
        // Empty on the host: the overlay lived in the container's mount namespace.
        if let Err(e) = std::fs::remove_dir(m) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(RuntimeError::io("remove overlay mount point", m, e));
            }
        }
    }
    if rec.dir_created {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(RuntimeError::io("remove state dir", dir, e));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_path_safe() {
        for ok in ["web", "a.b-c_d", "0123", "x+y"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn record_round_trips_and_teardown_removes_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("c1");
        std::fs::create_dir(&dir).unwrap();
        let fifo = dir.join("exec.fifo");
        std::fs::write(&fifo, "").unwrap();
        let mp = dir.join("rootfs");
        std::fs::create_dir(&mp).unwrap();
        let rec = Record {
            id: "c1".into(),
            pid: Some(42),
            exec_fifo: Some(fifo),
            rootfs_mountpoint: Some(mp),
            dir_created: true,
            ..Default::default()
        };
        rec.save(&dir).unwrap();
        assert_eq!(Record::load(&dir).unwrap(), rec);
        // The PID saved later, on its own, is part of the loaded record.
        let mut without_pid = rec.clone();
        without_pid.pid = None;
        without_pid.save(&dir).unwrap();
        let started = Record {
            start_time: Some(7),
            ..rec.clone()
        };
        started.save_init(&dir).unwrap();
        assert_eq!(Record::load(&dir).unwrap(), started);
        teardown(&dir, &rec).unwrap();
        assert!(!dir.exists());
    }
}
