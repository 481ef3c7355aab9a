//! Value parsers for the strings a definition holds: sizes, durations, port
//! mappings, capabilities, image references, names, and the string enums.
//!
//! Pure: every function takes a `&str` and returns a value or a message saying
//! what was expected. No file access, no knowledge of spans (the caller adds
//! file:line:column).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::distribution::Reference;

/// Defines a string enum with one mapping used both ways, so parsing and
/// printing cannot drift apart (systemd `test-nspawn-tables.c` checks the same).
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling used in definition files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parse the spelling used in definition files.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// `"a", "b" or "c"`, for error messages.
            pub fn expected() -> String {
                one_of(&[$($text),+])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        // As its spelling in definition files: the supervisor hands what it
        // watches to its re-executed waiting loop as JSON (supervise/watch.rs).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!("expected {}", $name::expected()))
                })
            }
        }
    };
}

string_enum! {
    /// `[network] mode`.
    NetworkMode { Bridge = "bridge", Host = "host", None = "none", Container = "container:NAME" }
}
string_enum! {
    /// `[service] restart`; maps 1:1 to systemd's `Restart=`.
    Restart { No = "no", OnFailure = "on-failure", Always = "always" }
}
string_enum! {
    /// `[service] notify`: when the unit counts as started.
    Notify {
        /// As soon as the container's process runs.
        Started = "started",
        /// Once the health check first passes.
        Healthy = "healthy",
        /// The application sends `READY=1` itself.
        Container = "container",
    }
}
string_enum! {
    /// `[service] pull`: when a start fetches the image.
    Pull {
        Missing = "missing",
        Always = "always",
        Never = "never",
        /// Pull when the registry's digest for the tag differs from the
        /// stored one; keep the stored image when the registry is unreachable.
        Newer = "newer",
    }
}
string_enum! {
    /// `[health] on_failure`.
    OnFailure { None = "none", Kill = "kill", Restart = "restart" }
}
string_enum! {
    /// `[security] userns`.
    Userns {
        /// The host's user namespace.
        Host = "host",
        /// A private 65536-id range per container.
        Auto = "auto",
        /// As `auto`, but the container's (non-root) `user` keeps its host
        /// uid and gid (Podman's keep-id, for a system service).
        KeepId = "keep-id",
    }
}
string_enum! {
    /// `[[volume]] propagation`: the bind's mount propagation
    /// (mount_namespaces(7); Docker's and Podman's `-v` option names).
    Propagation {
        Private = "private",
        Rprivate = "rprivate",
        Shared = "shared",
        Rshared = "rshared",
        Slave = "slave",
        Rslave = "rslave",
    }
}
string_enum! {
    /// Protocol of a published port.
    Protocol { Tcp = "tcp", Udp = "udp" }
}

/// Signal names every Linux architecture has (`man 7 signal`), without
/// `SIG`. Numbers differ between architectures, so a definition's signal
/// stays a name here and becomes a number where it is sent
/// (`runtime::parse_signal`).
const SIGNAL_NAMES: &[&str] = &[
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
    "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
    "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS",
];

/// A signal as a definition names it (`SIGHUP`, `hup`, `SIGRTMIN+3`, `15`),
/// normalised to `SIGHUP`, `SIGRTMIN+3` or the number; real-time signals
/// are in (systemd in a container stops on SIGRTMIN+3). glibc leaves 30
/// real-time signals to programs (SIGRTMIN 34 to SIGRTMAX 64).
pub fn parse_signal_name(s: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "invalid signal \"{}\": expected a name such as \"SIGTERM\", \"SIGHUP\" or \"SIGRTMIN+3\", or a number from 1 to 64",
            s.escape_debug()
        )
    };
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n).then(|| n.to_string()).ok_or_else(bad);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if SIGNAL_NAMES.contains(&name) {
        return Ok(format!("SIG{name}"));
    }
    for (base, sign) in [("RTMIN", '+'), ("RTMAX", '-')] {
        if let Some(rest) = name.strip_prefix(base) {
            if rest.is_empty() {
                return Ok(format!("SIG{base}"));
            }
            let k = rest
                .strip_prefix(sign)
                .and_then(|k| k.parse::<u32>().ok())
                .filter(|k| *k <= 30)
                .ok_or_else(bad)?;
            return Ok(format!("SIG{base}{sign}{k}"));
        }
    }
    Err(bad())
}

