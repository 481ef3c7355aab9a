//! Delegating a container's cgroup to the container: when it has a cgroup
//! namespace of its own and a writable cgroup2 mount at /sys/fs/cgroup (as
//! `podman run --systemd=always` asks), the cgroup directory and the files
//! the kernel lists in /sys/kernel/cgroup/delegate are chowned to the host
//! IDs of the container's process user, so a systemd or any cgroup manager
//! inside a user namespace can make sub-cgroups (runc's `OwnerUID`, crun's
//! `chown_cgroups`).
//!
//! `plan_cgroup_owner` is pure; `apply_cgroup_owner` only chowns. Nothing here
//! creates or removes cgroups.

use std::path::{Component, Path};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use super::RuntimeError;

/// The host `(uid, gid)` to own the container's cgroup, or None when the
/// container may not manage it (no cgroup namespace of its own, or no
/// writable cgroup mount at /sys/fs/cgroup) or its user is not mapped.
pub fn plan_cgroup_owner(spec: &Spec) -> Option<(u32, u32)> {
    let linux = spec.linux().as_ref()?;
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    let own = |t: LinuxNamespaceType| {
        namespaces
            .iter()
            .any(|n| n.typ() == t && n.path().is_none())
    };
    if !own(LinuxNamespaceType::Cgroup) {
        return None;
    }
    let rw_cgroupfs = spec.mounts().iter().flatten().any(|m| {
        let dest: Vec<Component> = m.destination().components().collect();
        let is_cgroup = matches!(m.typ().as_deref(), Some("cgroup") | Some("cgroup2"))
            || m.source().as_deref() == Some(Path::new("cgroup"));
        dest == Path::new("/sys/fs/cgroup").components().collect::<Vec<_>>()
            && is_cgroup
            && !m.options().iter().flatten().any(|o| o == "ro")
    });
    if !rw_cgroupfs {
        return None;
    }
    let user = spec.process().as_ref().map(|p| p.user().clone());
    let (uid, gid) = user.map(|u| (u.uid(), u.gid())).unwrap_or((0, 0));
    if !own(LinuxNamespaceType::User) {
        return Some((uid, gid));
    }
    let host = |id: u32, maps: &Option<Vec<LinuxIdMapping>>| {
        maps.iter().flatten().find_map(|m| {
            let offset = id.checked_sub(m.container_id())?;
            (offset < m.size()).then(|| m.host_id() + offset)
        })
    };
    Some((
        host(uid, linux.uid_mappings())?,
        host(gid, linux.gid_mappings())?,
    ))
}

/// The files cgroups(7) says a delegate owns, as the kernel lists them.
fn delegate_files() -> Vec<String> {
    match std::fs::read_to_string("/sys/kernel/cgroup/delegate") {
        Ok(text) => text.lines().map(|l| l.trim().to_string()).collect(),
        // Before Linux 4.15 the list was not exported; these are the ones
        // cgroups(7) names.
        Err(_) => ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"]
            .map(String::from)
            .to_vec(),
    }
}

/// Chown the cgroup directory and its delegate files to `(uid, gid)`.
pub fn apply_cgroup_owner(path: &Path, (uid, gid): (u32, u32)) -> Result<(), RuntimeError> {
    let chown = |p: &Path| std::os::unix::fs::chown(p, Some(uid), Some(gid));
    chown(path).map_err(|e| RuntimeError::io("chown cgroup", path, e))?;
    for f in delegate_files().iter().filter(|f| !f.is_empty()) {
        let p = path.join(f);
        match chown(&p) {
            Ok(()) => {}
            // Files of controllers the cgroup does not have.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::io("chown cgroup file", p, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ns: &[&str], cgroup_opts: &[&str], maps: bool, uid: u32) -> Spec {
        let ns: Vec<_> = ns
            .iter()
            .map(|t| serde_json::json!({ "type": t }))
            .collect();
        let mut s = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"cwd": "/", "args": ["sh"], "user": {"uid": uid, "gid": uid}},
            "mounts": [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": cgroup_opts}],
            "linux": {"namespaces": ns}
        });
        if maps {
            let m = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            s["linux"]["uidMappings"] = m.clone();
            s["linux"]["gidMappings"] = m;
        }
        serde_json::from_value(s).unwrap()
    }

    #[test]
    fn owner_is_the_mapped_process_user_with_a_writable_cgroupfs() {
        // podman run --systemd=always --uidmap 0:100000:65536
        let s = spec(&["mount", "cgroup", "user"], &["rw", "nosuid"], true, 0);
        assert_eq!(plan_cgroup_owner(&s), Some((100000, 100000)));
        let s = spec(&["mount", "cgroup", "user"], &["rw"], true, 1000);
        assert_eq!(plan_cgroup_owner(&s), Some((101000, 101000)));
        // No user namespace: the process's own IDs.
        let s = spec(&["mount", "cgroup"], &["rw"], false, 0);
        assert_eq!(plan_cgroup_owner(&s), Some((0, 0)));
    }

    #[test]
    fn no_owner_without_cgroupns_or_with_a_read_only_cgroupfs() {
        // Podman's default: /sys/fs/cgroup read-only.
        let s = spec(&["mount", "cgroup", "user"], &["ro", "nosuid"], true, 0);
        assert_eq!(plan_cgroup_owner(&s), None);
        let s = spec(&["mount", "user"], &["rw"], true, 0);
        assert_eq!(plan_cgroup_owner(&s), None);
        // A user the mappings leave out.
        let s = spec(&["mount", "cgroup", "user"], &["rw"], true, 70000);
        assert_eq!(plan_cgroup_owner(&s), None);
    }
}
