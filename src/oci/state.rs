//! The OCI command line's per-container state (`--root/ID/state.json`), the
//! status computed from it, and the pure mapping of `linux.cgroupsPath` to a
//! cgroupfs directory or, with `--systemd-cgroup`, to a systemd scope and
//! its directory. The runtime's own resource record sits next to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::runtime::{self, Pid, CGROUP_ROOT};

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
            if runtime::cgroup_state(cg).map(|s| s.frozen).unwrap_or(false) {
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

/// systemd's slice naming: `a-b-c.slice` lives at `a.slice/a-b.slice/a-b-c.slice`.
pub fn expand_slice(slice: &str) -> Result<PathBuf, String> {
    let name = slice
        .strip_suffix(".slice")
        .ok_or_else(|| format!("'{slice}' is not a slice name (expected NAME.slice)"))?;
    if name == "-" || name.is_empty() {
        return Ok(PathBuf::new());
    }
    if name.contains('/') || name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Err(format!("'{slice}' is not a valid slice name"));
    }
    let mut out = PathBuf::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        out.push(format!("{prefix}.slice"));
    }
    Ok(out)
}

/// A container's systemd scope, from `linux.cgroupsPath` = `slice:prefix:name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdScope {
    /// The slice unit the scope goes in, e.g. `system.slice`.
    pub slice: String,
    /// The scope unit, `prefix-name.scope`.
    pub unit: String,
}

/// runc's rules (specconv `CreateCgroupConfig`, systemd `getUnitName`): an
/// empty path is `system.slice:berth:ID`, an empty slice `system.slice`,
/// the unit `PREFIX-NAME.scope`. A NAME ending in `.slice` asks runc for a
/// slice unit, which cannot hold the container's processes: refused here.
pub fn systemd_scope(cgroups_path: Option<&Path>, id: &str) -> Result<SystemdScope, String> {
    let raw = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (slice, prefix, name) = if raw.is_empty() {
        ("", "berth", id)
    } else {
        match raw.split(':').collect::<Vec<_>>()[..] {
            [slice, prefix, name] => (slice, prefix, name),
            _ => {
                return Err(format!(
                    "cgroupsPath '{raw}' is not slice:prefix:name, as --systemd-cgroup expects"
                ))
            }
        }
    };
    if name.is_empty() || name.ends_with(".slice") {
        return Err(format!(
            "cgroupsPath '{raw}': the name must be non-empty and not a .slice (expected slice:prefix:name for a scope)"
        ));
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let unit = format!("{prefix}-{name}.scope");
    let ok = |c: char| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c);
    if !unit.chars().all(ok) || unit.len() > 255 {
        return Err(format!(
            "cgroupsPath '{raw}': '{unit}' is not a valid systemd unit name (expected letters, digits and ':-_.\\@')"
        ));
    }
    expand_slice(slice)?;
    Ok(SystemdScope {
        slice: slice.to_string(),
        unit,
    })
}

/// The cgroupfs directory for a container: `linux.cgroupsPath` under the
/// cgroup2 mount, or `berth/ID` when unset. With `--systemd-cgroup` it is
/// the directory systemd gives the container's scope ([`systemd_scope`]):
/// `SLICE-PATH/prefix-name.scope`, computed as runc does.
pub fn cgroup_dir(cgroups_path: Option<&Path>, id: &str, systemd: bool) -> Result<PathBuf, String> {
    let root = Path::new(CGROUP_ROOT);
    let rel = if systemd {
        let scope = systemd_scope(cgroups_path, id)?;
        expand_slice(&scope.slice)?.join(scope.unit)
    } else {
        match cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => p.strip_prefix("/").unwrap_or(p).to_path_buf(),
            _ => PathBuf::from("berth").join(id),
        }
    };
    if rel
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "cgroupsPath '{}' must not contain '..'",
            rel.display()
        ));
    }
    Ok(root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_cgroup_paths_expand_like_systemd() {
        assert_eq!(
            cgroup_dir(Some(Path::new("machine-web.slice:berth:abc")), "abc", true).unwrap(),
            PathBuf::from("/sys/fs/cgroup/machine.slice/machine-web.slice/berth-abc.scope")
        );
        assert_eq!(
            cgroup_dir(None, "abc", true).unwrap(),
            PathBuf::from("/sys/fs/cgroup/system.slice/berth-abc.scope")
        );
        assert!(cgroup_dir(Some(Path::new("bad")), "abc", true).is_err());
    }

    #[test]
    fn systemd_scope_names_follow_runc() {
        let scope = |p: &str| systemd_scope(Some(Path::new(p)), "id");
        assert_eq!(
            scope("berth.slice:test:c1").unwrap(),
            SystemdScope {
                slice: "berth.slice".into(),
                unit: "test-c1.scope".into()
            }
        );
        assert_eq!(
            scope(":prefix:name").unwrap(),
            SystemdScope {
                slice: "system.slice".into(),
                unit: "prefix-name.scope".into()
            }
        );
        // runc's getUnitName joins with '-' even when the prefix is empty.
        assert_eq!(scope("a.slice::n").unwrap().unit, "-n.scope");
        assert_eq!(systemd_scope(None, "id").unwrap().unit, "berth-id.scope");
        assert!(scope("a.slice:p:x.slice")
            .unwrap_err()
            .contains("not a .slice"));
        assert!(scope("a.slice:p:").is_err());
        assert!(scope("a:p:n").unwrap_err().contains("not a slice name"));
        assert!(scope("a.slice:p:n/x")
            .unwrap_err()
            .contains("not a valid systemd unit name"));
        assert!(scope("a-.slice:p:n").is_err());
        assert_eq!(
            cgroup_dir(Some(Path::new(":prefix:name")), "id", true).unwrap(),
            PathBuf::from("/sys/fs/cgroup/system.slice/prefix-name.scope")
        );
    }

    #[test]
    fn cgroupfs_paths() {
        assert_eq!(
            cgroup_dir(Some(Path::new("/a/b")), "x", false).unwrap(),
            PathBuf::from("/sys/fs/cgroup/a/b")
        );
        assert_eq!(
            cgroup_dir(None, "x", false).unwrap(),
            PathBuf::from("/sys/fs/cgroup/berth/x")
        );
        assert!(cgroup_dir(Some(Path::new("/a/../../b")), "x", false).is_err());
    }

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