/// One `uid_map`/`gid_map` extent, `"CONTAINER:HOST:SIZE"` (Podman's
/// `--uidmap` spelling), each end within 32 bits.
pub fn parse_id_mapping(s: &str) -> Result<crate::config::IdMapping, String> {
    let bad = |why: &str| format!("invalid ID map \"{}\": {why}", s.escape_debug());
    let parts: Vec<&str> = s.split(':').collect();
    let [c, h, n] = parts.as_slice() else {
        return Err(bad(
            "expected \"CONTAINER:HOST:SIZE\", e.g. \"0:100000:65536\"",
        ));
    };
    let num = |x: &str| {
        x.parse::<u32>()
            .map_err(|_| bad("each field must be a number from 0 to 4294967295"))
    };
    let (container, host, size) = (num(c)?, num(h)?, num(n)?);
    if size == 0 {
        return Err(bad("the size must be at least 1"));
    }
    let end = u64::from(size);
    if u64::from(container) + end > 1 << 32 || u64::from(host) + end > 1 << 32 {
        return Err(bad("the range runs past 4294967295"));
    }
    Ok(crate::config::IdMapping {
        container,
        host,
        size,
    })
}

/// `"a", "b" or "c"`.
pub fn one_of(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// `[security] seccomp`: a named policy or a profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// berth's built-in default filter.
    Default,
    /// No filter.
    Unconfined,
    /// An OCI/Docker-format JSON profile at this absolute path.
    Profile(PathBuf),
}

impl fmt::Display for Seccomp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seccomp::Default => f.write_str("default"),
            Seccomp::Unconfined => f.write_str("unconfined"),
            Seccomp::Profile(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Parse `default`, `unconfined` or an absolute path to a profile.
pub fn parse_seccomp(s: &str) -> Result<Seccomp, String> {
    match s {
        "default" => Ok(Seccomp::Default),
        "unconfined" => Ok(Seccomp::Unconfined),
        p if p.starts_with('/') => Ok(Seccomp::Profile(PathBuf::from(p))),
        _ => {
            Err("expected \"default\", \"unconfined\" or an absolute path to a JSON profile".into())
        }
    }
}

/// A published port: `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// Address to bind on the host; `None` means every address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// How many consecutive ports from `host_port` and `container_port`
    /// (`8000-8010:80-90` is 11); 1 for a single port.
    pub count: u16,
}

impl PortMapping {
    /// (host port, container port) of each port of the range.
    pub fn pairs(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        (0..self.count).map(|i| (self.host_port + i, self.container_port + i))
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            None => {}
        }
        let end = |start: u16| match self.count {
            1 => String::new(),
            n => format!("-{}", start + (n - 1)),
        };
        write!(
            f,
            "{}{}:{}{}/{}",
            self.host_port,
            end(self.host_port),
            self.container_port,
            end(self.container_port),
            self.protocol
        )
    }
}

const PORT_EXPECTED: &str = "expected \"[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]\" (e.g. \"8080:80\", \"127.0.0.1:8443:443/tcp\", \"[2001:db8::1]:53:53/udp\", \"8000-8010:80-90\")";

/// Parse a port mapping such as `8080:80`, `127.0.0.1:8443:443/tcp`,
/// `5353:53/udp` or `[2001:db8::1]:80:80`.
pub fn parse_port(s: &str) -> Result<PortMapping, String> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((spec, proto)) => match Protocol::parse(proto) {
            Some(p) => (spec, p),
            None => {
                return Err(format!(
                    "unknown protocol \"{proto}\": expected \"tcp\" or \"udp\""
                ))
            }
        },
        None => (s, Protocol::Tcp),
    };
    let (host_ip, rest) = if let Some(after) = spec.strip_prefix('[') {
        let Some((ip, rest)) = after.split_once("]:") else {
            return Err(PORT_EXPECTED.into());
        };
        let ip: std::net::Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("invalid IPv6 address \"{ip}\""))?;
        if ip.is_loopback() {
            // 127.0.0.1 works through route_localnet; IPv6 has no such
            // switch, and the kernel drops a ::1-sourced packet routed to the
            // bridge (Docker answers ::1 with its userland proxy instead).
            return Err(
                "::1 cannot be forwarded to a container (IPv6 has no route_localnet): publish on 127.0.0.1, or on one of the host's own IPv6 addresses"
                    .into(),
            );
        }
        (Some(IpAddr::V6(ip)), rest)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            2 => (None, spec),
            3 => {
                let ip: std::net::Ipv4Addr = parts[0].parse().map_err(|_| {
                    format!(
                        "invalid IPv4 address \"{}\" (write IPv6 addresses in brackets, \"[::1]:80:80\")",
                        parts[0]
                    )
                })?;
                (Some(IpAddr::V4(ip)), &spec[parts[0].len() + 1..])
            }
            _ => return Err(PORT_EXPECTED.into()),
        }
    };
    let Some((host, container)) = rest.split_once(':') else {
        return Err(PORT_EXPECTED.into());
    };
    let (host_port, host_n) = parse_port_range(host)?;
    let (container_port, container_n) = parse_port_range(container)?;
    if host_n != container_n {
        return Err(format!(
            "host ports \"{host}\" are {host_n} and container ports \"{container}\" are {container_n}: expected as many on each side"
        ));
    }
    Ok(PortMapping {
        host_ip,
        host_port,
        container_port,
        protocol,
        count: host_n,
    })
}

