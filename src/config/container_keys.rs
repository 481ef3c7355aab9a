//! Parsers for the container-side keys of issue 15: `[security] devices`,
//! `sysctls`, `mask`/`unmask`, `group_add`, `[resources] ulimits` and
//! `[[tmpfs]] options`. Each takes the written string and returns the typed
//! value or a message saying what was expected; `validate.rs` adds
//! file:line:column.
//!
//! Pure: what `berth check` can judge without the host (syntax, permission
//! letters, whether a sysctl is namespaced). Whether a device exists is a
//! fact of the host at start (`supervise::devices`).

use std::path::PathBuf;

use super::validate::check_abs_path;
use super::values::one_of;

/// One `[security] devices` entry: `HOST[:CONTAINER][:PERMISSIONS]`, as
/// `docker run --device` reads it (docker/cli `opts/parse.go`,
/// `parseDevice`). A directory on the host stands for every device node
/// under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequest {
    /// Absolute host path: a device node or a directory of them.
    pub host: PathBuf,
    /// Where it appears in the container; default the host path.
    pub container: PathBuf,
    /// A non-empty subset of `rwm`, in that order; default `rwm`.
    pub access: String,
}

/// Whether `s` is a permission string: a non-empty subset of r, w, m, each
/// at most once (docker/cli `validDeviceMode`).
fn device_access(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 3 {
        return None;
    }
    let mut seen = [false; 3];
    for c in s.chars() {
        let i = "rwm".find(c)?;
        if seen[i] {
            return None;
        }
        seen[i] = true;
    }
    Some(
        "rwm"
            .chars()
            .zip(seen)
            .filter_map(|(c, on)| on.then_some(c))
            .collect(),
    )
}

/// Parse one `devices` entry.
pub fn parse_device(s: &str) -> Result<DeviceRequest, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad_access = |p: &str| {
        format!(
            "invalid device permissions \"{}\": expected letters from \"rwm\" (read, write, mknod), such as \"rw\"",
            p.escape_debug()
        )
    };
    let (host, container, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm".to_string()),
        [h, x] => match device_access(x) {
            Some(a) => (*h, *h, a),
            None if x.starts_with('/') => (*h, *x, "rwm".to_string()),
            None => return Err(bad_access(x)),
        },
        [h, c, a] => (*h, *c, device_access(a).ok_or_else(|| bad_access(a))?),
        _ => {
            return Err(format!(
                "invalid device \"{}\": expected HOST_PATH[:CONTAINER_PATH][:PERMISSIONS], such as \"/dev/net/tun:rwm\"",
                s.escape_debug()
            ))
        }
    };
    let host = check_abs_path(host)?;
    if !host.starts_with("/dev") {
        return Err(format!(
            "device \"{}\" is not under /dev: expected a device node or a directory of them, such as \"/dev/fuse\" or \"/dev/dri\"",
            host.display()
        ));
    }
    let container = check_abs_path(container)?;
    Ok(DeviceRequest {
        host,
        container,
        access,
    })
}

/// The sysctls of IPC namespaces (runc `libcontainer/configs/validate`,
/// Podman `pkg/util.ValidateSysctls`); the runtime checks an OCI spec's
/// against the same list.
pub const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Whether the container's network namespace is its own: `net.*` sysctls
/// need one (with `mode = "host"` they would change the host's, with
/// `container:NAME` the other container's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetNs {
    Own,
    Host,
    Joined,
}

/// Check one sysctl name: only namespaced ones, as runc and Podman allow
/// (kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.* with a network
/// namespace of the container's own, kernel.domainname). `kernel.hostname`
/// is the `hostname` key's.
pub fn check_sysctl(name: &str, net: NetNs) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        });
    if !valid {
        return Err(format!(
            "invalid sysctl name \"{}\": expected dotted words, such as \"net.ipv4.ip_unprivileged_port_start\"",
            name.escape_debug()
        ));
    }
    if IPC_SYSCTLS.contains(&name) || name.starts_with("fs.mqueue.") || name == "kernel.domainname"
    {
        return Ok(());
    }
    if name == "kernel.hostname" {
        return Err("sysctl \"kernel.hostname\": set the \"hostname\" key instead".to_string());
    }
    if name.starts_with("net.") {
        return match net {
            NetNs::Own => Ok(()),
            NetNs::Host => Err(format!(
                "sysctl \"{name}\" would change the host's network: net.* sysctls need the container's own network namespace (not [network] mode = \"host\")"
            )),
            NetNs::Joined => Err(format!(
                "sysctl \"{name}\" would change another container's network: set it in the definition of the container whose network this one joins"
            )),
        };
    }
    Err(format!(
        "sysctl \"{name}\" is not namespaced: setting it would change the whole host; expected kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, kernel.domainname or net.*"
    ))
}

