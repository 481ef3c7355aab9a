//! Linux security module keys of the spec (issue 12, class 4). berth
//! applies neither AppArmor profiles nor SELinux labels, so a spec asking
//! for one is refused with the key named, never run unconfined in silence
//! (DESIGN.md "Security model": refuse what cannot be enforced). Pure.

use oci_spec::runtime::Process;

/// Refuse `process.apparmorProfile`, `process.selinuxLabel` and
/// `linux.mountLabel` unless empty (AppArmor's `unconfined` asks for no
/// profile, which is what berth gives).
pub fn refuse_unenforced(
    process: Option<&Process>,
    mount_label: Option<&str>,
) -> Result<(), String> {
    let set = |v: Option<&String>| v.is_some_and(|s| !s.is_empty());
    if let Some(p) = process {
        if set(p.apparmor_profile().as_ref())
            && p.apparmor_profile().as_deref() != Some("unconfined")
        {
            return Err(format!(
                "process.apparmorProfile '{}' cannot be applied: berth does not support AppArmor; remove the key (or set it to 'unconfined')",
                p.apparmor_profile().as_deref().unwrap_or_default()
            ));
        }
        if set(p.selinux_label().as_ref()) {
            return Err(format!(
                "process.selinuxLabel '{}' cannot be applied: berth does not support SELinux; remove the key",
                p.selinux_label().as_deref().unwrap_or_default()
            ));
        }
    }
    if let Some(l) = mount_label.filter(|l| !l.is_empty()) {
        return Err(format!(
            "linux.mountLabel '{l}' cannot be applied: berth does not support SELinux; remove the key"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(j: serde_json::Value) -> Process {
        let mut base = serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}});
        base.as_object_mut()
            .unwrap()
            .extend(j.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn lsm_keys_are_refused_by_name() {
        let p = process(serde_json::json!({"apparmorProfile": "docker-default"}));
        let e = refuse_unenforced(Some(&p), None).unwrap_err();
        assert!(
            e.contains("process.apparmorProfile 'docker-default'"),
            "{e}"
        );
        let p = process(serde_json::json!({"selinuxLabel": "system_u:system_r:container_t:s0"}));
        assert!(refuse_unenforced(Some(&p), None)
            .unwrap_err()
            .contains("process.selinuxLabel"));
        assert!(
            refuse_unenforced(None, Some("system_u:object_r:container_file_t:s0"))
                .unwrap_err()
                .contains("linux.mountLabel")
        );
        let ok = process(serde_json::json!({"apparmorProfile": "unconfined", "selinuxLabel": ""}));
        assert!(refuse_unenforced(Some(&ok), Some("")).is_ok());
    }
}