/// `PORT` or `FIRST-LAST`: the first port and how many.
fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let Some((a, b)) = s.split_once('-') else {
        return Ok((parse_port_number(s)?, 1));
    };
    let (first, last) = (parse_port_number(a)?, parse_port_number(b)?);
    if last < first {
        return Err(format!(
            "invalid port range \"{s}\": expected FIRST-LAST with FIRST at most LAST"
        ));
    }
    Ok((first, last - first + 1))
}

fn parse_port_number(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port \"{s}\": {PORT_EXPECTED}"));
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!(
            "invalid port \"{s}\": expected a number from 1 to 65535"
        )),
    }
}

/// Expected form of a size, for messages.
pub const SIZE_EXPECTED: &str =
    "expected a number with an optional unit K, M, G or T (e.g. \"256M\")";

/// Parse a permission mode written in octal, `"1777"`, `"0750"` or `"750"`:
/// up to four octal digits (setuid, setgid and sticky bits included).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err("expected up to four octal digits, such as \"1777\" or \"0750\"".into());
    }
    u32::from_str_radix(digits, 8).map_err(|e| e.to_string())
}

/// Parse a size: plain bytes or a number with a binary unit `K`, `M`, `G`, `T`
/// (case-insensitive, an optional trailing `B` or `iB` is accepted), e.g. `256M`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    if num.is_empty() {
        return Err(SIZE_EXPECTED.into());
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(SIZE_EXPECTED.into()),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| "size is too large: expected at most 16E".to_string())
}

/// Expected form of a duration, for messages.
pub const DURATION_EXPECTED: &str =
    "expected a duration such as \"30s\", \"5min\", \"1h30min\" or \"500ms\"";

/// Parse a systemd-style time span (`man systemd.time`): `30s`, `5min`,
/// `1h30min`, `500ms`, `1.5s`, `2 h`; a plain number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DURATION_EXPECTED.into());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u128 = 0; // nanoseconds
    let mut rest = t;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_end);
        if num.is_empty() {
            return Err(DURATION_EXPECTED.into());
        }
        let after = after.trim_start();
        let unit_end = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_end);
        let nanos_per: u128 = match unit {
            "ns" | "nsec" => 1,
            "us" | "usec" | "µs" => 1_000,
            "ms" | "msec" => 1_000_000,
            "" | "s" | "sec" | "second" | "seconds" => 1_000_000_000,
            "m" | "min" | "minute" | "minutes" => 60_000_000_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000_000_000,
            "d" | "day" | "days" => 86_400_000_000_000,
            "w" | "week" | "weeks" => 604_800_000_000_000,
            _ => {
                return Err(format!(
                    "unknown time unit \"{unit}\": {DURATION_EXPECTED} (units: ms, s, min, h, d, w)"
                ))
            }
        };
        // A bare number is only allowed alone (handled above): "1h30" is ambiguous.
        if unit.is_empty() {
            return Err(DURATION_EXPECTED.into());
        }
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(DURATION_EXPECTED.into());
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| DURATION_EXPECTED.to_string())?
        };
        let mut value = int
            .checked_mul(nanos_per)
            .ok_or_else(|| "duration is too long".to_string())?;
        let mut scale = nanos_per;
        for d in frac.bytes() {
            scale /= 10;
            value += u128::from(d - b'0') * scale;
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| "duration is too long".to_string())?;
        rest = tail;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "duration is too long")?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Every capability the kernel knows (capability.h, up to Linux 6.x).
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Normalise a capability name to `CAP_X` form: `net_bind_service`,
/// `NET_BIND_SERVICE` and `CAP_NET_BIND_SERVICE` are the same; `ALL` stays `ALL`.
pub fn parse_capability(s: &str) -> Result<String, String> {
    let upper = s.to_ascii_uppercase();
    if upper == "ALL" {
        return Ok("ALL".into());
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        let hint = crate::config::diag::did_you_mean(&full, CAPABILITIES.iter().copied())
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_default();
        Err(format!(
            "unknown capability \"{s}\"{hint}: expected a name from capabilities(7) such as \"NET_BIND_SERVICE\", or \"ALL\""
        ))
    }
}

const IMAGE_EXPECTED: &str = "expected \"[docker://]NAME[:TAG][@sha256:DIGEST]\", \"oci-archive:/PATH.tar[:TAG]\", \"oci:/DIR[:TAG]\" or \"docker-archive:/PATH.tar\"";

/// `image`: the one reference grammar berth has (`distribution::Reference`,
/// which `berth pull` and the store parse with too: distribution/reference's
/// names, `docker://`, the offline transports), plus the one rule a
/// definition adds: a local source's path is absolute, since the unit that
/// starts it has no working directory to be relative to.
pub fn parse_image(s: &str) -> Result<Reference, String> {
    let r = Reference::parse(s).map_err(|e| {
        format!(
            "invalid image \"{s}\": {}; {IMAGE_EXPECTED}",
            Reference::reason(&e)
        )
    })?;
    if let Some((transport, path)) = r.local_path() {
        if !path.is_absolute() {
            return Err(format!(
                "invalid image \"{s}\": the path after \"{transport}:\" must be absolute"
            ));
        }
    }
    Ok(r)
}