/// `[resources] ulimits` names, as `docker run --ulimit` spells them
/// (moby `daemon/oci_linux.go`, go-units `ulimit.go`), each with its OCI
/// `RLIMIT_*` name.
pub const ULIMITS: &[(&str, &str)] = &[
    ("as", "RLIMIT_AS"),
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// Unlimited (`RLIM_INFINITY`).
pub const UNLIMITED: u64 = u64::MAX;

/// One ulimit: soft and hard, [`UNLIMITED`] for "unlimited" or -1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: u64,
    pub hard: u64,
}

/// Check a ulimit name.
pub fn check_ulimit_name(name: &str) -> Result<(), String> {
    if ULIMITS.iter().any(|(n, _)| *n == name) {
        return Ok(());
    }
    let names: Vec<&str> = ULIMITS.iter().map(|(n, _)| *n).collect();
    Err(format!(
        "unknown ulimit \"{}\": expected {}",
        name.escape_debug(),
        one_of(&names)
    ))
}

fn ulimit_number(s: &str) -> Result<u64, String> {
    match s.trim() {
        "unlimited" | "-1" => Ok(UNLIMITED),
        n => n.parse::<u64>().map_err(|_| {
            format!(
                "invalid limit \"{}\": expected a number, \"unlimited\" or -1",
                n.escape_debug()
            )
        }),
    }
}

/// Parse a ulimit value: `"SOFT:HARD"` or one number for both (Docker's
/// `--ulimit nofile=65536:65536`); soft above hard is refused, as Docker
/// refuses it.
pub fn parse_ulimit(s: &str) -> Result<Ulimit, String> {
    let (soft, hard) = match s.split_once(':') {
        Some((a, b)) => (ulimit_number(a)?, ulimit_number(b)?),
        None => {
            let n = ulimit_number(s)?;
            (n, n)
        }
    };
    if soft > hard {
        return Err(format!(
            "soft limit {} is above the hard limit {}: the kernel refuses that; write \"SOFT:HARD\" with SOFT <= HARD",
            show_limit(soft),
            show_limit(hard)
        ));
    }
    Ok(Ulimit { soft, hard })
}

fn show_limit(n: u64) -> String {
    if n == UNLIMITED {
        "unlimited".to_string()
    } else {
        n.to_string()
    }
}

/// `[[tmpfs]] options`: mount flags and their opposites (mount(8)). Size,
/// mode, uid and gid have keys of their own.
pub const TMPFS_OPTIONS: &[&str] = &[
    "ro",
    "rw",
    "noexec",
    "exec",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noatime",
    "atime",
    "nodiratime",
    "diratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "sync",
    "async",
];

/// Check one `[[tmpfs]] options` entry.
pub fn check_tmpfs_option(s: &str) -> Result<(), String> {
    if TMPFS_OPTIONS.contains(&s) {
        return Ok(());
    }
    if let Some((k @ ("size" | "mode" | "uid" | "gid"), _)) = s.split_once('=') {
        return Err(format!(
            "tmpfs option \"{}\": set it with the \"{k}\" key of this [[tmpfs]]",
            s.escape_debug()
        ));
    }
    Err(format!(
        "unknown tmpfs option \"{}\": expected {}",
        s.escape_debug(),
        one_of(TMPFS_OPTIONS)
    ))
}

/// The mount options of a tmpfs: berth's defaults (nosuid, nodev), then the
/// definition's, an option dropping its opposite (`exec` drops `noexec`).
pub fn tmpfs_flags(options: &[String]) -> Vec<String> {
    let opposite = |o: &str| -> String {
        match o.strip_prefix("no") {
            Some(rest) => rest.to_string(),
            None => format!("no{o}"),
        }
    };
    let mut out: Vec<String> = vec!["nosuid".into(), "nodev".into()];
    for o in options {
        let other = match o.as_str() {
            "ro" => "rw".to_string(),
            "rw" => "ro".to_string(),
            "sync" => "async".to_string(),
            "async" => "sync".to_string(),
            o => opposite(o),
        };
        out.retain(|x| *x != other && x != o);
        out.push(o.clone());
    }
    out
}

/// `[security] unmask`: paths, or `ALL` (every default masked and
/// read-only path, as Podman's `--security-opt unmask=ALL`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unmask {
    pub all: bool,
    pub paths: Vec<PathBuf>,
}

/// One `group_add` entry: a gid, or a group name from the image's
/// /etc/group (resolved when the container is planned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Id(u32),
    Name(String),
}

