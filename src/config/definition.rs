//! The validated definition the rest of berth consumes: every key of DESIGN.md §1
//! with its default filled in and its value parsed into a typed form (bytes,
//! `Duration`, port structs, enums).
//!
//! Pure data: no parsing here (that is `raw.rs` + `validate.rs`), no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::distribution::Reference;

pub use super::container_keys::{DeviceRequest, GroupRef, Ulimit, Unmask};
pub use super::values::{
    NetworkMode, Notify, OnFailure, PortMapping, Propagation, Protocol, Pull, Restart, Seccomp,
    Subnet, User, Userns,
};

/// One container definition, merged from `NAME.toml` and its drop-ins and
/// validated. Field names follow the TOML keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The container's name (the file stem, `web` for `web.toml`).
    pub name: String,
    /// The main file, root prefix included (`/etc/berth/containers/web.toml`).
    pub source_path: PathBuf,
    /// Drop-ins merged over it, in the order they were applied.
    pub dropins: Vec<PathBuf>,
    /// Lowercase hex sha256 over the bytes of `source_path` then each drop-in, in
    /// order: a unit generated from other bytes is stale.
    pub hash: String,
    /// `image`, `rootfs` or `[build]` (exactly one is set in a valid file).
    pub image: ImageSource,
    /// `command`: replaces the image's Cmd (never empty when set).
    pub command: Option<Vec<String>>,
    /// `entrypoint`: replaces the image's Entrypoint (`[]` clears it).
    pub entrypoint: Option<Vec<String>>,
    /// `workdir`: absolute path inside the container.
    pub workdir: Option<PathBuf>,
    /// `user`
    pub user: Option<User>,
    /// `hostname`; the runtime defaults it to the container name.
    pub hostname: Option<String>,
    /// `environment`
    pub environment: BTreeMap<String, String>,
    /// `environment_files`: absolute host paths, read at start.
    pub environment_files: Vec<PathBuf>,
    /// `read_only` (default false): mount the root filesystem read-only.
    pub read_only: bool,
    /// `init` (default false): a minimal init as PID 1.
    pub init: bool,
    /// `[network]`
    pub network: Network,
    /// `[[volume]]`
    pub volumes: Vec<Volume>,
    /// `[[tmpfs]]`
    pub tmpfs: Vec<Tmpfs>,
    /// `[resources]`
    pub resources: Resources,
    /// `[security]`
    pub security: Security,
    /// `[health]`; `None` when the table is absent.
    pub health: Option<Health>,
    /// `[service]`
    pub service: Service,
    /// `[[secret]]`
    pub secrets: Vec<Secret>,
    /// `labels`: shown by `berth inspect`, matched by `berth ps --filter label=`.
    pub labels: BTreeMap<String, String>,
    /// `annotations`: written into the OCI spec's `annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `timezone`: the container's /etc/localtime; `None` keeps the image's.
    pub timezone: Option<Timezone>,
}

/// `timezone`: which host zoneinfo file the container's /etc/localtime is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timezone {
    /// `"local"`: the host's own /etc/localtime.
    Local,
    /// A zone name, a file under /usr/share/zoneinfo (`Europe/Berlin`).
    Zone(String),
}

/// Where the host keeps its zone files (tzdata).
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

impl Timezone {
    /// The host file bound read-only over the container's /etc/localtime
    /// (Podman's `--tz` does the same with a copy; a bind keeps a host's
    /// tzdata update visible at the next start without berth copying).
    pub fn host_file(&self) -> PathBuf {
        match self {
            Timezone::Local => PathBuf::from("/etc/localtime"),
            Timezone::Zone(z) => std::path::Path::new(ZONEINFO).join(z),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Timezone::Local => "local",
            Timezone::Zone(z) => z,
        }
    }
}

/// Where the root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// `image = "..."`, parsed with the one reference grammar the store and
    /// the pull use.
    Image(Reference),
    /// `rootfs = "/abs/dir"`: a plain directory, never pulled.
    Rootfs(PathBuf),
    /// `[build]`: an image berth builds from a Containerfile at each start
    /// (the build cache makes an unchanged context all hits), stored as
    /// [`Build::image`].
    Build(Box<Build>),
}

impl ImageSource {
    /// The image reference the container runs: `image`, or the name a
    /// `[build]` stores its result under; `None` for a `rootfs`.
    pub fn reference(&self) -> Option<&Reference> {
        match self {
            ImageSource::Image(r) => Some(r),
            ImageSource::Build(b) => Some(&b.image),
            ImageSource::Rootfs(_) => None,
        }
    }
}