/// Container and network names: `[A-Za-z0-9][A-Za-z0-9_.-]{0,62}`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name \"{}\": expected 1 to 63 characters from A-Z, a-z, 0-9, \"_\", \".\", \"-\", starting with a letter or digit",
            name.escape_debug()
        ))
    }
}

/// `user`: `uid[:gid]` or a name from the image's /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    Id { uid: u32, gid: Option<u32> },
    Name(String),
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            User::Id { uid, gid: None } => write!(f, "{uid}"),
            User::Id { uid, gid: Some(g) } => write!(f, "{uid}:{g}"),
            User::Name(n) => f.write_str(n),
        }
    }
}

/// Parse `uid[:gid]` (numbers) or a user name (`[a-z_][a-z0-9_-]*[$]?`,
/// as shadow-utils accepts, up to 32 characters).
pub fn parse_user(s: &str) -> Result<User, String> {
    const EXPECTED: &str = "expected \"UID[:GID]\" (numbers) or a user name";
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        let (u, g) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let uid = u
            .parse::<u32>()
            .map_err(|_| format!("invalid uid \"{u}\": {EXPECTED}"))?;
        let gid = match g {
            Some(g) => Some(
                g.parse::<u32>()
                    .map_err(|_| format!("invalid gid \"{g}\": {EXPECTED}"))?,
            ),
            None => None,
        };
        return Ok(User::Id { uid, gid });
    }
    let b = s.as_bytes();
    let body = b.strip_suffix(b"$").unwrap_or(b);
    let ok = !body.is_empty()
        && b.len() <= 32
        && (body[0].is_ascii_lowercase() || body[0] == b'_')
        && body
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'));
    if ok {
        Ok(User::Name(s.to_string()))
    } else {
        Err(format!("invalid user \"{}\": {EXPECTED}", s.escape_debug()))
    }
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn validate_env_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    if !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "invalid environment variable name \"{}\": expected letters, digits and \"_\", not starting with a digit",
            name.escape_debug()
        ))
    }
}

/// systemd credential names as they can appear in `LoadCredential=ID`: a valid
/// file name (no "/", not "." or "..") of at most 255 bytes. berth is stricter
/// and keeps to `[A-Za-z0-9_.@-]`, so the name needs no unit-file quoting and
/// cannot hold a specifier ("%") or the ID:PATH separator (":").
pub fn validate_credential(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid credential name \"{}\": expected 1 to 255 characters from A-Z, a-z, 0-9, \"_\", \".\", \"@\", \"-\"",
            name.escape_debug()
        ))
    }
}

/// Unit suffixes a dependency can name (`man systemd.unit`).
const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
];

/// A systemd unit name such as `network-online.target` or `postgresql.service`.
pub fn validate_unit_name(name: &str) -> Result<(), String> {
    let suffix_ok = name
        .rsplit_once('.')
        .is_some_and(|(stem, suffix)| !stem.is_empty() && UNIT_SUFFIXES.contains(&suffix));
    let chars_ok = name.len() <= 255
        && name.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b':' | b'-' | b'_' | b'.' | b'\\' | b'@')
        });
    if suffix_ok && chars_ok {
        Ok(())
    } else {
        Err(format!(
            "invalid unit name \"{}\": expected a systemd unit such as \"network-online.target\" or \"postgresql.service\"",
            name.escape_debug()
        ))
    }
}

/// A hostname label sequence (RFC 1123): letters, digits, "-" and ".", at most 63
/// characters (what `sethostname(2)` inside a container should get).
pub fn validate_hostname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.len() <= 63 && dns_labels(name);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid hostname \"{}\": expected up to 63 characters of letters, digits, \"-\" and \".\"",
            name.escape_debug()
        ))
    }
}

/// Every "."-separated label of `name` is 1-63 letters, digits and "-",
/// with no "-" at either end (RFC 1123).
fn dns_labels(name: &str) -> bool {
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
    })
}

/// A domain name (RFC 1123): labels of letters, digits and "-" (not at either
/// end) of at most 63 characters, at most 253 in all; one trailing "." (the
/// root) is allowed. Used by `dns_search` and the names of `extra_hosts`.
pub fn validate_domain(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let ok = !bare.is_empty() && bare.len() <= 253 && dns_labels(bare);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid domain name \"{}\": expected labels of letters, digits and \"-\" separated by \".\", such as \"example.org\"",
            name.escape_debug()
        ))
    }
}

/// An IP address (IPv4 or IPv6) as `dns` and `ip` take it.
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "invalid IP address \"{}\": expected an IPv4 address such as \"192.0.2.53\" or an IPv6 one such as \"2001:db8::53\"",
            s.escape_debug()
        )
    })
}

