//! Where the runtime keeps the list of what a start created on the host
//! (state dir, cgroup directories, exec FIFO, overlay mount point, the
//! init): `state_dir/ID/resources`, a [`crate::teardown::List`], so that
//! `cleanup` can undo a start that crashed at any point. Mounts are not
//! recorded: they all live in the container's own mount namespace and
//! vanish with it.

use std::path::{Path, PathBuf};

use super::RuntimeError;
use crate::teardown::{List, TeardownError};

/// The list's file name in the container's state dir.
pub const RESOURCES_FILE: &str = "resources";

/// `state_dir/ID`.
pub fn container_dir(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join(id)
}

/// The (new or existing) list of container dir `dir`.
pub fn list(dir: &Path) -> List {
    List::new(dir.join(RESOURCES_FILE))
}

/// The list of container dir `dir`, as recorded.
pub fn load(dir: &Path) -> Result<List, RuntimeError> {
    let path = dir.join(RESOURCES_FILE);
    match List::load(&path) {
        Ok(Some(list)) => Ok(list),
        Ok(None) => Err(RuntimeError::Record {
            path,
            reason: "no such file".into(),
        }),
        Err(e) => Err(e.into()),
    }
}

impl From<TeardownError> for RuntimeError {
    fn from(e: TeardownError) -> Self {
        match e {
            TeardownError::Io { op, path, error } => RuntimeError::Io {
                op,
                path,
                source: error,
            },
            TeardownError::List { path, reason } => RuntimeError::Record { path, reason },
            TeardownError::Runtime(e) => *e,
            // No runtime list holds a supervisor's resources.
            TeardownError::Supervise(e) => RuntimeError::Record {
                path: PathBuf::new(),
                reason: e.to_string(),
            },
            TeardownError::Network(reason) => RuntimeError::Record {
                path: PathBuf::new(),
                reason,
            },
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teardown::Resource;

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
    fn list_round_trips_and_teardown_removes_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("c1");
        std::fs::create_dir(&dir).unwrap();
        let fifo = dir.join("exec.fifo");
        std::fs::write(&fifo, "").unwrap();
        let mp = dir.join("rootfs");
        std::fs::create_dir(&mp).unwrap();
        let mut rec = list(&dir);
        rec.record(Resource::Tree { path: dir.clone() }).unwrap();
        rec.record_all(vec![
            Resource::EmptyDir { path: mp },
            Resource::File { path: fifo },
        ])
        .unwrap();
        // The init, recorded later on its own, is part of the loaded list.
        rec.record(Resource::Process {
            pid: i32::MAX,
            start_time: Some(7),
        })
        .unwrap();
        let loaded = load(&dir).unwrap();
        assert_eq!(loaded.entries(), rec.entries());
        crate::teardown::teardown(loaded.entries()).unwrap();
        assert!(!dir.exists());
    }
}
