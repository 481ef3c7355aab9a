//! cgroup planning both modes share, pure: how the OCI spec's resources map
//! onto cgroup v2's files (and the conversions systemd's properties reuse),
//! where `linux.cgroupsPath` puts a container, and the parsers of the
//! cgroupfs files berth reads. No syscalls and no file reads here
//! (tests/purity.rs); `fs.rs` acts on cgroupfs.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

/// Where cgroup2 is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The period of `cpu.max` when none is given, in microseconds: the
/// kernel's default, and systemd's for CPUQuota=.
pub const CPU_PERIOD_USEC: u64 = 100_000;

/// cgroup v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000), the
/// conversion runc and crun use; 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// blkio weight (10..1000) to `io.weight` (1..10000); 0 means unset.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + ((w.clamp(10, 1000) as u64 - 10) * 9999) / 990
}

/// A number of CPUs (`cpus = 0.5`) as a quota per [`CPU_PERIOD_USEC`].
pub fn cpus_to_quota(cpus: f64) -> i64 {
    (cpus * CPU_PERIOD_USEC as f64).round() as i64
}

/// `cpu.max`'s text: the quota (none or not positive: `max`) and the period.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> String {
    let quota = quota
        .filter(|q| *q > 0)
        .map(|q| q.to_string())
        .unwrap_or_else(|| "max".into());
    format!("{quota} {}", period.unwrap_or(CPU_PERIOD_USEC))
}

/// A quota per period (0: [`CPU_PERIOD_USEC`]) as CPU time per second, the
/// unit of systemd's CPUQuotaPerSecUSec, rounded up to whole 10 ms
/// (systemd's granularity), as runc's `addCPUQuota` does; no positive quota
/// is unlimited (`u64::MAX`).
pub fn quota_per_second(quota: i64, period: u64) -> u64 {
    if quota <= 0 {
        return u64::MAX;
    }
    let period = if period == 0 { CPU_PERIOD_USEC } else { period };
    let per_sec = (quota as u64).saturating_mul(1_000_000) / period;
    if per_sec % 10_000 != 0 {
        (per_sec / 10_000 + 1) * 10_000
    } else {
        per_sec
    }
}

fn limit(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// The (file, value) writes for `resources`, in order.
pub fn plan_resources(r: &LinuxResources) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            out.push(("memory.max".into(), limit(l)));
            // OCI swap is memory+swap (v1); v2 wants swap alone.
            if let Some(s) = m.swap() {
                let swap = if s < 0 || l < 0 {
                    "max".to_string()
                } else {
                    (s - l).max(0).to_string()
                };
                out.push(("memory.swap.max".into(), swap));
            }
        }
        if let Some(res) = m.reservation() {
            out.push(("memory.low".into(), limit(res)));
        }
    }
    if let Some(p) = r.pids() {
        out.push(("pids.max".into(), limit(p.limit())));
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s > 0) {
            out.push(("cpu.weight".into(), shares_to_weight(s).to_string()));
        }
        if c.quota().is_some() || c.period().is_some() {
            out.push(("cpu.max".into(), cpu_max(c.quota(), c.period())));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(("cpuset.cpus".into(), cpus.to_string()));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(("cpuset.mems".into(), mems.to_string()));
        }
    }
    if let Some(w) = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|w| *w > 0)
    {
        out.push((
            "io.weight".into(),
            format!("default {}", blkio_to_io_weight(w)),
        ));
    }
    let mut unified: Vec<_> = r.unified().iter().flatten().collect();
    unified.sort();
    for (k, v) in unified {
        out.push((k.clone(), v.clone()));
    }
    out
}

/// `r` with its device rules only: what service mode hands the runtime for
/// `<unit>/payload`, whose limits are the unit's alone (`limits.rs`), so
/// that `systemctl set-property` on the unit reaches the container.
pub fn devices_only(r: &LinuxResources) -> LinuxResources {
    let mut out = LinuxResources::default();
    out.set_devices(r.devices().clone());
    out
}

/// What `cgroup.events` says.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CgroupState {
    pub populated: bool,
    pub frozen: bool,
}