/// `extra_hosts` entry `NAME:ADDRESS`, split at the first ":" so that an
/// IPv6 address keeps its own colons (Docker's `--add-host` grammar, as
/// opts.ValidateExtraHost reads it).
pub fn parse_extra_host(s: &str) -> Result<(String, IpAddr), String> {
    let Some((name, addr)) = s.split_once(':') else {
        return Err(format!(
            "invalid host entry \"{}\": expected \"NAME:ADDRESS\", such as \"gw:192.0.2.1\"",
            s.escape_debug()
        ));
    };
    validate_domain(name)?;
    // Docker also accepts "[::1]" for an IPv6 address.
    let bare = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip = parse_ip(bare)?;
    Ok((name.to_string(), ip))
}

/// An IPv4/IPv6 prefix such as `10.89.1.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Subnet {
    /// Whether `ip` lies inside this subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl Subnet {
    fn bits(&self) -> u32 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// The address as a number, IPv4 in the low 32 bits.
    fn num(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn addr_of(&self, n: u128) -> IpAddr {
        match self.addr {
            // Only ever called with a number from this (IPv4) subnet.
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(n)),
        }
    }

    fn mask(&self) -> u128 {
        let host_bits = self.bits() - u32::from(self.prefix);
        let all = if self.bits() == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        all & !(u128::MAX.checked_shr(128 - host_bits).unwrap_or(0))
    }

    /// The same prefix with the host bits cleared (`10.89.1.5/24` → `10.89.1.0/24`).
    pub fn network(&self) -> Subnet {
        Subnet {
            addr: self.addr_of(Self::num(self.addr) & self.mask()),
            prefix: self.prefix,
        }
    }

    /// The first and last address of the range, as numbers.
    fn bounds(&self) -> (u128, u128) {
        let first = Self::num(self.addr) & self.mask();
        let last = first
            | !self.mask()
                & if self.bits() == 32 {
                    u128::from(u32::MAX)
                } else {
                    u128::MAX
                };
        (first, last)
    }

    /// Whether `ip` may be given to a host: inside, not the network address,
    /// and for IPv4 not the broadcast address either.
    pub fn is_host(&self, ip: IpAddr) -> bool {
        let (first, last) = self.bounds();
        let n = Self::num(ip);
        self.contains(ip) && n != first && (self.addr.is_ipv6() || n != last)
    }

    /// The `n`th address after the network address (`nth_host(1)` is the
    /// conventional gateway), if it is a host address of this subnet.
    pub fn nth_host(&self, n: u128) -> Option<IpAddr> {
        let (first, _) = self.bounds();
        let ip = self.addr_of(first.checked_add(n)?);
        self.is_host(ip).then_some(ip)
    }

    /// How far `ip` lies after the network address (the inverse of `nth_host`).
    pub fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        self.contains(ip).then(|| Self::num(ip) - self.bounds().0)
    }

    /// Whether the two ranges share an address (never across families).
    pub fn overlaps(&self, other: &Subnet) -> bool {
        if self.addr.is_ipv4() != other.addr.is_ipv4() {
            return false;
        }
        let (a0, a1) = self.bounds();
        let (b0, b1) = other.bounds();
        a0 <= b1 && b0 <= a1
    }

    /// The `index`th subnet of length `prefix` inside this one, if there is one.
    pub fn carve(&self, prefix: u8, index: u128) -> Option<Subnet> {
        if prefix < self.prefix || u32::from(prefix) > self.bits() {
            return None;
        }
        let step = 1u128.checked_shl(self.bits() - u32::from(prefix))?;
        let count = 1u128.checked_shl(u32::from(prefix - self.prefix))?;
        if index >= count {
            return None;
        }
        let addr = self.addr_of(self.bounds().0 + index * step);
        Some(Subnet { addr, prefix })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parse `ADDR/PREFIX`.
pub fn parse_subnet(s: &str) -> Result<Subnet, String> {
    let err =
        || format!("invalid subnet \"{s}\": expected \"ADDRESS/PREFIX\" (e.g. \"10.89.1.0/24\")");
    let (a, p) = s.split_once('/').ok_or_else(err)?;
    let addr: IpAddr = a.parse().map_err(|_| err())?;
    let prefix: u8 = p.parse().map_err(|_| err())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!(
            "invalid subnet \"{s}\": prefix must be at most {max}"
        ));
    }
    Ok(Subnet { addr, prefix })
}

/// The highest CPU number a `cpuset` may name (systemd's CPU sets hold
/// 8192).
pub const MAX_CPU: u32 = 8191;

