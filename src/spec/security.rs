//! Capabilities, rlimits, masked and read-only paths.
//!
//! Pure: tables and set arithmetic.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType,
};

use crate::cgroup::plan as cgroup;
use crate::config::values::CAPABILITIES;
use crate::config::{Resources, Security, Ulimit};

/// The capabilities a container gets by default: exactly Podman's 11
/// (containers/common `pkg/config/default.go`, DefaultCapabilities).
/// NET_RAW, MKNOD, AUDIT_WRITE (Docker grants them) are left out.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// runc's default masked paths (`runc spec`), plus
/// `/sys/devices/virtual/powercap`, which Podman and Docker also mask: its RAPL
/// energy counters are a side channel (CVE-2020-8694).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// RLIMIT_NOFILE soft limit: 1024 keeps `select(2)` users safe (FD_SETSIZE).
pub const NOFILE_SOFT: u64 = 1024;
/// RLIMIT_NOFILE hard limit: systemd's default for services since v240
/// (`DefaultLimitNOFILE=1024:524288`). A supervisor under systemd already
/// has it, so applying it never needs CAP_SYS_RESOURCE, and programs that
/// want many descriptors can raise their soft limit up to it.
pub const NOFILE_HARD: u64 = 524288;

fn to_cap(name: &str) -> Option<Capability> {
    Capability::from_str(name.strip_prefix("CAP_").unwrap_or(name)).ok()
}

/// The default set as oci-spec values.
pub fn default_capabilities() -> HashSet<Capability> {
    DEFAULT_CAPABILITIES
        .iter()
        .filter_map(|c| to_cap(c))
        .collect()
}

/// The default set, minus `drop`, plus `add` (in that order, so
/// `cap_drop = ["ALL"], cap_add = ["NET_BIND_SERVICE"]` keeps exactly one).
/// Names are `CAP_X` or `ALL`; an unknown one is returned as the error.
pub fn capability_set(drop: &[String], add: &[String]) -> Result<HashSet<Capability>, String> {
    let mut set = default_capabilities();
    let all = || -> Result<HashSet<Capability>, String> {
        CAPABILITIES
            .iter()
            .map(|c| to_cap(c).ok_or_else(|| c.to_string()))
            .collect()
    };
    for c in drop {
        if c == "ALL" {
            set.clear();
        } else {
            set.remove(&to_cap(c).ok_or_else(|| c.clone())?);
        }
    }
    for c in add {
        if c == "ALL" {
            set.extend(all()?);
        } else {
            set.insert(to_cap(c).ok_or_else(|| c.clone())?);
        }
    }
    Ok(set)
}

/// Bounding, effective and permitted hold the set; inheritable and ambient
/// stay empty, so a non-root user keeps no capability across exec (as in
/// Docker and Podman).
pub fn linux_capabilities(set: &HashSet<Capability>) -> LinuxCapabilities {
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set.clone()))
        .set_inheritable(Some(HashSet::new()))
        .set_ambient(Some(HashSet::new()));
    c
}

