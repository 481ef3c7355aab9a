//! Capabilities of the container process: the five sets of
//! `process.capabilities`, applied around the switch to the container user
//! in the order runc uses (bounding first, then the others after setuid with
//! PR_SET_KEEPCAPS). Runs in the init or an exec'd process only.

use std::collections::HashSet;

use caps::{CapSet, Capability as Cap};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::RuntimeError;

/// The kernel name (`CAP_NET_ADMIN`) of an OCI capability.
pub fn cap_name(c: &Capability) -> String {
    // The serde form is the spec's own spelling, one mapping for both ways.
    serde_json::to_string(c)
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default()
}

fn to_caps(set: &Option<Capabilities>) -> Result<HashSet<Cap>, RuntimeError> {
    let mut out = HashSet::new();
    for c in set.iter().flatten() {
        let name = cap_name(c);
        match name.parse::<Cap>() {
            Ok(cap) => {
                out.insert(cap);
            }
            Err(_) => {
                return Err(RuntimeError::Capability {
                    name,
                    reason: "unknown to this build; expected a CAP_* name".into(),
                })
            }
        }
    }
    // Capabilities the running kernel does not know cannot be held; asking
    // for them is not an error (runc ignores them too).
    Ok(out.intersection(supported()).copied().collect())
}

/// The highest capability number the running kernel knows, probed with
/// `prctl(PR_CAPBSET_READ)` until it answers EINVAL. Not read from
/// `/proc/sys/kernel/cap_last_cap`: by the time the bounding set is dropped,
/// `/proc` is the container's, and a spec mount over that file (or an image's
/// own procfs trickery) would make berth stop dropping early and leave the
/// highest capabilities in the bounding set (issue 12, class 9; runc's
/// `capability.LastCap` probes the same way). Asked once per process.
fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        let mut last = 0;
        // 64 is the width of the kernel's capability sets.
        for i in 0..64u32 {
            // SAFETY: PR_CAPBSET_READ reads one bit of this thread's bounding set.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, i as libc::c_ulong, 0, 0, 0) };
            if r < 0 {
                break;
            }
            last = i;
        }
        last
    })
}

/// The capabilities this kernel knows (and this build can name).
fn supported() -> &'static HashSet<Cap> {
    static SUPPORTED: std::sync::OnceLock<HashSet<Cap>> = std::sync::OnceLock::new();
    SUPPORTED.get_or_init(|| {
        let last = last_cap();
        caps::all()
            .into_iter()
            .filter(|c| u32::from(c.index()) <= last)
            .collect()
    })
}

fn cap_err(what: &str, e: caps::errors::CapsError) -> RuntimeError {
    RuntimeError::Capability {
        name: what.to_string(),
        reason: e.to_string(),
    }
}

/// Step: shrink the bounding set. Needs CAP_SETPCAP, so it runs before the
/// user switch.
pub fn drop_bounding(c: &LinuxCapabilities) -> Result<(), RuntimeError> {
    let keep: HashSet<u32> = to_caps(c.bounding())?
        .iter()
        .map(|c| u32::from(c.index()))
        .collect();
    // By number up to the kernel's last, so that a capability newer than
    // this build's `caps` table is dropped too.
    for i in 0..=last_cap() {
        if keep.contains(&i) {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP clears one bit of this thread's bounding set.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, i as libc::c_ulong, 0, 0, 0) } < 0 {
            return Err(RuntimeError::Capability {
                name: format!("bounding capability {i}"),
                reason: std::io::Error::last_os_error().to_string(),
            });
        }
    }
    Ok(())
}

/// Step: set effective, permitted, inheritable and ambient after the user
/// switch (PR_SET_KEEPCAPS kept the permitted set across it).
pub fn apply_sets(c: &LinuxCapabilities) -> Result<(), RuntimeError> {
    let permitted = to_caps(c.permitted())?;
    let effective = to_caps(c.effective())?;
    let inheritable = to_caps(c.inheritable())?;
    let ambient = to_caps(c.ambient())?;
    // Permitted last would drop caps needed to set the others; effective must be a
    // subset of permitted at every moment, so: clear effective, set permitted,
    // then effective and inheritable.
    caps::clear(None, CapSet::Effective).map_err(|e| cap_err("effective", e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| cap_err("permitted", e))?;
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| cap_err("inheritable", e))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| cap_err("effective", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| cap_err("ambient", e))?;
    for cap in ambient {
        // Ambient needs the cap in permitted and inheritable; runc ignores the
        // ones that are not, so a sloppy spec does not fail the start.
        if permitted.contains(&cap) && inheritable.contains(&cap) {
            caps::raise(None, CapSet::Ambient, cap)
                .map_err(|e| cap_err(&format!("ambient {cap}"), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_names_parse_as_kernel_capabilities() {
        for c in [
            Capability::NetBindService,
            Capability::SysAdmin,
            Capability::AuditWrite,
            Capability::Kill,
            Capability::Bpf,
        ] {
            let n = cap_name(&c);
            assert!(n.starts_with("CAP_"), "{n}");
            assert!(n.parse::<Cap>().is_ok(), "{n}");
        }
    }

    #[test]
    fn last_cap_is_the_kernels_not_a_file() {
        // The probe agrees with the host's procfs (the test runs on the host).
        let file: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(last_cap(), file);
    }
}
