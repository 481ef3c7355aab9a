//! The OCI command line's per-container state (`--root/ID/state.json`) and
//! the status computed from it. The mapping of `linux.cgroupsPath` to a
//! cgroupfs directory or a systemd scope is `crate::cgroup::plan`'s. The
//! runtime's own resource record sits next to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

pub use crate::cgroup::{cgroup_dir, systemd_scope};
use crate::runtime::{self, Pid};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

/// What `create` remembers about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateFile {
    pub id: String,
    pub pid: i32,
    pub start_time: Option<u64>,
    pub bundle: PathBuf,
    pub created: String,
    pub cgroup: Option<PathBuf>,
    /// The transient systemd scope holding the container
    /// (`--systemd-cgroup`), stopped by `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// The spec as created, so `exec` gets the same confinement.
    pub config: Spec,
}

/// OCI runtime-spec status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

impl StateFile {
    pub fn load(root: &Path, id: &str) -> Result<Self, String> {
        runtime_id_ok(id)?;
        let p = container_dir(root, id).join(STATE_FILE);
        let text = std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("container '{id}' does not exist")
            } else {
                format!("read '{}': {e}", p.display())
            }
        })?;
        serde_json::from_slice(&text).map_err(|e| format!("parse '{}': {e}", p.display()))
    }

    pub fn save(&self, root: &Path) -> Result<(), String> {
        let dir = container_dir(root, &self.id);
        let tmp = dir.join(".state.json.tmp");
        let text = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        // 0600 from creation (runc's state.json is too): it names the
        // bundle, the init's pid and the spec's annotations.
        let path = dir.join(STATE_FILE);
        crate::private::write_atomic(&tmp, &path, &text)
            .map_err(|e| format!("write '{}': {e}", path.display()))
    }

    pub fn status(&self, root: &Path) -> Status {
        let pid = Pid::from_raw(self.pid);
        let alive = self.pid > 0
            && runtime::process_alive(pid)
            && (self.start_time.is_none() || runtime::proc_start_time(pid) == self.start_time);
        if !alive {
            return Status::Stopped;
        }
        if container_dir(root, &self.id).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if let Some(cg) = &self.cgroup {
            if crate::cgroup::read_state(cg)
                .map(|s| s.frozen)
                .unwrap_or(false)
            {
                return Status::Paused;
            }
        }
        Status::Running
    }

    /// The runtime-spec state object (`state` command, hooks).
    pub fn render(&self, status: Status) -> serde_json::Value {
        let annotations: HashMap<String, String> =
            self.config.annotations().clone().unwrap_or_default();
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "id": self.id,
            "status": status.as_str(),
            "bundle": self.bundle,
            "annotations": annotations,
            "created": self.created,
        });
        if status != Status::Stopped {
            v["pid"] = serde_json::json!(self.pid);
        }
        v
    }
}

fn runtime_id_ok(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid container id '{id}': expected [A-Za-z0-9][A-Za-z0-9_.+-]*"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_the_runtime_spec() {
        for (s, n) in [
            (Status::Created, "created"),
            (Status::Running, "running"),
            (Status::Paused, "paused"),
            (Status::Stopped, "stopped"),
        ] {
            assert_eq!(s.as_str(), n);
        }
    }
}