/// The container's cgroup resources. Devices: deny all; the runtime appends
/// the default nodes (null, zero, full, random, urandom, tty, ptmx, pts,
/// mknod) when it compiles the device filter. Limits: the definition's, as
/// an OCI runtime would write them; in service mode the supervisor passes
/// the device rules only (`cgroup::devices_only`), since there the unit's
/// properties are the container's limits (`cgroup/limits.rs`).
pub(super) fn resources(r: &Resources) -> Result<LinuxResources, String> {
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .map_err(|e| e.to_string())?;
    let mut b = LinuxResourcesBuilder::default().devices(vec![deny_all]);
    if let Some(m) = r.memory {
        let m = i64::try_from(m).map_err(|_| format!("memory {m} is too large"))?;
        b = b.memory(
            LinuxMemoryBuilder::default()
                .limit(m)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(p) = r.pids {
        let p = i64::try_from(p).map_err(|_| format!("pids {p} is too large"))?;
        b = b.pids(
            LinuxPidsBuilder::default()
                .limit(p)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(c) = r.cpus {
        // CPUQuota= cpus × 100% per 100 ms period, as the generator writes.
        b = b.cpu(
            LinuxCpuBuilder::default()
                .quota(cgroup::cpus_to_quota(c))
                .period(cgroup::CPU_PERIOD_USEC)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(w) = r.io_weight {
        // IOWeight= and cgroup2's io.weight share the 1..10000 scale; the
        // OCI blkio weight (10..1000) would lose precision.
        b = b.unified(
            [("io.weight".to_string(), format!("default {w}"))]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    b.build().map_err(|e| e.to_string())
}

/// The OCI type of a `ulimits` name (`container_keys::ULIMITS`).
fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    use PosixRlimitType as T;
    Some(match name {
        "as" => T::RlimitAs,
        "core" => T::RlimitCore,
        "cpu" => T::RlimitCpu,
        "data" => T::RlimitData,
        "fsize" => T::RlimitFsize,
        "locks" => T::RlimitLocks,
        "memlock" => T::RlimitMemlock,
        "msgqueue" => T::RlimitMsgqueue,
        "nice" => T::RlimitNice,
        "nofile" => T::RlimitNofile,
        "nproc" => T::RlimitNproc,
        "rss" => T::RlimitRss,
        "rtprio" => T::RlimitRtprio,
        "rttime" => T::RlimitRttime,
        "sigpending" => T::RlimitSigpending,
        "stack" => T::RlimitStack,
        _ => return None,
    })
}

/// The process's rlimits: RLIMIT_NOFILE from berth's defaults, the hard
/// limit clamped to the caller's (`caller` = its soft and hard limits), the
/// soft limit to the hard one — unless `ulimits` sets nofile — then each of
/// the definition's `ulimits` as written (raising a hard limit above the
/// caller's needs CAP_SYS_RESOURCE; the runtime says so when it fails).
pub(super) fn rlimits(
    caller: Option<(u64, u64)>,
    ulimits: &BTreeMap<String, Ulimit>,
) -> Result<Vec<PosixRlimit>, String> {
    let build = |typ, soft, hard| {
        PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()
            .map_err(|e| e.to_string())
    };
    let mut out = Vec::new();
    if !ulimits.contains_key("nofile") {
        let hard = caller.map_or(NOFILE_HARD, |(_, h)| h.min(NOFILE_HARD));
        let soft = NOFILE_SOFT.min(hard);
        out.push(build(PosixRlimitType::RlimitNofile, soft, hard)?);
    }
    for (name, u) in ulimits {
        let typ = rlimit_type(name).ok_or_else(|| format!("unknown ulimit \"{name}\""))?;
        out.push(build(typ, u.soft, u.hard)?);
    }
    Ok(out)
}

/// `linux.maskedPaths` and `linux.readonlyPaths`: runc's defaults without
/// what `unmask` names (all of them for `ALL`, as Podman's
/// `--security-opt unmask=ALL`), then the definition's `mask`.
pub(super) fn masked_and_readonly(sec: &Security) -> (Vec<String>, Vec<String>) {
    let keep = |p: &&&str| !sec.unmask.all && !sec.unmask.paths.iter().any(|u| u == Path::new(**p));
    let mut masked: Vec<String> = MASKED_PATHS
        .iter()
        .filter(keep)
        .map(|s| s.to_string())
        .collect();
    for m in &sec.mask {
        let m = m.display().to_string();
        if !masked.contains(&m) {
            masked.push(m);
        }
    }
    let readonly = READONLY_PATHS
        .iter()
        .filter(keep)
        .map(|s| s.to_string())
        .collect();
    (masked, readonly)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &HashSet<Capability>) -> Vec<String> {
        let mut v: Vec<String> = set.iter().map(|c| format!("CAP_{c}")).collect();
        v.sort();
        v
    }

    #[test]
    fn default_is_podmans_eleven() {
        let set = capability_set(&[], &[]).unwrap();
        assert_eq!(set.len(), 11);
        let mut want: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(names(&set), want);
    }

    #[test]
    fn every_config_capability_maps() {
        for c in CAPABILITIES {
            assert!(to_cap(c).is_some(), "{c}");
        }
    }

    #[test]
    fn nofile_clamped_to_the_callers_hard_limit() {
        let none = BTreeMap::new();
        let r = rlimits(Some((1024, 4096)), &none).unwrap();
        assert_eq!((r[0].soft(), r[0].hard()), (1024, 4096));
        let r = rlimits(Some((100, 512)), &none).unwrap();
        assert_eq!((r[0].soft(), r[0].hard()), (512, 512));
        let r = rlimits(None, &none).unwrap();
        assert_eq!((r[0].soft(), r[0].hard()), (NOFILE_SOFT, NOFILE_HARD));
        let r = rlimits(Some((1024, u64::MAX)), &none).unwrap();
        assert_eq!(r[0].hard(), NOFILE_HARD);
    }

    #[test]
    fn ulimits_replace_the_nofile_default_unclamped() {
        let u = |s, h| Ulimit { soft: s, hard: h };
        let set: BTreeMap<String, Ulimit> = [
            ("nofile".to_string(), u(65536, 65536)),
            ("nproc".to_string(), u(100, 200)),
        ]
        .into_iter()
        .collect();
        let r = rlimits(Some((1024, 4096)), &set).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].typ(), r[0].soft(), r[0].hard()),
            (PosixRlimitType::RlimitNofile, 65536, 65536)
        );
        assert_eq!(r[1].typ(), PosixRlimitType::RlimitNproc);
        for (name, _) in crate::config::container_keys::ULIMITS {
            assert!(rlimit_type(name).is_some(), "{name}");
        }
    }

    #[test]
    fn drop_then_add() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let set = capability_set(&s(&["ALL"]), &s(&["CAP_NET_BIND_SERVICE"])).unwrap();
        assert_eq!(names(&set), ["CAP_NET_BIND_SERVICE"]);
        let set = capability_set(&s(&["CAP_CHOWN"]), &s(&["CAP_NET_RAW"])).unwrap();
        assert_eq!(set.len(), 11);
        assert!(set.contains(&Capability::NetRaw) && !set.contains(&Capability::Chown));
        let set = capability_set(&s(&["CAP_CHOWN"]), &s(&["ALL"])).unwrap();
        assert_eq!(set.len(), CAPABILITIES.len());
        assert_eq!(
            capability_set(&s(&["CAP_NOPE"]), &[]).unwrap_err(),
            "CAP_NOPE"
        );
    }
}
