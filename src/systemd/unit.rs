//! The properties of a transient systemd scope for a container, planned from
//! its OCI spec: the fixed ones runc sets, `linux.resources` as systemd
//! resource-control properties (what runc's cgroup v2 systemd driver maps),
//! and every `org.systemd.property.NAME` annotation.
//!
//! Pure: no D-Bus crate, no I/O; `bus.rs` sends the result.

use std::collections::BTreeMap;

use oci_spec::runtime::LinuxResources;

use super::gvariant::{self, GValue};
use crate::cgroup::limits::{self, Limit};
use crate::cgroup::plan as cgroup;
use crate::config::Resources;

/// One unit property as StartTransientUnit takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub value: GValue,
}

impl Property {
    pub fn new(name: &str, value: GValue) -> Self {
        Property {
            name: name.to_string(),
            value,
        }
    }
}

/// Why the properties could not be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PropertyError {
    #[error("annotation '{key}': property name '{name}' is not valid (expected at least 3 ASCII letters)")]
    Name { key: String, name: String },
    #[error("annotation '{key}' value '{value}': {reason}")]
    Value {
        key: String,
        value: String,
        reason: String,
    },
    #[error("linux.resources {field} '{value}': {reason}")]
    Resource {
        field: &'static str,
        value: String,
        reason: String,
    },
}

/// Annotation keys with this prefix name a systemd unit property.
pub const ANNOTATION_PREFIX: &str = "org.systemd.property.";

/// Every property of the container's scope, in the order they are applied
/// (systemd applies duplicates in turn, the last one wins): runc's fixed
/// properties, then the annotations (which may override those, as in runc,
/// where they follow), then the spec's limits (which win over an annotation,
/// as in runc, which sets them after the unit started). `PIDs` is added by
/// the caller once the init exists.
pub fn plan_scope_properties(
    id: &str,
    slice: &str,
    resources: Option<&LinuxResources>,
    annotations: Option<&std::collections::HashMap<String, String>>,
) -> Result<Vec<Property>, PropertyError> {
    let mut props = vec![
        Property::new("Description", GValue::Str(format!("berth container {id}"))),
        Property::new("Slice", GValue::Str(slice.to_string())),
        Property::new("Delegate", GValue::Bool(true)),
        // runc: accounting always on, the same view cgroupfs gives.
        Property::new("MemoryAccounting", GValue::Bool(true)),
        Property::new("CPUAccounting", GValue::Bool(true)),
        Property::new("IOAccounting", GValue::Bool(true)),
        Property::new("TasksAccounting", GValue::Bool(true)),
        // No implicit ordering against shutdown.target and friends: the
        // scope is not a service, and must not wait on them.
        Property::new("DefaultDependencies", GValue::Bool(false)),
    ];
    if let Some(a) = annotations {
        props.extend(plan_annotation_properties(a)?);
    }
    if let Some(r) = resources {
        props.extend(plan_resource_properties(r)?);
    }
    Ok(props)
}

/// The scope of an ad hoc `berth run NAME` in the foreground, what
/// `systemd-run --scope --collect --slice=berth.slice -p Delegate=yes` asks
/// for. `PIDs` is added by the caller.
///
/// The definition's limits are the scope's, as they are a service's
/// (`cgroup::limits`: the container's `payload/` has none of its own).
pub fn plan_adhoc_scope_properties(name: &str, resources: &Resources) -> Vec<Property> {
    let mut props = vec![
        Property::new("Description", GValue::Str(format!("berth run {name}"))),
        Property::new("Slice", GValue::Str("berth.slice".into())),
        Property::new("Delegate", GValue::Bool(true)),
        // Gone once it ends, even when it failed (systemd-run --collect).
        Property::new("CollectMode", GValue::Str("inactive-or-failed".into())),
    ];
    props.extend(limits::unit_limits(resources).iter().map(limit_property));
    props
}

/// One of a definition's unit limits as the bus takes it (what `systemd-run
/// -p NAME=TEXT` would send for the drop-in's line).
pub fn limit_property(l: &Limit) -> Property {
    match l {
        Limit::MemoryMax(v) | Limit::TasksMax(v) | Limit::IoWeight(v) => {
            Property::new(l.name(), GValue::U64(*v))
        }
        // CPUQuota=50% is CPUQuotaPerSecUSec=500ms on the bus.
        Limit::CpuQuota(c) => Property::new(
            "CPUQuotaPerSecUSec",
            GValue::U64(cgroup::quota_per_second(
                cgroup::cpus_to_quota(*c),
                cgroup::CPU_PERIOD_USEC,
            )),
        ),
    }
}