/// The prefix of a declared build's image name: the container's name is
/// its tag (`localhost/berth-build:web`). A container name is always a
/// valid tag (both are `[A-Za-z0-9][A-Za-z0-9_.-]*`), while a repository
/// path may hold neither capitals nor `..`, so this maps every name, one
/// to one, to a name no registry answers for (`localhost`).
pub const BUILD_REPOSITORY: &str = "localhost/berth-build";

/// `[build]`: what `berth build` is given, from the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// `context`: the directory COPY and ADD read from (absolute).
    pub context: PathBuf,
    /// `file`: the Containerfile, absolute or relative to the context;
    /// `None`: `Containerfile`, else `Dockerfile`, in the context.
    pub file: Option<PathBuf>,
    /// `args`: `--build-arg NAME=VALUE` each.
    pub args: BTreeMap<String, String>,
    /// `target`: the stage to build (default the last).
    pub target: Option<String>,
    /// `BUILD_REPOSITORY:NAME`, where the result is stored.
    pub image: Reference,
    /// Where `context` was set, for the checks that need the host (`berth check`).
    pub context_at: KeyAt,
    /// Where `file` was set.
    pub file_at: Option<KeyAt>,
    /// Where `target` was set.
    pub target_at: Option<KeyAt>,
}

impl Build {
    /// The Containerfile `berth build` reads: `file` (relative to the
    /// context), else `Containerfile`, else `Dockerfile`, as `berth build`
    /// and Podman choose; `exists` answers for a path.
    pub fn containerfile(&self, exists: impl Fn(&std::path::Path) -> bool) -> PathBuf {
        match &self.file {
            Some(f) => self.context.join(f),
            None => {
                let c = self.context.join("Containerfile");
                if exists(&c) {
                    c
                } else {
                    self.context.join("Dockerfile")
                }
            }
        }
    }
}

/// A key's place in a definition file, kept for checks made later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAt {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

/// `[network]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Default `bridge`.
    pub mode: NetworkMode,
    /// Bridge networks to join; `["default"]` when unset in bridge mode, empty
    /// in the other modes.
    pub networks: Vec<String>,
    /// Published ports (bridge mode only).
    pub publish: Vec<PortMapping>,
    /// `mode = "container:NAME"`: the berth container whose network
    /// namespace this one joins (a sidecar); `None` in the other modes.
    pub container: Option<String>,
    /// `ip`: a fixed address per network, for networks in `networks` only
    /// (bridge mode only). Whether it lies in that network's subnet is
    /// checked where networks are resolved (`network::config::check_fixed_ips`).
    pub ip: BTreeMap<String, IpAddr>,
    /// Where each `ip` value was written: (file, line, column).
    pub ip_at: BTreeMap<String, (PathBuf, usize, usize)>,
    /// `aliases`: more names peers on its networks resolve (bridge mode only).
    pub aliases: Vec<String>,
    /// `dns`: the container's resolvers instead of the host's (in bridge
    /// mode, the upstreams berth's name server forwards to).
    pub dns: Vec<IpAddr>,
    /// `dns_search`: search domains of its resolv.conf.
    pub dns_search: Vec<String>,
    /// `extra_hosts`: (name, address) lines added to its /etc/hosts.
    pub extra_hosts: Vec<(String, IpAddr)>,
}

impl Default for Network {
    /// What a definition without `[network]` gets: bridge mode on `default`.
    fn default() -> Network {
        Network {
            mode: NetworkMode::Bridge,
            networks: vec![defaults::NETWORK.to_string()],
            publish: Vec::new(),
            container: None,
            ip: BTreeMap::new(),
            ip_at: BTreeMap::new(),
            aliases: Vec::new(),
            dns: Vec::new(),
            dns_search: Vec::new(),
            extra_hosts: Vec::new(),
        }
    }
}

/// One `[[volume]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub source: VolumeSource,
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// Default false.
    pub read_only: bool,
    /// `propagation`; `None` is `rprivate`.
    pub propagation: Option<Propagation>,
    /// `chown = true` (Podman's `:U`): the source is chowned, recursively,
    /// to the container's user at each start.
    pub chown: bool,
}