/// `cpuset`: CPU numbers and ranges as cpuset.cpus and AllowedCPUs= take
/// them (`0-3,6`), normalised (no spaces).
pub fn parse_cpu_list(s: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected CPU numbers and ranges such as \"0-3,6\"";
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim) {
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        let num = |t: &str| t.trim().parse::<u32>().ok().filter(|n| *n <= MAX_CPU);
        match (num(a), num(b)) {
            (Some(lo), Some(hi)) if lo <= hi => out.push(if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }),
            (Some(lo), Some(hi)) => {
                return Err(format!("range {lo}-{hi} runs backwards: {EXPECTED}"))
            }
            _ if item.is_empty() => return Err(EXPECTED.into()),
            _ => {
                return Err(format!(
                    "\"{item}\" is not a CPU (0 to {MAX_CPU}) or range: {EXPECTED}"
                ))
            }
        }
    }
    Ok(out.join(","))
}

/// Expected form of an `io_max` value, for messages.
pub const IO_MAX_EXPECTED: &str =
    "expected \"rbps=SIZE wbps=SIZE riops=N wiops=N\" (any of them, e.g. \"rbps=10M wiops=100\")";

/// One device's `io_max` value: bytes per second read and written (sizes,
/// `10M`) and read and write operations per second; each at most once, at
/// least one, each above 0.
pub fn parse_io_max(s: &str) -> Result<[Option<u64>; 4], String> {
    const KEYS: [&str; 4] = ["rbps", "wbps", "riops", "wiops"];
    let mut out = [None; 4];
    for word in s.split_whitespace() {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!("\"{word}\" is not KEY=VALUE: {IO_MAX_EXPECTED}"));
        };
        let Some(i) = KEYS.iter().position(|x| *x == k) else {
            return Err(format!("unknown limit \"{k}\": {IO_MAX_EXPECTED}"));
        };
        if out[i].is_some() {
            return Err(format!("\"{k}\" is given twice"));
        }
        let n = if i < 2 {
            parse_size(v).map_err(|e| format!("{k}: invalid size \"{v}\": {e}"))?
        } else {
            v.parse::<u64>()
                .map_err(|_| format!("{k}: \"{v}\" is not a number of operations per second"))?
        };
        if n == 0 {
            return Err(format!("{k} must be greater than 0"));
        }
        out[i] = Some(n);
    }
    if out.iter().all(Option::is_none) {
        return Err(IO_MAX_EXPECTED.into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_and_extra_hosts() {
        for ok in ["example.org", "a", "x-1.example.org.", "lan"] {
            assert_eq!(validate_domain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "-a.org",
            "a..org",
            "a_b.org",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(validate_domain(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_extra_host("gw:192.0.2.1"),
            Ok(("gw".into(), "192.0.2.1".parse().unwrap()))
        );
        // Split at the first colon: the IPv6 address keeps the rest.
        assert_eq!(
            parse_extra_host("v6.example:2001:db8::1"),
            Ok(("v6.example".into(), "2001:db8::1".parse().unwrap()))
        );
        assert_eq!(
            parse_extra_host("v6:[::1]"),
            Ok(("v6".into(), "::1".parse().unwrap()))
        );
        assert!(parse_extra_host("gw").unwrap_err().contains("NAME:ADDRESS"));
        assert!(parse_extra_host("gw:nope")
            .unwrap_err()
            .contains("invalid IP address"));
        assert!(parse_extra_host("g w:192.0.2.1")
            .unwrap_err()
            .contains("domain name"));
        assert!(parse_ip("10.0.0.300").is_err());
    }

    #[test]
    fn string_enums_round_trip() {
        fn check<T: Copy + PartialEq + fmt::Debug>(
            all: &[T],
            as_str: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            for &v in all {
                assert_eq!(parse(as_str(v)), Some(v), "{v:?}");
            }
            assert_eq!(parse("nonsense"), None);
        }
        check(NetworkMode::ALL, NetworkMode::as_str, NetworkMode::parse);
        check(Restart::ALL, Restart::as_str, Restart::parse);
        check(Notify::ALL, Notify::as_str, Notify::parse);
        check(Pull::ALL, Pull::as_str, Pull::parse);
        check(OnFailure::ALL, OnFailure::as_str, OnFailure::parse);
        check(Userns::ALL, Userns::as_str, Userns::parse);
        check(Protocol::ALL, Protocol::as_str, Protocol::parse);
        for s in [
            Seccomp::Default,
            Seccomp::Unconfined,
            Seccomp::Profile("/etc/p.json".into()),
        ] {
            assert_eq!(parse_seccomp(&s.to_string()), Ok(s));
        }
        assert_eq!(Restart::expected(), "\"no\", \"on-failure\" or \"always\"");
    }

    #[test]
    fn signal_names() {
        for (s, n) in [
            ("SIGHUP", "SIGHUP"),
            ("hup", "SIGHUP"),
            ("sigusr1", "SIGUSR1"),
            ("SIGRTMIN+3", "SIGRTMIN+3"),
            ("rtmax-2", "SIGRTMAX-2"),
            ("RTMIN", "SIGRTMIN"),
            ("15", "15"),
            ("64", "64"),
        ] {
            assert_eq!(parse_signal_name(s).as_deref(), Ok(n), "{s}");
        }
        for bad in [
            "", "0", "65", "-1", "SIGNOPE", "RTMIN+31", "RTMIN-1", "RTMAX+1", "SIG",
        ] {
            assert!(parse_signal_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in [
            "",
            "M",
            "256Q",
            "1.5G",
            "-1",
            " 1G",
            "1 G",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("20000000T").unwrap_err().contains("too large"));
    }

    #[test]
    fn durations() {
        let d = |s| parse_duration(s).unwrap();
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("5min"), Duration::from_secs(300));
        assert_eq!(d("1h30min"), Duration::from_secs(5400));
        assert_eq!(d("1h 30min"), Duration::from_secs(5400));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("90"), Duration::from_secs(90));
        assert_eq!(d("2m"), Duration::from_secs(120));
        assert_eq!(d("1d"), Duration::from_secs(86400));
        assert_eq!(d("10us"), Duration::from_micros(10));
        for bad in [
            "",
            "s",
            "30x",
            "1h30",
            "1..5s",
            "abc",
            "-5s",
            "5 minutes later",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        let p = parse_port("8080:80").unwrap();
        assert_eq!(
            p,
            PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                count: 1,
            }
        );
        let p = parse_port("127.0.0.1:8443:443/tcp").unwrap();
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!((p.host_port, p.container_port), (8443, 443));
        let p = parse_port("5353:53/udp").unwrap();
        assert_eq!(p.protocol, Protocol::Udp);
        let p = parse_port("[2001:db8::1]:80:80").unwrap();
        assert_eq!(p.host_ip, Some("2001:db8::1".parse().unwrap()));
        let e = parse_port("[::1]:80:80").unwrap_err();
        assert!(e.starts_with("::1 cannot be forwarded"), "{e}");
        for good in [
            "8080:80/tcp",
            "127.0.0.1:8443:443/tcp",
            "5353:53/udp",
            "[2001:db8::1]:80:80/tcp",
            "8000-8010:80-90/tcp",
            "127.0.0.1:53-54:53-54/udp",
        ] {
            assert_eq!(parse_port(good).unwrap().to_string(), good);
        }
        for bad in [
            "80",
            "0:80",
            "70000:80",
            "a:80",
            "8080:80/sctp",
            "::1:80:80",
            "[::1:80:80",
            "1.2.3:80:80",
            "1:2:3:4",
            "",
            "8000-8010:80",
            "90-80:90-80",
            "8000-:80",
            "65535-65536:1-2",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capabilities() {
        assert_eq!(
            parse_capability("NET_BIND_SERVICE").unwrap(),
            "CAP_NET_BIND_SERVICE"
        );
        assert_eq!(parse_capability("cap_chown").unwrap(), "CAP_CHOWN");
        assert_eq!(parse_capability("ALL").unwrap(), "ALL");
        assert_eq!(parse_capability("all").unwrap(), "ALL");
        let e = parse_capability("NET_BIND_SERVIC").unwrap_err();
        assert!(e.contains("did you mean \"CAP_NET_BIND_SERVICE\""), "{e}");
        assert!(parse_capability("FLY").is_err());
    }

    #[test]
    fn images() {
        // Every registry spelling parses to what `berth pull` parses it to:
        // one grammar (distribution::Reference).
        for (good, canonical) in [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.27", "docker.io/library/nginx:1.27"),
            ("library/nginx:latest", "docker.io/library/nginx:latest"),
            ("registry.example.org/library/nginx:1.27", "registry.example.org/library/nginx:1.27"),
            ("127.0.0.1:5000/busybox:1", "127.0.0.1:5000/busybox:1"),
            ("localhost/x", "localhost/x:latest"),
            (
                "docker.io/library/alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            ("a/b_c__d.e-f:t-1.2", "docker.io/a/b_c__d.e-f:t-1.2"),
            // `docker://`, as skopeo and `berth pull` write it.
            ("docker://127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1"),
            ("docker://nginx", "docker.io/library/nginx:latest"),
        ] {
            let r = parse_image(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert!(r.is_remote(), "{good}");
            assert_eq!(r.canonical(), canonical, "{good}");
            assert_eq!(r, Reference::parse(good).unwrap(), "{good}");
        }
        for (s, want) in [
            (
                "oci-archive:/srv/i.tar",
                Reference::OciArchive {
                    path: "/srv/i.tar".into(),
                    tag: None,
                },
            ),
            (
                "oci-archive:/srv/i.tar:v2",
                Reference::OciArchive {
                    path: "/srv/i.tar".into(),
                    tag: Some("v2".into()),
                },
            ),
            (
                "oci:/srv/layout:v1",
                Reference::OciDir {
                    path: "/srv/layout".into(),
                    tag: Some("v1".into()),
                },
            ),
            (
                "oci:/srv/layout",
                Reference::OciDir {
                    path: "/srv/layout".into(),
                    tag: None,
                },
            ),
            (
                "docker-archive:/x.tar",
                Reference::DockerArchive {
                    path: "/x.tar".into(),
                },
            ),
        ] {
            assert_eq!(parse_image(s), Ok(want), "{s}");
            let r = parse_image(s).unwrap();
            assert!(!r.is_remote(), "{s}");
            assert_eq!(r.to_string(), s);
        }
        for (bad, needle) in [
            ("", "empty"),
            ("Nginx", "lowercase"),
            ("nginx:", "tag ''"),
            ("nginx:bad tag", "tag 'bad tag'"),
            ("nginx@sha256:abc", "64 lowercase hex"),
            ("nginx@md5:0123", "sha256"),
            ("host:99999/x", "port '99999'"),
            ("a//b", "component ''"),
            ("-a", "component '-a'"),
            ("a..b", "component 'a..b'"),
            ("oci-archive:/x.tar:", "empty tag"),
            (
                "oci-archive:rel.tar",
                "the path after \"oci-archive:\" must be absolute",
            ),
            ("oci-archive:rel.tar:v1", "must be absolute"),
            ("oci:relative", "the path after \"oci:\" must be absolute"),
            ("docker-archive:x.tar", "must be absolute"),
        ] {
            let e = parse_image(bad).unwrap_err();
            assert!(e.contains(needle), "{bad:?}: {e}");
            assert!(
                e.starts_with(&format!("invalid image \"{bad}\": ")),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn names() {
        for good in ["web", "a", "db-1", "x.y_z", &"a".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-web", ".web", "we b", "web/x", &"a".repeat(64), "wéb"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users() {
        assert_eq!(
            parse_user("101:101"),
            Ok(User::Id {
                uid: 101,
                gid: Some(101)
            })
        );
        assert_eq!(parse_user("0"), Ok(User::Id { uid: 0, gid: None }));
        assert_eq!(parse_user("nginx"), Ok(User::Name("nginx".into())));
        assert_eq!(parse_user("www-data"), Ok(User::Name("www-data".into())));
        for bad in ["", "1:x", "1x", "Root", "a b", "99999999999"] {
            assert!(parse_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn misc_names() {
        assert!(validate_env_name("TZ").is_ok());
        assert!(validate_env_name("_A1").is_ok());
        assert!(validate_env_name("1A").is_err());
        assert!(validate_env_name("A-B").is_err());
        assert!(validate_credential("db-password").is_ok());
        assert!(validate_credential("a/b").is_err());
        assert!(validate_credential("..").is_err());
        assert!(validate_credential("x:y").is_err());
        assert!(validate_unit_name("multi-user.target").is_ok());
        assert!(validate_unit_name("berth@db.service").is_ok());
        assert!(validate_unit_name("multi-user").is_err());
        assert!(validate_unit_name("a b.service").is_err());
        assert!(validate_hostname("web").is_ok());
        assert!(validate_hostname("web.example").is_ok());
        assert!(validate_hostname("-web").is_err());
        assert!(validate_hostname("we_b").is_err());
    }

    #[test]
    fn subnets() {
        let s = parse_subnet("10.89.1.0/24").unwrap();
        assert!(s.contains("10.89.1.7".parse().unwrap()));
        assert!(!s.contains("10.89.2.7".parse().unwrap()));
        assert!(parse_subnet("fd00::/64")
            .unwrap()
            .contains("fd00::1".parse().unwrap()));
        assert!(parse_subnet("10.0.0.0/33").is_err());
        assert!(parse_subnet("10.0.0.0").is_err());
        assert!(parse_subnet("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
    }
    #[test]
    fn modes_are_octal_strings() {
        assert_eq!(parse_mode("1777"), Ok(0o1777));
        assert_eq!(parse_mode("0750"), Ok(0o750));
        assert_eq!(parse_mode("750"), Ok(0o750));
        assert_eq!(parse_mode("0o700"), Ok(0o700));
        for bad in ["", "8", "17777", "rwx", "-1", "0x1ff"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_lists_are_normalised_and_bad_ones_say_the_form() {
        assert_eq!(parse_cpu_list("0-3, 6").unwrap(), "0-3,6");
        assert_eq!(parse_cpu_list("2-2").unwrap(), "2");
        assert!(parse_cpu_list("3-1").unwrap_err().contains("backwards"));
        assert!(parse_cpu_list("a").unwrap_err().contains("0-3,6"));
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("1,,2").is_err());
        assert!(parse_cpu_list("9000").is_err());
    }

    #[test]
    fn io_max_values() {
        assert_eq!(
            parse_io_max("rbps=10M wiops=100").unwrap(),
            [Some(10 << 20), None, None, Some(100)]
        );
        assert!(parse_io_max("").is_err());
        assert!(parse_io_max("rbps=10M rbps=1M")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_io_max("xbps=1")
            .unwrap_err()
            .contains("unknown limit"));
        assert!(parse_io_max("riops=lots").is_err());
        assert!(parse_io_max("wbps=0").is_err());
        assert!(parse_io_max("rbps").is_err());
    }
}