/// Parse a `cgroup.events` text.
pub fn parse_events(text: &str) -> CgroupState {
    let mut s = CgroupState::default();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("populated", v)) => s.populated = v == "1",
            Some(("frozen", v)) => s.frozen = v == "1",
            _ => {}
        }
    }
    s
}

/// The cgroup2 path in `/proc/self/cgroup` text (`0::/berth.slice/x.service`).
/// Control processes of a delegated unit run in `<unit>/.control`, and a
/// supervisor that moved itself runs in `<unit>/supervisor`; both map back
/// to the unit.
pub fn parse_unit_cgroup(proc_self_cgroup: &str) -> Option<String> {
    let path = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim();
    if !path.starts_with('/') {
        return None;
    }
    let unit = path
        .strip_suffix("/.control")
        .or_else(|| path.strip_suffix("/supervisor"))
        .unwrap_or(path);
    Some(unit.to_string())
}

/// `oom_kill N` of a cgroup's `memory.events` (cgroup-v2.rst): how many
/// processes the OOM killer ended in it.
pub fn parse_oom_kills(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// `usage_usec` of a `cpu.stat` text.
pub fn parse_cpu_usage(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

// ------------------------------------------------------------ cgroupsPath

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
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder,
    };

    #[test]
    fn weights_map_end_to_end_as_runc_maps_them() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1 << 30), 10_000);
        assert_eq!(blkio_to_io_weight(0), 0);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn cpu_quotas_in_every_unit() {
        assert_eq!(cpus_to_quota(0.5), 50_000);
        assert_eq!(cpus_to_quota(2.0), 200_000);
        assert_eq!(cpu_max(Some(50_000), None), "50000 100000");
        assert_eq!(cpu_max(Some(-1), Some(20_000)), "max 20000");
        assert_eq!(cpu_max(None, None), "max 100000");
        assert_eq!(quota_per_second(50_000, 100_000), 500_000);
        assert_eq!(quota_per_second(50_000, 0), 500_000);
        assert_eq!(quota_per_second(33_333, 100_000), 340_000);
        assert_eq!(quota_per_second(0, 100_000), u64::MAX);
        assert_eq!(quota_per_second(-1, 0), u64::MAX);
    }

    #[test]
    fn resources_plan_to_v2_files() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(268_435_456i64)
                    .swap(536_870_912i64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(200i64).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .shares(1024u64)
                    .build()
                    .unwrap(),
            )
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(100u16)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let plan = plan_resources(&r);
        let get = |k: &str| plan.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        assert_eq!(get("memory.max"), Some("268435456"));
        assert_eq!(get("memory.swap.max"), Some("268435456"));
        assert_eq!(get("pids.max"), Some("200"));
        assert_eq!(get("cpu.max"), Some("50000 100000"));
        assert_eq!(get("cpu.weight"), Some("39"));
        assert_eq!(get("io.weight"), Some("default 910"));
    }

    #[test]
    fn negative_limits_mean_max() {
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(-1i64).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            plan_resources(&r),
            vec![("pids.max".to_string(), "max".to_string())]
        );
    }

    #[test]
    fn events_oom_kills_and_cpu_usage_parse() {
        let e = parse_events("populated 1\nfrozen 0\n");
        assert!(e.populated && !e.frozen);
        assert!(parse_events("frozen 1\n").frozen);
        let t = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(t), 1);
        assert_eq!(parse_oom_kills(""), 0);
        assert_eq!(
            parse_cpu_usage("usage_usec 1234\nuser_usec 1000\n"),
            Some(1234)
        );
        assert_eq!(parse_cpu_usage(""), None);
    }

    #[test]
    fn unit_from_proc_self_cgroup() {
        let u = |s: &str| parse_unit_cgroup(s);
        assert_eq!(
            u("0::/berth.slice/berth@web.service\n").as_deref(),
            Some("/berth.slice/berth@web.service")
        );
        assert_eq!(
            u("0::/berth.slice/berth@web.service/.control\n").as_deref(),
            Some("/berth.slice/berth@web.service")
        );
        assert_eq!(
            u("12:pids:/x\n0::/berth.slice/berth@web.service/supervisor\n").as_deref(),
            Some("/berth.slice/berth@web.service")
        );
        assert_eq!(u("1:name=systemd:/x\n"), None);
    }

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
}