/// What a volume mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A named volume, created (and seeded from the image) on first use.
    Named(String),
    /// No `source`: a fresh named volume of this container's, with a random
    /// hex name (Podman's anonymous volume), chosen by the supervisor at the
    /// first start and found again at the next.
    Anonymous,
    /// A bind mount of this absolute host path.
    Bind(PathBuf),
}

/// One `[[tmpfs]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// Size limit in bytes; `None` is the kernel's default (half of RAM).
    pub size: Option<u64>,
    /// Permission bits of its root; `None` is 1777, as /tmp's.
    pub mode: Option<u32>,
    /// `options`: mount flags (noexec, nosuid, nodev, ro…), over berth's
    /// nosuid and nodev.
    pub options: Vec<String>,
    /// Owner of its root; `None` is root.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// `[resources]`; `None` means no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// Bytes (`MemoryMax=`).
    pub memory: Option<u64>,
    /// CPUs, > 0 (`CPUQuota=` = cpus × 100%).
    pub cpus: Option<f64>,
    /// > 0 (`TasksMax=`).
    pub pids: Option<u64>,
    /// 1..=10000 (`IOWeight=`).
    pub io_weight: Option<u16>,
    /// Bytes of swap beyond `memory` (`MemorySwapMax=`; 0: no swap).
    pub memory_swap: Option<u64>,
    /// Bytes the kernel keeps for the container under memory pressure
    /// (`MemoryLow=`: Docker's `--memory-reservation`, a soft limit).
    pub memory_reservation: Option<u64>,
    /// CPUs it may run on, as cpuset.cpus writes them (`AllowedCPUs=`):
    /// normalised, e.g. `0-3,6`.
    pub cpuset: Option<String>,
    /// 1..=10000 (`CPUWeight=`).
    pub cpu_weight: Option<u16>,
    /// Per block device, in the definition's order of devices (sorted).
    pub io_max: Vec<IoMax>,
    /// `ulimits`: Docker's name (`nofile`) → soft and hard; the container's
    /// rlimits (berth's nofile default is replaced when set).
    pub ulimits: BTreeMap<String, Ulimit>,
    /// `shm_size`: bytes of /dev/shm; `None` is 64M, as Docker's.
    pub shm_size: Option<u64>,
}

/// One `io_max` entry: a device's bandwidth (bytes/s) and IOPS limits
/// (`IOReadBandwidthMax=` … `IOWriteIOPSMax=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoMax {
    /// An absolute path: a block device node or a file on the file system
    /// whose backing device is meant (systemd resolves it).
    pub device: PathBuf,
    pub rbps: Option<u64>,
    pub wbps: Option<u64>,
    pub riops: Option<u64>,
    pub wiops: Option<u64>,
}

/// `[security]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// Normalised `CAP_X` names, or `ALL`.
    pub cap_add: Vec<String>,
    /// Normalised `CAP_X` names, or `ALL`.
    pub cap_drop: Vec<String>,
    /// Default true: setuid binaries in the image cannot gain privileges
    /// unless a definition opts out (issue 7; Podman and Docker default off,
    /// berth is stricter).
    pub no_new_privileges: bool,
    /// Default `Seccomp::Default`.
    pub seccomp: Seccomp,
    /// Default `Userns::Host`.
    pub userns: Userns,
    /// `devices`: host device nodes (or directories of them) created in the
    /// container's /dev and opened in its device filter.
    pub devices: Vec<DeviceRequest>,
    /// `sysctls`: namespaced ones only, checked.
    pub sysctls: BTreeMap<String, String>,
    /// `mask`: paths hidden beside the default masked paths.
    pub mask: Vec<PathBuf>,
    /// `unmask`: default masked or read-only paths left as they are.
    pub unmask: Unmask,
    /// `group_add`: supplementary groups of the container's process.
    pub group_add: Vec<GroupRef>,
    /// `uid_map`/`gid_map`: explicit ID maps of a private user namespace
    /// (with `userns` unset); `gid_map` defaults to `uid_map`. Empty: none.
    pub uid_map: Vec<IdMapping>,
    pub gid_map: Vec<IdMapping>,
}