/// Parse one `group_add` entry (a number, or a name as groupadd(8) takes).
pub fn parse_group(s: &str) -> Result<GroupRef, String> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(GroupRef::Id(n));
    }
    let ok = !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-$".contains(&b));
    if ok {
        Ok(GroupRef::Name(s.to_string()))
    } else {
        Err(format!(
            "invalid group \"{}\": expected a gid or a group name from the image's /etc/group",
            s.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_as_docker_reads_them() {
        let d = parse_device("/dev/fuse").unwrap();
        assert_eq!(
            (d.host.to_str(), d.container.to_str(), d.access.as_str()),
            (Some("/dev/fuse"), Some("/dev/fuse"), "rwm")
        );
        let d = parse_device("/dev/net/tun:wr").unwrap();
        assert_eq!(d.access, "rw");
        let d = parse_device("/dev/sda:/dev/xvda").unwrap();
        assert_eq!(d.container.to_str(), Some("/dev/xvda"));
        let d = parse_device("/dev/sda:/dev/xvda:r").unwrap();
        assert_eq!(d.access, "r");
        assert!(parse_device("/dev/fuse:rwx")
            .unwrap_err()
            .contains("permissions \"rwx\""));
        assert!(parse_device("/dev/fuse:rr").is_err());
        assert!(parse_device("/etc/passwd")
            .unwrap_err()
            .contains("not under /dev"));
        assert!(parse_device("dev/fuse").unwrap_err().contains("relative"));
        assert!(parse_device("/dev/a:/b:r:w").is_err());
    }

    #[test]
    fn only_namespaced_sysctls() {
        for ok in [
            "net.ipv4.ip_unprivileged_port_start",
            "kernel.shmmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
            "kernel.domainname",
        ] {
            assert_eq!(check_sysctl(ok, NetNs::Own), Ok(()), "{ok}");
        }
        assert!(check_sysctl("kernel.pid_max", NetNs::Own)
            .unwrap_err()
            .contains("not namespaced"));
        assert!(check_sysctl("vm.swappiness", NetNs::Own).is_err());
        assert!(check_sysctl("kernel.hostname", NetNs::Own)
            .unwrap_err()
            .contains("hostname"));
        assert!(check_sysctl("net.ipv4.ip_forward", NetNs::Host)
            .unwrap_err()
            .contains("host's network"));
        assert!(check_sysctl("net.ipv4.ip_forward", NetNs::Joined).is_err());
        assert!(check_sysctl("net..x", NetNs::Own).is_err());
        assert!(check_sysctl("net/../x", NetNs::Own).is_err());
    }

    #[test]
    fn ulimits_soft_and_hard() {
        assert_eq!(
            parse_ulimit("65536:65536"),
            Ok(Ulimit {
                soft: 65536,
                hard: 65536
            })
        );
        assert_eq!(
            parse_ulimit("1024"),
            Ok(Ulimit {
                soft: 1024,
                hard: 1024
            })
        );
        assert_eq!(
            parse_ulimit("-1"),
            Ok(Ulimit {
                soft: UNLIMITED,
                hard: UNLIMITED
            })
        );
        assert_eq!(parse_ulimit("0:unlimited").unwrap().hard, UNLIMITED);
        assert!(parse_ulimit("2048:1024")
            .unwrap_err()
            .contains("above the hard limit 1024"));
        assert!(parse_ulimit("lots").is_err());
        assert!(check_ulimit_name("nofile").is_ok());
        assert!(check_ulimit_name("files")
            .unwrap_err()
            .contains("\"nofile\""));
    }

    #[test]
    fn tmpfs_options_replace_their_opposites() {
        assert!(check_tmpfs_option("noexec").is_ok());
        assert!(check_tmpfs_option("size=1m")
            .unwrap_err()
            .contains("\"size\" key"));
        assert!(check_tmpfs_option("bogus")
            .unwrap_err()
            .contains("unknown tmpfs option"));
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(tmpfs_flags(&[]), s(&["nosuid", "nodev"]));
        assert_eq!(
            tmpfs_flags(&s(&["noexec", "nosuid", "dev", "ro"])),
            s(&["noexec", "nosuid", "dev", "ro"])
        );
        assert_eq!(tmpfs_flags(&s(&["suid"])), s(&["nodev", "suid"]));
    }

    #[test]
    fn groups_by_id_or_name() {
        assert_eq!(parse_group("10"), Ok(GroupRef::Id(10)));
        assert_eq!(parse_group("video"), Ok(GroupRef::Name("video".into())));
        assert!(parse_group("a b").is_err());
        assert!(parse_group("").is_err());
    }
}