/// `org.systemd.property.NAME=VALUE` annotations as properties, with runc's
/// rules: NAME is letters only (at least 3); VALUE is GVariant text; a name
/// documented with `Sec` (`TimeoutStopSec`, a lowercase letter before `Sec`)
/// becomes `…USec` with the number of seconds turned into microseconds.
/// Sorted by key so the same spec always gives the same call.
pub fn plan_annotation_properties(
    annotations: &std::collections::HashMap<String, String>,
) -> Result<Vec<Property>, PropertyError> {
    let sorted: BTreeMap<_, _> = annotations.iter().collect();
    let mut out = Vec::new();
    for (key, text) in sorted {
        let Some(name) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        if name.len() < 3 || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(PropertyError::Name {
                key: key.clone(),
                name: name.to_string(),
            });
        }
        let bad = |reason: String| PropertyError::Value {
            key: key.clone(),
            value: text.clone(),
            reason,
        };
        let value = gvariant::parse(text).map_err(|e| bad(e.to_string()))?;
        let prop = match name.strip_suffix("Sec") {
            Some(stem) if stem.ends_with(|c: char| c.is_ascii_lowercase()) => Property::new(
                &format!("{stem}USec"),
                GValue::U64(seconds_to_usec(&value).ok_or_else(|| {
                    bad(format!(
                        "'{name}' is in seconds: expected a number, got type '{}'",
                        value.gtype()
                    ))
                })?),
            ),
            _ => Property::new(name, value),
        };
        out.push(prop);
    }
    Ok(out)
}

/// runc's `convertSecToUSec`: any number of seconds, as microseconds.
fn seconds_to_usec(v: &GValue) -> Option<u64> {
    const M: u64 = 1_000_000;
    Some(match *v {
        GValue::Byte(n) => u64::from(n) * M,
        GValue::I16(n) => (n as u64).wrapping_mul(M),
        GValue::U16(n) => u64::from(n) * M,
        GValue::I32(n) => (n as u64).wrapping_mul(M),
        GValue::U32(n) => u64::from(n) * M,
        GValue::I64(n) => (n as u64).wrapping_mul(M),
        GValue::U64(n) => n.saturating_mul(M),
        GValue::Double(d) => (d * M as f64) as u64,
        _ => return None,
    })
}

/// `linux.resources` as systemd properties, after runc's cgroup v2 systemd
/// driver (`genV2ResourcesProperties`, `unifiedResToSystemdProps`), plus
/// `IOWeight` from the block-IO weight. Devices stay with berth's own BPF
/// filter; anything without a property is written to cgroupfs by the
/// runtime as usual.
pub fn plan_resource_properties(r: &LinuxResources) -> Result<Vec<Property>, PropertyError> {
    let mut out = Vec::new();
    let max = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
    let memory = r.memory().as_ref();
    let limit = memory.and_then(|m| m.limit()).unwrap_or(0);
    if limit != 0 {
        out.push(Property::new("MemoryMax", GValue::U64(max(limit))));
    }
    if let Some(res) = memory.and_then(|m| m.reservation()).filter(|v| *v != 0) {
        out.push(Property::new("MemoryLow", GValue::U64(max(res))));
    }
    let swap = memory.and_then(|m| m.swap()).unwrap_or(0);
    match swap_v2(swap, limit) {
        Ok(0) => {}
        Ok(v) => out.push(Property::new("MemorySwapMax", GValue::U64(max(v)))),
        Err(reason) => {
            return Err(PropertyError::Resource {
                field: "memory.swap",
                value: swap.to_string(),
                reason,
            })
        }
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
            out.push(Property::new(
                "CPUWeight",
                GValue::U64(cgroup::shares_to_weight(shares)),
            ));
        }
        let quota = cpu.quota().unwrap_or(0);
        let period = cpu.period().unwrap_or(0);
        out.extend(cpu_quota(quota, period));
        for (field, text, prop) in [
            ("cpu.cpus", cpu.cpus(), "AllowedCPUs"),
            ("cpu.mems", cpu.mems(), "AllowedMemoryNodes"),
        ] {
            if let Some(text) = text.as_deref().filter(|s| !s.trim().is_empty()) {
                let bits = range_to_bits(text).map_err(|reason| PropertyError::Resource {
                    field,
                    value: text.to_string(),
                    reason,
                })?;
                out.push(Property::new(prop, GValue::bytes(&bits)));
            }
        }
    }
    if let Some(p) = r.pids() {
        // systemd refuses TasksMax=0; runc asks for 1.
        let tasks = match p.limit() {
            l if l < 0 => u64::MAX,
            0 => 1,
            l => l as u64,
        };
        out.push(Property::new("TasksMax", GValue::U64(tasks)));
    }
    if let Some(w) = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|w| *w > 0)
    {
        out.push(Property::new(
            "IOWeight",
            GValue::U64(cgroup::blkio_to_io_weight(w)),
        ));
    }
    let unified: BTreeMap<_, _> = r.unified().iter().flatten().collect();
    for (key, value) in unified {
        out.extend(unified_property(key, value.trim())?);
    }
    Ok(out)
}

