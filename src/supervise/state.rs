//! The record of one running container: `/run/berth/containers/NAME/state.json`
//! (who supervises it, its image, process and health, for `berth` to read)
//! beside `resources`, the list of everything its start created
//! ([`crate::teardown`]), appended before each resource is created, so
//! `berth cleanup NAME` after a crash (even a SIGKILL of the supervisor)
//! knows everything there is to undo.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SuperviseError;
use crate::teardown::Resource;

/// File name of the record inside the container's run dir.
pub const STATE_FILE: &str = "state.json";
/// File name of the list of created resources inside the run dir.
pub const RESOURCES_FILE: &str = "resources";

/// `RUN/seccomp-cache`, beside `containers/` (`runtime::seccomp::Compiled`).
pub const SECCOMP_CACHE: &str = "seccomp-cache";

/// Where a container's files live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paths {
    /// `RUN/containers/NAME`: state.json, hostname, hosts, resolv.conf,
    /// and the runtime's own record under `runtime/`.
    pub run_dir: PathBuf,
    /// `STORAGE/containers/NAME`: the overlay's upper and work dirs.
    pub storage_dir: PathBuf,
    /// `RUN/userns` (`userns::userns_dir`): the `userns = "auto"` ranges.
    pub userns_dir: PathBuf,
    /// `RUN/seccomp-cache`: compiled seccomp programs, shared by every
    /// container and kept across starts (`runtime::seccomp::Compiled`).
    pub seccomp_cache: PathBuf,
    pub name: String,
}

impl Paths {
    /// `run_root` is `/run/berth` (under the root prefix), `storage_root`
    /// the store's root.
    pub fn new(run_root: &Path, storage_root: &Path, name: &str) -> Paths {
        Paths {
            run_dir: run_root.join("containers").join(name),
            storage_dir: storage_root.join("containers").join(name),
            userns_dir: run_root.join("userns"),
            seccomp_cache: run_root.join(SECCOMP_CACHE),
            name: name.to_string(),
        }
    }
    /// The list of what the last start created.
    pub fn resources(&self) -> PathBuf {
        self.run_dir.join(RESOURCES_FILE)
    }
    /// What a start of this container may have made, oldest first: the
    /// list to walk when a run dir has none (a crash before its first line).
    pub fn default_resources(&self) -> Vec<Resource> {
        vec![
            Resource::Tree {
                path: self.run_dir.clone(),
            },
            Resource::IdRange {
                dir: self.userns_dir.clone(),
                name: self.name.clone(),
            },
            Resource::EmptyDir {
                path: self.storage_dir.clone(),
            },
            Resource::Tree { path: self.upper() },
            Resource::Tree { path: self.work() },
            Resource::EmptyDir {
                path: self.runtime_state_dir(),
            },
            Resource::Container {
                state_dir: self.runtime_state_dir(),
                id: self.name.clone(),
            },
        ]
    }
    /// The runtime's `state_dir` (its record is `runtime/NAME/`).
    pub fn runtime_state_dir(&self) -> PathBuf {
        self.run_dir.join("runtime")
    }
    pub fn upper(&self) -> PathBuf {
        self.storage_dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.storage_dir.join("work")
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Who runs the container and what it runs, for `berth` to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    /// The definition's hash this start ran.
    pub definition_hash: String,
    pub supervisor_pid: i32,
    /// Its start time (/proc/PID/stat), telling it from a later process
    /// given the same PID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor_start_time: Option<u64>,
    /// The image reference the container runs (`image`), when not a rootfs
    /// dir; with `image_digest` it keeps the image from `berth prune`/`rmi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image's manifest digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Processes of the container the kernel's OOM killer ended in this
    /// run (payload/'s `memory.events` oom_kill), counted while it runs:
    /// `berth ps` and `inspect` show OOMKilled.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub oom_kills: u64,
    /// `starting`, `healthy` or `unhealthy` with `[health]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The container's main process (host PID), once created.
    pub container_pid: Option<i32>,
    /// Its start time, so `berth exec` joins that process or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_start_time: Option<u64>,
    /// The unit's delegated cgroup (cgroupfs path).
    pub unit_cgroup: Option<PathBuf>,
    /// `<unit>/payload`, the container's cgroup (its usage is read there).
    pub payload_cgroup: Option<PathBuf>,
    /// The bridge networks it joined, in the definition's order (bridge
    /// mode; empty in the others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Attached>,
    /// Its published ports as written (`8080:80/tcp`), reached at its
    /// addresses on the first network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<String>,
}

/// A container's place on one bridge network, as `berth ps`, `inspect` and
/// `port` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    pub network: String,
    pub bridge: String,
    /// The interface inside: `eth0`, `eth1`, … in the definition's order.
    pub interface: String,
    /// Its peer on the host, a port of `bridge`.
    pub host_veth: String,
    pub ipv4: std::net::IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<std::net::IpAddr>,
}

impl State {
    /// Whether the supervisor this record names still runs (and is not the
    /// caller): a berth process with that PID. A reused PID running
    /// something else does not count.
    pub fn supervisor_alive(&self) -> bool {
        let pid = self.supervisor_pid;
        if pid <= 0 || pid as u32 == std::process::id() {
            return false;
        }
        let berth = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .next()
                    .is_some_and(|argv0| argv0.ends_with(b"berth"))
            })
            .unwrap_or(false);
        // Another berth process (another container's supervisor) may have
        // been given the PID since: the recorded start time tells them apart.
        berth
            && match self.supervisor_start_time {
                None => true,
                Some(t) => {
                    crate::runtime::proc_start_time(crate::runtime::Pid::from_raw(pid)) == Some(t)
                }
            }
    }

    /// Write atomically (temp file + rename), so a crash never leaves half a record.
    pub fn save(&self, run_dir: &Path) -> Result<(), SuperviseError> {
        let path = run_dir.join(STATE_FILE);
        let tmp = run_dir.join(".state.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| SuperviseError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        crate::private::write_atomic(&tmp, &path, &text)
            .map_err(|e| SuperviseError::io("write", &path, e))
    }

    /// Read the record; `Ok(None)` when there is none.
    pub fn load(run_dir: &Path) -> Result<Option<State>, SuperviseError> {
        let path = run_dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| SuperviseError::State {
                    path,
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SuperviseError::io("read", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), None);
        let s = State {
            name: "web".into(),
            container_pid: Some(42),
            payload_cgroup: Some("/sys/fs/cgroup/berth@web.service/payload".into()),
            ..State::default()
        };
        s.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), Some(s));
    }

    #[test]
    fn paths() {
        let p = Paths::new(Path::new("/run/berth"), Path::new("/var/lib/berth"), "web");
        assert_eq!(p.run_dir, Path::new("/run/berth/containers/web"));
        assert_eq!(p.upper(), Path::new("/var/lib/berth/containers/web/upper"));
        assert_eq!(
            p.runtime_state_dir(),
            Path::new("/run/berth/containers/web/runtime")
        );
    }
}