/// One `"CONTAINER:HOST:SIZE"` extent of `uid_map`/`gid_map`
/// (user_namespaces(7)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// `[health]`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Health {
    /// Run inside the container; exit 0 means healthy. Never empty.
    pub command: Vec<String>,
    /// Default 30s.
    pub interval: Duration,
    /// Default 30s.
    pub timeout: Duration,
    /// Consecutive failures before unhealthy; default 3, at least 1.
    pub retries: u32,
    /// Failures during this time after start do not count; default 0.
    pub start_period: Duration,
    /// Default `none`.
    pub on_failure: OnFailure,
    /// During `start_period`, checks run this often (Docker's
    /// `--health-start-interval`); default 5s, as Docker's.
    pub start_interval: Duration,
}

/// `[service]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Default `no` (systemd's own default).
    pub restart: Restart,
    /// Other containers (names), each an existing definition.
    pub requires: Vec<String>,
    /// Extra systemd units (full unit names).
    pub after: Vec<String>,
    /// Targets that pull the container in at boot (full unit names).
    pub wanted_by: Vec<String>,
    /// Default 10s: SIGTERM, then SIGKILL after this long.
    pub stop_timeout: Duration,
    /// Default `started`.
    pub notify: Notify,
    /// Default `missing`.
    pub pull: Pull,
    /// Default false.
    pub auto_update: bool,
    /// `group`: member of `berth-GROUP.target` (started and stopped as one).
    pub group: Option<String>,
    /// `wants`, `binds_to`, `part_of`, `before`: unit names (a container's
    /// name is resolved to `berth@NAME.service`).
    pub wants: Vec<String>,
    pub binds_to: Vec<String>,
    pub part_of: Vec<String>,
    pub before: Vec<String>,
    /// `stop_signal`, normalised (`SIGTERM`, `SIGRTMIN+3`, or a number);
    /// `None`: the image's STOPSIGNAL, else SIGTERM.
    pub stop_signal: Option<String>,
    /// `reload_signal` or `reload_command`: what `systemctl reload` does.
    pub reload: Option<Reload>,
    /// `restart_sec` (`RestartSec=`); `None`: systemd's default (100ms).
    pub restart_sec: Option<Duration>,
    /// `start_limit_burst` (`StartLimitBurst=`); `None`: systemd's default.
    pub start_limit_burst: Option<u32>,
}

/// What `systemctl reload berth@NAME` does (`ExecReload=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// `reload_signal`, normalised as `stop_signal`: sent to the container's
    /// main process.
    Signal(String),
    /// `reload_command`: run inside the container as `berth exec` runs it.
    Command(Vec<String>),
}

/// One `[[secret]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// systemd credential name (`LoadCredential=`).
    pub credential: String,
    /// Absolute path inside the container; default `/run/secrets/CREDENTIAL`.
    /// Not mounted when `env` is set.
    pub target: PathBuf,
    /// `type = "env"`: the environment variable that gets the credential's
    /// content instead of a file.
    pub env: Option<String>,
    /// `encrypted = true` (`LoadCredentialEncrypted=`); the generator also
    /// uses it for a credential found in a `credstore.encrypted` directory.
    pub encrypted: bool,
}

/// A network definition: `networks/NAME.toml`. The `default` network always
/// exists, with no file and every field `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDefinition {
    pub name: String,
    /// `None` for the built-in `default` network without a file.
    pub source_path: Option<PathBuf>,
    /// `subnet`: the range addresses are leased from; `None` lets the network
    /// module carve one from the global `default_subnet`.
    pub subnet: Option<Subnet>,
    /// `gateway`: the bridge's address; `None` is the first host of the subnet.
    pub gateway: Option<std::net::IpAddr>,
    /// `subnet6`: an IPv6 range beside `subnet` (dual stack); `None`: IPv4 only.
    pub subnet6: Option<Subnet>,
    /// `internal = true`: no way out (no masquerade, nothing forwarded off
    /// the bridge but to its members). Default false.
    pub internal: bool,
    /// `mtu`: of the bridge and every veth on it; `None` leaves the kernel's.
    pub mtu: Option<u32>,
    /// `dns = false`: members' names are not served to each other. Default true.
    pub dns: bool,
    /// (line, column) of the `subnet` and `subnet6` values in `source_path`,
    /// so that a clash found across files (overlapping subnets) points there.
    pub subnet_at: Option<(usize, usize)>,
    pub subnet6_at: Option<(usize, usize)>,
}

/// Defaults of optional keys, in one place (and in the docs above).
pub mod defaults {
    use std::time::Duration;
    pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
    pub const HEALTH_RETRIES: u32 = 3;
    pub const HEALTH_START_INTERVAL: Duration = Duration::from_secs(5);
    pub const NETWORK: &str = "default";
}