/// runc's `ConvertMemorySwapToCgroupV2Value`: OCI swap is memory+swap.
fn swap_v2(swap: i64, memory: i64) -> Result<i64, String> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == 0 || memory == -1 {
        return Err("a swap limit needs a memory limit".into());
    }
    if swap < memory {
        return Err(format!(
            "memory+swap must be at least the memory limit {memory}"
        ));
    }
    Ok(swap - memory)
}

/// runc's `addCPUQuota`: the period as is, the quota per second of CPU time
/// (`cgroup::quota_per_second`).
fn cpu_quota(quota: i64, period: u64) -> Vec<Property> {
    let mut out = Vec::new();
    if period != 0 {
        out.push(Property::new("CPUQuotaPeriodUSec", GValue::U64(period)));
    }
    if quota != 0 || period != 0 {
        out.push(Property::new(
            "CPUQuotaPerSecUSec",
            GValue::U64(cgroup::quota_per_second(quota, period)),
        ));
    }
    out
}

/// A cgroup v2 file in `linux.resources.unified` as a property, when systemd
/// has one for it (runc's `unifiedResToSystemdProps`).
fn unified_property(key: &str, value: &str) -> Result<Vec<Property>, PropertyError> {
    let bad = |reason: String| PropertyError::Resource {
        field: "unified",
        value: format!("{key}={value}"),
        reason,
    };
    let number = |v: &str| -> Result<u64, PropertyError> {
        if v == "max" {
            return Ok(u64::MAX);
        }
        v.parse::<u64>()
            .map_err(|_| bad("expected a whole number or 'max'".into()))
    };
    Ok(match key {
        "cpu.max" => {
            let f: Vec<&str> = value.split_whitespace().collect();
            if f.is_empty() || f.len() > 2 {
                return Err(bad("expected 'QUOTA [PERIOD]'".into()));
            }
            let quota = if f[0] == "max" {
                0
            } else {
                f[0].parse::<i64>()
                    .map_err(|_| bad("expected the quota as a whole number or 'max'".into()))?
            };
            let period = match f.get(1) {
                Some(p) => p
                    .parse::<u64>()
                    .map_err(|_| bad("expected the period as a whole number".into()))?,
                None => cgroup::CPU_PERIOD_USEC,
            };
            cpu_quota(quota, period)
        }
        "cpu.weight" => vec![Property::new(
            "CPUWeight",
            GValue::U64(
                value
                    .parse::<u64>()
                    .map_err(|_| bad("expected a whole number".into()))?,
            ),
        )],
        "cpuset.cpus" | "cpuset.mems" => {
            let prop = if key == "cpuset.cpus" {
                "AllowedCPUs"
            } else {
                "AllowedMemoryNodes"
            };
            vec![Property::new(
                prop,
                GValue::bytes(&range_to_bits(value).map_err(bad)?),
            )]
        }
        "memory.high" | "memory.low" | "memory.min" | "memory.max" | "memory.swap.max" => {
            let prop = match key {
                "memory.high" => "MemoryHigh",
                "memory.low" => "MemoryLow",
                "memory.min" => "MemoryMin",
                "memory.max" => "MemoryMax",
                _ => "MemorySwapMax",
            };
            vec![Property::new(prop, GValue::U64(number(value)?))]
        }
        "pids.max" => vec![Property::new(
            "TasksMax",
            GValue::U64(number(value)?.max(1)),
        )],
        // Anything else has no property: the runtime writes the file.
        _ => vec![],
    })
}

/// A cpuset list (`0-3,8`) as systemd's byte mask, lowest CPU in the first
/// byte's lowest bit (runc's `RangeToBits`).
pub fn range_to_bits(list: &str) -> Result<Vec<u8>, String> {
    // Bounds the mask's size; Linux's own limit (CONFIG_NR_CPUS) is 8192.
    const MAX_BIT: u32 = 1 << 16;
    let num = |s: &str| -> Result<u32, String> {
        let n = s
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("'{s}' is not a number (expected a list like 0-3,8)"))?;
        if n >= MAX_BIT {
            return Err(format!("{n} is too large (expected below {MAX_BIT})"));
        }
        Ok(n)
    };
    let mut bits: Vec<u8> = Vec::new();
    let mut set = |i: u32| {
        let byte = (i / 8) as usize;
        if bits.len() <= byte {
            bits.resize(byte + 1, 0);
        }
        bits[byte] |= 1 << (i % 8);
    };
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range '{part}' runs backwards"));
                }
                (a..=b).for_each(&mut set);
            }
            None => set(num(part)?),
        }
    }
    if bits.is_empty() {
        return Err("empty list (expected a list like 0-3,8)".into());
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder,
    };
    use std::collections::HashMap;

    fn get<'a>(props: &'a [Property], name: &str) -> Option<&'a GValue> {
        props
            .iter()
            .rev()
            .find(|p| p.name == name)
            .map(|p| &p.value)
    }

    #[test]
    fn resources_map_like_runc_v2() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(268_435_456i64)
                    .swap(536_870_912i64)
                    .reservation(1_048_576i64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(200i64).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .shares(1024u64)
                    .cpus("0-3,8")
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
        let p = plan_resource_properties(&r).unwrap();
        assert_eq!(get(&p, "MemoryMax"), Some(&GValue::U64(268_435_456)));
        assert_eq!(get(&p, "MemorySwapMax"), Some(&GValue::U64(268_435_456)));
        assert_eq!(get(&p, "MemoryLow"), Some(&GValue::U64(1_048_576)));
        assert_eq!(get(&p, "TasksMax"), Some(&GValue::U64(200)));
        assert_eq!(get(&p, "CPUWeight"), Some(&GValue::U64(39)));
        assert_eq!(get(&p, "CPUQuotaPeriodUSec"), Some(&GValue::U64(100_000)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&GValue::U64(500_000)));
        assert_eq!(get(&p, "AllowedCPUs"), Some(&GValue::bytes(&[0x0f, 0x01])));
        assert_eq!(get(&p, "IOWeight"), Some(&GValue::U64(910)));
    }

    #[test]
    fn unlimited_and_zero_follow_runc() {
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1i64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(0i64).build().unwrap())
            .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
            .build()
            .unwrap();
        let p = plan_resource_properties(&r).unwrap();
        assert_eq!(get(&p, "MemoryMax"), Some(&GValue::U64(u64::MAX)));
        // memory unlimited and no swap given: swap unlimited too.
        assert_eq!(get(&p, "MemorySwapMax"), Some(&GValue::U64(u64::MAX)));
        assert_eq!(get(&p, "TasksMax"), Some(&GValue::U64(1)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&GValue::U64(u64::MAX)));
        assert_eq!(get(&p, "CPUQuotaPeriodUSec"), None);
    }

    #[test]
    fn cpu_quota_rounds_up_to_10ms() {
        // A third of a CPU: 333330 µs per second rounds up to 340000.
        let p = cpu_quota(33_333, 100_000);
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&GValue::U64(340_000)));
    }

    #[test]
    fn bad_swap_is_refused() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(100i64)
                    .swap(50i64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let e = plan_resource_properties(&r).unwrap_err().to_string();
        assert!(e.contains("memory+swap must be at least"), "{e}");
    }

    #[test]
    fn unified_keys_map_to_properties() {
        let r = LinuxResourcesBuilder::default()
            .unified(HashMap::from([
                ("memory.high".to_string(), "1000".to_string()),
                ("pids.max".to_string(), "max".to_string()),
                ("cpu.max".to_string(), "max 50000".to_string()),
                ("io.max".to_string(), "8:0 rbps=1".to_string()),
            ]))
            .build()
            .unwrap();
        let p = plan_resource_properties(&r).unwrap();
        assert_eq!(get(&p, "MemoryHigh"), Some(&GValue::U64(1000)));
        assert_eq!(get(&p, "TasksMax"), Some(&GValue::U64(u64::MAX)));
        assert_eq!(get(&p, "CPUQuotaPeriodUSec"), Some(&GValue::U64(50_000)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&GValue::U64(u64::MAX)));
        assert_eq!(p.len(), 4, "io.max has no property: {p:?}");
        let bad = LinuxResourcesBuilder::default()
            .unified(HashMap::from([(
                "memory.max".to_string(),
                "lots".to_string(),
            )]))
            .build()
            .unwrap();
        assert!(plan_resource_properties(&bad)
            .unwrap_err()
            .to_string()
            .contains("memory.max=lots"));
    }

    #[test]
    fn cpusets_become_little_endian_masks() {
        assert_eq!(range_to_bits("0").unwrap(), vec![1]);
        assert_eq!(range_to_bits("1,3, 9").unwrap(), vec![0b1010, 0b10]);
        assert!(range_to_bits("3-1").is_err());
        assert!(range_to_bits(",").is_err());
        assert!(range_to_bits("999999").is_err());
    }

    #[test]
    fn annotations_become_properties_with_sec_converted() {
        let a = HashMap::from([
            (
                "org.systemd.property.TimeoutStopUSec".to_string(),
                "uint64 123456789".to_string(),
            ),
            (
                "org.systemd.property.CollectMode".to_string(),
                "'inactive-or-failed'".to_string(),
            ),
            (
                "org.systemd.property.RuntimeMaxSec".to_string(),
                "5".to_string(),
            ),
            ("other.annotation".to_string(), "ignored".to_string()),
        ]);
        let p = plan_annotation_properties(&a).unwrap();
        assert_eq!(
            p,
            vec![
                Property::new("CollectMode", GValue::Str("inactive-or-failed".into())),
                Property::new("RuntimeMaxUSec", GValue::U64(5_000_000)),
                Property::new("TimeoutStopUSec", GValue::U64(123_456_789)),
            ]
        );
        let one = |k: &str, v: &str| {
            plan_annotation_properties(&HashMap::from([(k.to_string(), v.to_string())]))
        };
        // "USec" itself is not converted again; a non-number in seconds is refused.
        assert_eq!(
            one("org.systemd.property.TimeoutSec", "1.5").unwrap(),
            vec![Property::new("TimeoutUSec", GValue::U64(1_500_000))]
        );
        let e = one("org.systemd.property.TimeoutStopSec", "'x'")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a number"), "{e}");
        let e = one("org.systemd.property.CollectMode", "inactive")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "annotation 'org.systemd.property.CollectMode' value 'inactive': unknown word"
            ),
            "{e}"
        );
        let e = one("org.systemd.property.Ab", "true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid"), "{e}");
        assert!(one("org.systemd.property.Mem0ryMax", "1").is_err());
    }

    #[test]
    fn adhoc_scopes_are_delegated_in_berth_slice_and_collected() {
        let p = plan_adhoc_scope_properties("web", &Resources::default());
        assert_eq!(get(&p, "Slice"), Some(&GValue::Str("berth.slice".into())));
        assert_eq!(get(&p, "Delegate"), Some(&GValue::Bool(true)));
        assert_eq!(
            get(&p, "CollectMode"),
            Some(&GValue::Str("inactive-or-failed".into()))
        );
        assert_eq!(get(&p, "MemoryMax"), None);
    }

    #[test]
    fn adhoc_scopes_get_the_definitions_limits_as_a_service_does() {
        let r = Resources {
            memory: Some(20 << 20),
            cpus: Some(0.5),
            pids: Some(5),
            io_weight: Some(300),
            ..Default::default()
        };
        let p = plan_adhoc_scope_properties("web", &r);
        assert_eq!(
            get(&p, "MemoryMax"),
            Some(&GValue::U64(limits::unit_memory(20 << 20)))
        );
        assert_eq!(
            get(&p, "TasksMax"),
            Some(&GValue::U64(5 + limits::SUPERVISOR_TASKS))
        );
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(&GValue::U64(500_000)));
        assert_eq!(get(&p, "IOWeight"), Some(&GValue::U64(300)));
    }

    #[test]
    fn scope_properties_put_limits_after_annotations() {
        let a = HashMap::from([(
            "org.systemd.property.TasksMax".to_string(),
            "uint64 5".to_string(),
        )]);
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(9i64).build().unwrap())
            .build()
            .unwrap();
        let p = plan_scope_properties("c1", "berth.slice", Some(&r), Some(&a)).unwrap();
        assert_eq!(get(&p, "Slice"), Some(&GValue::Str("berth.slice".into())));
        assert_eq!(get(&p, "Delegate"), Some(&GValue::Bool(true)));
        assert_eq!(get(&p, "DefaultDependencies"), Some(&GValue::Bool(false)));
        // The spec's limit is applied last, so it wins (runc sets it later).
        assert_eq!(get(&p, "TasksMax"), Some(&GValue::U64(9)));
    }
}
