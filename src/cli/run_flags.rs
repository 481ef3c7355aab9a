//! The Docker-style options of `berth run` (`-e`, `-v`, `--tmpfs`, `-u`,
//! `--memory`, `--cap-add`, `--security-opt`, …) turned into the keys of a
//! definition. Pure: a flag only writes a TOML key; the definition it builds
//! is validated like any file in /etc, so a flag and a key never disagree on
//! what a value means.

use toml::{Table, Value};

/// What a definition file could say, as `docker run` spells it.
#[derive(Debug, Default, Clone, PartialEq, clap::Args)]
pub struct DefinitionFlags {
    /// Set an environment variable (KEY=VALUE; a bare KEY passes this
    /// shell's value on)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Mount a volume: /host/path:/target (bind), NAME:/target (named
    /// volume, seeded from the image on first use) or /target (anonymous);
    /// options after a third colon: ro, U (chown to the container's user),
    /// rshared/rslave/… (propagation), e.g. /srv/x:/x:ro,U
    #[arg(short = 'v', long = "volume", value_name = "[SOURCE:]TARGET[:OPTIONS]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs: /target, with options size=64M, mode=1777, uid=N,
    /// gid=N and mount flags (noexec, nosuid, nodev, ro…), as
    /// /tmp:noexec,nosuid,size=100m
    #[arg(long, value_name = "TARGET[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Run as this user: uid[:gid] or a name from the image's /etc/passwd
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Host name inside the container
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Replace the image's entrypoint ("" clears it)
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,
    /// Mount the root filesystem read-only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Run berth's minimal init as PID 1 (reaps zombies, forwards signals)
    #[arg(long)]
    pub init: bool,
    /// Network: host (share the host's network), none (loopback only),
    /// bridge (the `default` network), or the NAME of a bridge network
    /// (repeatable: join several; the first gets the default route)
    #[arg(long, value_name = "MODE|NAME")]
    pub network: Vec<String>,
    /// Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], ranges
    /// as 8000-8010:80-90 (repeatable; bridge mode)
    #[arg(short = 'p', long, value_name = "PORT")]
    pub publish: Vec<String>,
    /// A fixed address on the (first) network instead of a leased one
    #[arg(long, value_name = "ADDRESS")]
    pub ip: Option<String>,
    /// Another name peers on its networks resolve it by (repeatable)
    #[arg(long = "network-alias", value_name = "NAME")]
    pub network_alias: Vec<String>,
    /// A resolver instead of the host's (repeatable)
    #[arg(long, value_name = "ADDRESS")]
    pub dns: Vec<String>,
    /// A search domain for its resolv.conf (repeatable)
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// A line for its /etc/hosts: NAME:ADDRESS (or NAME=ADDRESS) (repeatable)
    #[arg(long = "add-host", value_name = "NAME:ADDRESS")]
    pub add_host: Vec<String>,
    /// Memory limit, e.g. 256M
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU limit in CPUs, e.g. 0.5
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Limit on the number of tasks (processes and threads)
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<i64>,
    /// Memory plus swap, as docker counts it (e.g. 512M with -m 256M: 256M
    /// of swap; -1: unlimited swap); needs --memory
    #[arg(long = "memory-swap", value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory kept for the container under pressure (a soft limit, below
    /// --memory; systemd's MemoryLow=)
    #[arg(long = "memory-reservation", value_name = "SIZE")]
    pub memory_reservation: Option<String>,
    /// CPUs it may run on, e.g. 0-3,6
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Relative CPU weight in cgroup v1 shares (2..262144, 1024 the
    /// default), converted to cpu_weight as Podman's runtime does
    #[arg(short = 'c', long = "cpu-shares", value_name = "N")]
    pub cpu_shares: Option<u64>,
    /// Read rate from a device: DEVICE:RATE, e.g. /dev/sda:10mb (repeatable)
    #[arg(long = "device-read-bps", value_name = "DEVICE:RATE")]
    pub device_read_bps: Vec<String>,
    /// Write rate to a device: DEVICE:RATE (repeatable)
    #[arg(long = "device-write-bps", value_name = "DEVICE:RATE")]
    pub device_write_bps: Vec<String>,
    /// Read operations per second from a device: DEVICE:N (repeatable)
    #[arg(long = "device-read-iops", value_name = "DEVICE:N")]
    pub device_read_iops: Vec<String>,
    /// Write operations per second to a device: DEVICE:N (repeatable)
    #[arg(long = "device-write-iops", value_name = "DEVICE:N")]
    pub device_write_iops: Vec<String>,
    /// Add a capability (e.g. NET_ADMIN, or ALL)
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (e.g. CHOWN, or ALL)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// seccomp=default|unconfined|/path/profile.json,
    /// no-new-privileges[=true|false], mask=/path[:/path…] or
    /// unmask=ALL|/path[:/path…]
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Give the container a host device: HOST[:CONTAINER][:rwm] (a
    /// directory gives every device under it; repeatable)
    #[arg(long, value_name = "DEVICE")]
    pub device: Vec<String>,
    /// Set a namespaced sysctl: NAME=VALUE (repeatable)
    #[arg(long, value_name = "NAME=VALUE")]
    pub sysctl: Vec<String>,
    /// Set a ulimit: NAME=SOFT[:HARD], e.g. nofile=65536:65536 (repeatable)
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm, e.g. 256M
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// An additional group: a gid or a name from the image's /etc/group
    /// (repeatable)
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// User namespace: host, auto (a private 65536-id range) or keep-id
    /// (auto, with the numeric --user keeping its host ID)
    #[arg(long, value_name = "MODE")]
    pub userns: Option<String>,
    /// When to pull the image: missing, always, never, or newer (when the
    /// registry's digest for the tag differs from the stored one)
    #[arg(long, value_name = "WHEN")]
    pub pull: Option<String>,
    /// With -d: restart policy, no, on-failure[:MAX_RETRIES], always or
    /// unless-stopped (systemd's Restart=; MAX_RETRIES caps the restarts
    /// with StartLimitBurst=)
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Seconds between the stop signal and SIGKILL
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Set a label (KEY=VALUE, or a bare KEY for an empty value), shown by
    /// `berth inspect` and matched by `berth ps --filter label=…`
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Set an annotation of the OCI spec (KEY=VALUE)
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,
    /// Time zone: local (the host's) or a name such as Europe/Berlin
    #[arg(long = "tz", value_name = "ZONE")]
    pub tz: Option<String>,
    /// Signal that stops the container (default: the image's STOPSIGNAL,
    /// else SIGTERM)
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Health check command, run with /bin/sh -c inside the container
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between health checks (e.g. 30s)
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Longest a health check may run
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive failures that make the container unhealthy
    #[arg(long = "health-retries", value_name = "N")]
    pub health_retries: Option<i64>,
    /// Time after start during which failures do not count
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Time between health checks during the start period
    #[arg(long = "health-start-interval", value_name = "DURATION")]
    pub health_start_interval: Option<String>,
    /// A uid map extent of a private user namespace (repeatable), as
    /// Podman's --uidmap
    #[arg(long = "uidmap", value_name = "CONTAINER:HOST:SIZE")]
    pub uidmap: Vec<String>,
    /// A gid map extent (repeatable; default: the uid map)
    #[arg(long = "gidmap", value_name = "CONTAINER:HOST:SIZE")]
    pub gidmap: Vec<String>,
}

/// Why a flag cannot become a key (the definition's own validation covers
/// the values; this covers the flags' syntax).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{flag} {value:?}: {reason}")]
pub struct FlagError {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

fn bad(flag: &'static str, value: &str, reason: &str) -> FlagError {
    FlagError {
        flag,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// `table[section][key] = value`, creating the section.
fn set_in(table: &mut Table, section: &str, key: &str, value: Value) {
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| Value::Table(Table::new()));
    if let Value::Table(t) = entry {
        t.insert(key.to_string(), value);
    }
}

fn push_array(table: &mut Table, key: &str, item: Table) {
    let entry = table
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(a) = entry {
        a.push(Value::Table(item));
    }
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::from).collect())
}

impl DefinitionFlags {
    /// No flag was given.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Write every flag given into `table`. `env` looks up the value of a
    /// bare `-e KEY`.
    pub fn apply(
        &self,
        table: &mut Table,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), FlagError> {
        self.apply_environment(table, env);
        for v in &self.volume {
            push_array(table, "volume", volume(v)?);
        }
        for t in &self.tmpfs {
            push_array(table, "tmpfs", tmpfs(t)?);
        }
        self.apply_process(table);
        self.apply_network(table)?;
        self.apply_resources(table)?;
        self.apply_security(table)?;
        self.apply_container_keys(table)?;
        self.apply_service(table)?;
        self.apply_health(table);
        self.apply_identity(table)?;
        Ok(())
    }

    /// `--label`, `--annotation`, `--tz`: top-level tables, as Docker splits them
    /// (at the first `=`; a bare KEY is an empty value).
    fn apply_identity(&self, table: &mut Table) -> Result<(), FlagError> {
        for (flag, key, list) in [
            ("--label", "labels", &self.label),
            ("--annotation", "annotations", &self.annotation),
        ] {
            if list.is_empty() {
                continue;
            }
            let mut t = Table::new();
            for kv in list {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                if k.is_empty() {
                    return Err(bad(flag, kv, "expected KEY=VALUE"));
                }
                t.insert(k.to_string(), v.into());
            }
            table.insert(key.into(), Value::Table(t));
        }
        if let Some(tz) = &self.tz {
            table.insert("timezone".into(), tz.as_str().into());
        }
        if !self.uidmap.is_empty() {
            set_in(table, "security", "uid_map", strings(&self.uidmap));
        }
        if !self.gidmap.is_empty() {
            set_in(table, "security", "gid_map", strings(&self.gidmap));
        }
        Ok(())
    }

    /// `--health-*`: `[health]`, its command as Docker runs `--health-cmd`
    /// (`CMD-SHELL`).
    fn apply_health(&self, table: &mut Table) {
        if let Some(c) = &self.health_cmd {
            let argv = ["/bin/sh".to_string(), "-c".to_string(), c.clone()];
            set_in(table, "health", "command", strings(&argv));
        }
        for (key, v) in [
            ("interval", &self.health_interval),
            ("timeout", &self.health_timeout),
            ("start_period", &self.health_start_period),
            ("start_interval", &self.health_start_interval),
        ] {
            if let Some(v) = v {
                set_in(table, "health", key, v.as_str().into());
            }
        }
        if let Some(r) = self.health_retries {
            set_in(table, "health", "retries", r.into());
        }
    }

    /// `-e`, `--env-file`.
    fn apply_environment(&self, table: &mut Table, env: &dyn Fn(&str) -> Option<String>) {
        let mut environment = Table::new();
        for e in &self.env {
            match e.split_once('=') {
                Some((k, v)) => {
                    environment.insert(k.to_string(), v.into());
                }
                // Docker's rule: a bare KEY passes the caller's value, and
                // nothing when the caller has none.
                None => {
                    if let Some(v) = env(e) {
                        environment.insert(e.clone(), v.into());
                    }
                }
            }
        }
        if !environment.is_empty() {
            table.insert("environment".into(), Value::Table(environment));
        }
        if !self.env_file.is_empty() {
            let files: Vec<String> = self.env_file.iter().map(|f| absolute(f)).collect();
            table.insert("environment_files".into(), strings(&files));
        }
    }

    /// `--user`, `--workdir`, `--hostname`, `--entrypoint`, `--read-only`, `--init`.
    fn apply_process(&self, table: &mut Table) {
        for (key, value) in [
            ("user", &self.user),
            ("workdir", &self.workdir),
            ("hostname", &self.hostname),
        ] {
            if let Some(v) = value {
                table.insert(key.into(), v.as_str().into());
            }
        }
        if let Some(e) = &self.entrypoint {
            let list: Vec<String> = if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            };
            table.insert("entrypoint".into(), strings(&list));
        }
        if self.read_only {
            table.insert("read_only".into(), true.into());
        }
        if self.init {
            table.insert("init".into(), true.into());
        }
    }

    /// `--network`, `-p`, `--ip`, `--network-alias`, `--dns`,
    /// `--dns-search`, `--add-host`: the `[network]` keys, as Docker maps
    /// them (a `--network` that is no mode names a bridge network).
    fn apply_network(&self, table: &mut Table) -> Result<(), FlagError> {
        let (modes, names): (Vec<&String>, Vec<&String>) = self
            .network
            .iter()
            .partition(|n| matches!(n.as_str(), "host" | "none" | "bridge") || n.contains(':'));
        match (modes.as_slice(), names.is_empty()) {
            ([], _) => {}
            ([m], true) => set_in(table, "network", "mode", m.as_str().into()),
            ([m, ..], _) => {
                return Err(bad(
                    "--network",
                    m,
                    "a mode (host, none, bridge) cannot be combined with another --network",
                ))
            }
        }
        if !names.is_empty() {
            let names: Vec<String> = names.into_iter().cloned().collect();
            set_in(table, "network", "networks", strings(&names));
        }
        if let Some(ip) = &self.ip {
            // Docker's --ip is for the network --network names; berth's
            // key is per network, so it goes to the first one.
            let net = self
                .network
                .iter()
                .find(|n| !modes.contains(n))
                .map_or(crate::config::defaults::NETWORK, |n| n.as_str());
            let mut t = Table::new();
            t.insert(net.to_string(), ip.as_str().into());
            set_in(table, "network", "ip", Value::Table(t));
        }
        let hosts: Vec<String> = self
            .add_host
            .iter()
            .map(|h| match h.split_once('=') {
                // Docker 25 also reads NAME=ADDRESS, which keeps an IPv6
                // address readable; the key's grammar is NAME:ADDRESS.
                Some((name, addr)) if !name.contains(':') => format!("{name}:{addr}"),
                _ => h.clone(),
            })
            .collect();
        for (key, list) in [
            ("publish", &self.publish),
            ("aliases", &self.network_alias),
            ("dns", &self.dns),
            ("dns_search", &self.dns_search),
            ("extra_hosts", &hosts),
        ] {
            if !list.is_empty() {
                set_in(table, "network", key, strings(list));
            }
        }
        Ok(())
    }

    /// `--memory`, `--cpus`, `--pids-limit`, `--memory-swap`,
    /// `--memory-reservation`, `--cpuset-cpus`, `--cpu-shares`,
    /// `--device-{read,write}-{bps,iops}`.
    fn apply_resources(&self, table: &mut Table) -> Result<(), FlagError> {
        if let Some(m) = &self.memory {
            set_in(table, "resources", "memory", m.as_str().into());
        }
        if let Some(c) = self.cpus {
            set_in(table, "resources", "cpus", c.into());
        }
        if let Some(p) = self.pids_limit {
            set_in(table, "resources", "pids", p.into());
        }
        if let Some(s) = &self.shm_size {
            set_in(table, "resources", "shm_size", s.as_str().into());
        }
        if let Some(swap) = self.swap_beyond_memory()? {
            set_in(table, "resources", "memory_swap", swap.into());
        }
        if let Some(r) = &self.memory_reservation {
            set_in(table, "resources", "memory_reservation", r.as_str().into());
        }
        if let Some(c) = &self.cpuset_cpus {
            set_in(table, "resources", "cpuset", c.as_str().into());
        }
        if let Some(shares) = self.cpu_shares.filter(|s| *s > 0) {
            // Podman hands --cpu-shares to its runtime, and crun (as runc)
            // converts it for cgroup v2 with 1 + ((shares - 2) * 9999) /
            // 262142: `cgroup::shares_to_weight`.
            let w = crate::cgroup::plan::shares_to_weight(shares);
            set_in(table, "resources", "cpu_weight", (w as i64).into());
        }
        let io = self.io_max()?;
        if !io.is_empty() {
            set_in(table, "resources", "io_max", Value::Table(io));
        }
        Ok(())
    }

    /// `--memory-swap` counts memory and swap together, as docker does;
    /// `memory_swap` is the swap alone (MemorySwapMax=). -1 is unlimited
    /// swap: no key. Docker's own rules: it needs --memory, and may not be
    /// below it.
    fn swap_beyond_memory(&self) -> Result<Option<i64>, FlagError> {
        let Some(total) = &self.memory_swap else {
            return Ok(None);
        };
        if total == "-1" {
            return Ok(None);
        }
        let flag = "--memory-swap";
        let size = |s: &str| crate::config::parse_size(s).map_err(|e| bad(flag, total, &e));
        let Some(memory) = &self.memory else {
            return Err(bad(
                flag,
                total,
                "needs --memory: it counts memory and swap together (-1: unlimited swap)",
            ));
        };
        let (total_b, memory_b) = (size(total)?, size(memory)?);
        if total_b < memory_b {
            return Err(bad(
                flag,
                total,
                "must be at least --memory: it counts memory and swap together",
            ));
        }
        i64::try_from(total_b - memory_b)
            .map(Some)
            .map_err(|_| bad(flag, total, "is too large"))
    }

    /// `--device-read-bps /dev/sda:10mb` and friends as `io_max`: one entry
    /// per device, "rbps=… wbps=… riops=… wiops=…".
    fn io_max(&self) -> Result<Table, FlagError> {
        let mut per_device: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (flag, key, items) in [
            ("--device-read-bps", "rbps", &self.device_read_bps),
            ("--device-write-bps", "wbps", &self.device_write_bps),
            ("--device-read-iops", "riops", &self.device_read_iops),
            ("--device-write-iops", "wiops", &self.device_write_iops),
        ] {
            for item in items {
                let Some((dev, rate)) = item
                    .rsplit_once(':')
                    .filter(|(d, r)| !d.is_empty() && !r.is_empty())
                else {
                    return Err(bad(flag, item, "expected DEVICE:RATE, e.g. /dev/sda:10mb"));
                };
                per_device
                    .entry(dev.to_string())
                    .or_default()
                    .push(format!("{key}={rate}"));
            }
        }
        Ok(per_device
            .into_iter()
            .map(|(d, words)| (d, Value::from(words.join(" "))))
            .collect())
    }

    /// `--device`, `--sysctl`, `--ulimit`, `--group-add`: issue 15's
    /// container-side keys.
    fn apply_container_keys(&self, table: &mut Table) -> Result<(), FlagError> {
        if !self.device.is_empty() {
            set_in(table, "security", "devices", strings(&self.device));
        }
        if !self.group_add.is_empty() {
            set_in(table, "security", "group_add", strings(&self.group_add));
        }
        let pairs = |flag: &'static str, list: &[String], what: &str| {
            let mut t = Table::new();
            for v in list {
                let (k, val) = v
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| bad(flag, v, what))?;
                t.insert(k.to_string(), val.into());
            }
            Ok::<Table, FlagError>(t)
        };
        if !self.sysctl.is_empty() {
            let t = pairs("--sysctl", &self.sysctl, "expected NAME=VALUE")?;
            set_in(table, "security", "sysctls", Value::Table(t));
        }
        if !self.ulimit.is_empty() {
            let t = pairs(
                "--ulimit",
                &self.ulimit,
                "expected NAME=SOFT[:HARD], such as nofile=65536:65536",
            )?;
            set_in(table, "resources", "ulimits", Value::Table(t));
        }
        Ok(())
    }

    /// `--cap-add`, `--cap-drop`, `--security-opt`, `--userns`.
    fn apply_security(&self, table: &mut Table) -> Result<(), FlagError> {
        if !self.cap_add.is_empty() {
            set_in(table, "security", "cap_add", strings(&self.cap_add));
        }
        if !self.cap_drop.is_empty() {
            set_in(table, "security", "cap_drop", strings(&self.cap_drop));
        }
        for o in &self.security_opt {
            let (k, v) = o
                .split_once(['=', ':'])
                .map_or((o.as_str(), None), |(k, v)| (k, Some(v)));
            match (k, v) {
                ("seccomp", Some(p)) => {
                    let p = if p.starts_with('/') || p == "default" || p == "unconfined" {
                        p.to_string()
                    } else {
                        absolute(p)
                    };
                    set_in(table, "security", "seccomp", p.into());
                }
                ("no-new-privileges", None) => {
                    set_in(table, "security", "no_new_privileges", true.into())
                }
                ("no-new-privileges", Some(b @ ("true" | "false"))) => {
                    set_in(table, "security", "no_new_privileges", (b == "true").into())
                }
                // Podman's `mask=/a:/b` and `unmask=ALL|/a:/b`.
                (key @ ("mask" | "unmask"), Some(paths)) if !paths.is_empty() => {
                    let list: Vec<String> = paths.split(':').map(str::to_string).collect();
                    set_in(table, "security", key, strings(&list));
                }
                _ => {
                    return Err(bad(
                        "--security-opt",
                        o,
                        "expected seccomp=default|unconfined|PROFILE.json, no-new-privileges[=true|false], mask=PATHS or unmask=ALL|PATHS",
                    ))
                }
            }
        }
        if let Some(u) = &self.userns {
            set_in(table, "security", "userns", u.as_str().into());
        }
        Ok(())
    }

    /// `--pull`, `--restart`, `--stop-timeout`, `--stop-signal`.
    fn apply_service(&self, table: &mut Table) -> Result<(), FlagError> {
        if let Some(p) = &self.pull {
            set_in(table, "service", "pull", p.as_str().into());
        }
        if let Some(r) = &self.restart {
            // Docker's `on-failure:N` restarts at most N times: N + 1
            // starts in systemd's start-limit interval. `unless-stopped`
            // is `always` under systemd, which never restarts a unit
            // someone stopped.
            let policy = match r.split_once(':') {
                Some(("on-failure", n)) => {
                    let n: i64 = n.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        bad(
                            "--restart",
                            r,
                            "expected on-failure:N with N a number of retries",
                        )
                    })?;
                    set_in(table, "service", "start_limit_burst", (n + 1).into());
                    "on-failure"
                }
                _ if r == "unless-stopped" => "always",
                _ => r.as_str(),
            };
            set_in(table, "service", "restart", policy.into());
        }
        if let Some(s) = self.stop_timeout {
            set_in(table, "service", "stop_timeout", format!("{s}s").into());
        }
        if let Some(s) = &self.stop_signal {
            set_in(table, "service", "stop_signal", s.as_str().into());
        }
        Ok(())
    }
}

/// A relative host path is relative to where `berth run` was typed, as
/// Docker reads `-v ./dir:/x` and `--env-file ./f`.
fn absolute(p: &str) -> String {
    std::path::absolute(p)
        .map(|a| a.display().to_string())
        .unwrap_or_else(|_| p.to_string())
}

/// `-v SOURCE:TARGET[:OPTIONS]`, or `-v TARGET` (an anonymous volume);
/// OPTIONS are Podman's, comma-separated: `ro`/`rw`, `U` (chown to the
/// container's user) and a propagation (`rshared`, `rslave`, …).
fn volume(v: &str) -> Result<Table, FlagError> {
    let parts: Vec<&str> = v.split(':').collect();
    if let [target] = parts.as_slice() {
        if target.is_empty() {
            return Err(bad("-v", v, "TARGET must not be empty"));
        }
        let mut t = Table::new();
        t.insert("target".into(), (*target).into());
        return Ok(t);
    }
    let (source, target, mode) =
        match parts.as_slice() {
            [s, t] => (*s, *t, None),
            [s, t, m] => (*s, *t, Some(*m)),
            _ => return Err(bad(
                "-v",
                v,
                "expected TARGET, SOURCE:TARGET or SOURCE:TARGET:OPTIONS (SOURCE a host path or a volume name)",
            )),
        };
    if source.is_empty() || target.is_empty() {
        return Err(bad("-v", v, "SOURCE and TARGET must not be empty"));
    }
    // Docker's rule: a source with a slash (or starting with ".") is a
    // host path, anything else names a volume.
    let source = if source.contains('/') || source.starts_with('.') {
        absolute(source)
    } else {
        source.to_string()
    };
    let mut t = Table::new();
    t.insert("source".into(), source.into());
    t.insert("target".into(), target.into());
    for o in mode
        .unwrap_or_default()
        .split(',')
        .filter(|o| !o.is_empty())
    {
        match o {
            "rw" => {}
            "ro" => {
                t.insert("read_only".into(), true.into());
            }
            "U" => {
                t.insert("chown".into(), true.into());
            }
            p if crate::config::Propagation::parse(p).is_some() => {
                t.insert("propagation".into(), p.into());
            }
            _ => {
                return Err(bad(
                    "-v",
                    v,
                    "options may be ro, rw, U and one of private, rprivate, shared, rshared, slave, rslave",
                ))
            }
        }
    }
    Ok(t)
}

/// `--tmpfs TARGET[:OPTIONS]`: size, mode, uid and gid become their keys,
/// the rest (noexec, nosuid…) `options`, checked like the file's.
fn tmpfs(v: &str) -> Result<Table, FlagError> {
    let (target, opts) = v.split_once(':').unwrap_or((v, ""));
    let mut t = Table::new();
    t.insert("target".into(), target.into());
    let mut flags = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some((k @ ("size" | "mode"), s)) => {
                t.insert(k.into(), s.into());
            }
            Some((k @ ("uid" | "gid"), n)) => {
                let n: i64 = n
                    .parse()
                    .map_err(|_| bad("--tmpfs", v, "uid and gid are numbers"))?;
                t.insert(k.into(), n.into());
            }
            Some(_) => return Err(bad(
                "--tmpfs",
                v,
                "options may be size=N, mode=OCTAL, uid=N, gid=N and mount flags such as noexec",
            )),
            None => flags.push(o.to_string()),
        }
    }
    if !flags.is_empty() {
        t.insert("options".into(), strings(&flags));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(f: DefinitionFlags) -> Result<String, FlagError> {
        let mut t = Table::new();
        f.apply(&mut t, &|k| (k == "HOME").then(|| "/root".to_string()))?;
        Ok(toml::to_string(&t).unwrap())
    }

    #[test]
    fn flags_become_the_keys_a_file_would_have() {
        let f = DefinitionFlags {
            env: vec!["A=1".into(), "HOME".into(), "UNSET".into(), "B=x=y".into()],
            volume: vec!["data:/data".into(), "/srv/conf:/etc/app:ro".into()],
            tmpfs: vec!["/tmp:size=8M,mode=0750".into(), "/run".into()],
            user: Some("101:101".into()),
            read_only: true,
            memory: Some("256M".into()),
            pids_limit: Some(50),
            memory_swap: Some("512M".into()),
            memory_reservation: Some("128M".into()),
            cpuset_cpus: Some("0-1".into()),
            cpu_shares: Some(1024),
            device_read_bps: vec!["/dev/sda:10mb".into()],
            device_write_iops: vec!["/dev/sda:100".into()],
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["NET_BIND_SERVICE".into()],
            security_opt: vec![
                "seccomp=unconfined".into(),
                "no-new-privileges=false".into(),
            ],
            stop_timeout: Some(3),
            entrypoint: Some(String::new()),
            ..Default::default()
        };
        let text = apply(f).unwrap();
        let v: Table = toml::from_str(&text).unwrap();
        assert_eq!(v["environment"]["A"].as_str(), Some("1"));
        assert_eq!(v["environment"]["B"].as_str(), Some("x=y"));
        assert_eq!(v["environment"]["HOME"].as_str(), Some("/root"));
        assert!(v["environment"].get("UNSET").is_none());
        assert_eq!(v["volume"][0]["source"].as_str(), Some("data"));
        assert_eq!(v["volume"][1]["source"].as_str(), Some("/srv/conf"));
        assert_eq!(v["volume"][1]["read_only"].as_bool(), Some(true));
        assert_eq!(v["tmpfs"][0]["size"].as_str(), Some("8M"));
        assert_eq!(v["tmpfs"][0]["mode"].as_str(), Some("0750"));
        assert_eq!(v["tmpfs"][1]["target"].as_str(), Some("/run"));
        assert_eq!(v["user"].as_str(), Some("101:101"));
        assert_eq!(v["read_only"].as_bool(), Some(true));
        assert_eq!(v["resources"]["memory"].as_str(), Some("256M"));
        assert_eq!(v["resources"]["pids"].as_integer(), Some(50));
        assert_eq!(v["resources"]["memory_swap"].as_integer(), Some(256 << 20));
        assert_eq!(v["resources"]["memory_reservation"].as_str(), Some("128M"));
        assert_eq!(v["resources"]["cpuset"].as_str(), Some("0-1"));
        assert_eq!(v["resources"]["cpu_weight"].as_integer(), Some(39));
        assert_eq!(
            v["resources"]["io_max"]["/dev/sda"].as_str(),
            Some("rbps=10mb wiops=100")
        );
        assert_eq!(v["security"]["seccomp"].as_str(), Some("unconfined"));
        assert_eq!(v["security"]["no_new_privileges"].as_bool(), Some(false));
        assert_eq!(v["service"]["stop_timeout"].as_str(), Some("3s"));
        assert_eq!(v["entrypoint"].as_array().map(|a| a.len()), Some(0));
    }

    #[test]
    fn identity_flags_become_identity_keys() {
        let f = DefinitionFlags {
            label: vec!["tier=web".into(), "bare".into(), "a=b=c".into()],
            annotation: vec!["org.example/x=1".into()],
            tz: Some("Europe/Berlin".into()),
            uidmap: vec!["0:100000:65536".into()],
            ..Default::default()
        };
        let v: Table = toml::from_str(&apply(f).unwrap()).unwrap();
        assert_eq!(v["labels"]["tier"].as_str(), Some("web"));
        assert_eq!(v["labels"]["bare"].as_str(), Some(""));
        assert_eq!(v["labels"]["a"].as_str(), Some("b=c"));
        assert_eq!(v["annotations"]["org.example/x"].as_str(), Some("1"));
        assert_eq!(v["timezone"].as_str(), Some("Europe/Berlin"));
        assert_eq!(v["security"]["uid_map"][0].as_str(), Some("0:100000:65536"));
        let v = volume("/srv/x:/x:ro,U,rshared").unwrap();
        assert_eq!(v["read_only"].as_bool(), Some(true));
        assert_eq!(v["chown"].as_bool(), Some(true));
        assert_eq!(v["propagation"].as_str(), Some("rshared"));
        let v = volume("/data").unwrap();
        assert!(v.get("source").is_none());
        assert_eq!(v["target"].as_str(), Some("/data"));
        assert!(volume("/a:/b:exec").is_err());
        let f = DefinitionFlags {
            label: vec!["=x".into()],
            ..Default::default()
        };
        assert!(apply(f).is_err());
    }

    #[test]
    fn service_and_health_flags() {
        let f = DefinitionFlags {
            restart: Some("on-failure:4".into()),
            stop_signal: Some("SIGQUIT".into()),
            pull: Some("newer".into()),
            health_cmd: Some("test -f /ok".into()),
            health_interval: Some("2s".into()),
            health_retries: Some(2),
            health_start_interval: Some("500ms".into()),
            ..Default::default()
        };
        let v: Table = toml::from_str(&apply(f).unwrap()).unwrap();
        assert_eq!(v["service"]["restart"].as_str(), Some("on-failure"));
        assert_eq!(v["service"]["start_limit_burst"].as_integer(), Some(5));
        assert_eq!(v["service"]["stop_signal"].as_str(), Some("SIGQUIT"));
        assert_eq!(v["service"]["pull"].as_str(), Some("newer"));
        let cmd = v["health"]["command"].as_array().unwrap();
        assert_eq!(cmd[2].as_str(), Some("test -f /ok"));
        assert_eq!(v["health"]["interval"].as_str(), Some("2s"));
        assert_eq!(v["health"]["retries"].as_integer(), Some(2));
        assert_eq!(v["health"]["start_interval"].as_str(), Some("500ms"));
        let f = DefinitionFlags {
            restart: Some("unless-stopped".into()),
            ..Default::default()
        };
        let v: Table = toml::from_str(&apply(f).unwrap()).unwrap();
        assert_eq!(v["service"]["restart"].as_str(), Some("always"));
        let f = DefinitionFlags {
            restart: Some("on-failure:x".into()),
            ..Default::default()
        };
        assert!(apply(f).is_err());
    }

    #[test]
    fn network_flags_become_network_keys() {
        let f = DefinitionFlags {
            network: vec!["app".into(), "default".into()],
            publish: vec!["8080:80".into(), "127.0.0.1:5353:53/udp".into()],
            ip: Some("10.89.1.20".into()),
            network_alias: vec!["www".into()],
            dns: vec!["192.0.2.53".into()],
            dns_search: vec!["example.org".into()],
            add_host: vec!["gw:192.0.2.1".into(), "v6=2001:db8::1".into()],
            ..Default::default()
        };
        let v: Table = toml::from_str(&apply(f).unwrap()).unwrap();
        let n = &v["network"];
        assert!(n.get("mode").is_none());
        assert_eq!(n["networks"].as_array().unwrap().len(), 2);
        assert_eq!(n["publish"][1].as_str(), Some("127.0.0.1:5353:53/udp"));
        assert_eq!(n["ip"]["app"].as_str(), Some("10.89.1.20"));
        assert_eq!(n["aliases"][0].as_str(), Some("www"));
        assert_eq!(n["dns"][0].as_str(), Some("192.0.2.53"));
        assert_eq!(n["dns_search"][0].as_str(), Some("example.org"));
        assert_eq!(n["extra_hosts"][0].as_str(), Some("gw:192.0.2.1"));
        assert_eq!(n["extra_hosts"][1].as_str(), Some("v6:2001:db8::1"));

        // A mode is a mode; --ip without a named network is on `default`.
        let f = DefinitionFlags {
            network: vec!["none".into()],
            ..Default::default()
        };
        let v: Table = toml::from_str(&apply(f).unwrap()).unwrap();
        assert_eq!(v["network"]["mode"].as_str(), Some("none"));
        let f = DefinitionFlags {
            ip: Some("10.89.0.9".into()),
            publish: vec!["80:80".into()],
            ..Default::default()
        };
        let v: Table = toml::from_str(&apply(f).unwrap()).unwrap();
        assert_eq!(v["network"]["ip"]["default"].as_str(), Some("10.89.0.9"));
        assert_eq!(v["network"]["publish"][0].as_str(), Some("80:80"));
    }

    #[test]
    fn relative_host_paths_are_made_absolute() {
        let f = DefinitionFlags {
            volume: vec!["./conf:/etc/app".into()],
            ..Default::default()
        };
        let v: Table = toml::from_str(&apply(f).unwrap()).unwrap();
        let src = v["volume"][0]["source"].as_str().unwrap();
        assert!(src.starts_with('/') && src.ends_with("conf"), "{src}");
    }

    #[test]
    fn container_side_flags_become_their_keys() {
        let out = apply(DefinitionFlags {
            tmpfs: vec!["/tmp:noexec,nosuid,size=100m,uid=1000".into()],
            device: vec!["/dev/fuse".into(), "/dev/net/tun:rw".into()],
            sysctl: vec!["net.ipv4.ip_unprivileged_port_start=80".into()],
            ulimit: vec!["nofile=65536:65536".into(), "nproc=100".into()],
            shm_size: Some("128M".into()),
            security_opt: vec!["mask=/proc/interrupts:/etc/x".into(), "unmask=ALL".into()],
            group_add: vec!["video".into(), "1000".into()],
            ..Default::default()
        })
        .unwrap();
        let v: Table = toml::from_str(&out).unwrap();
        assert_eq!(v["tmpfs"][0]["options"].as_array().unwrap().len(), 2);
        assert_eq!(v["tmpfs"][0]["size"].as_str(), Some("100m"));
        assert_eq!(v["tmpfs"][0]["uid"].as_integer(), Some(1000));
        let sec = &v["security"];
        assert_eq!(sec["devices"][1].as_str(), Some("/dev/net/tun:rw"));
        assert_eq!(
            sec["sysctls"]["net.ipv4.ip_unprivileged_port_start"].as_str(),
            Some("80")
        );
        assert_eq!(sec["mask"][1].as_str(), Some("/etc/x"));
        assert_eq!(sec["unmask"][0].as_str(), Some("ALL"));
        assert_eq!(sec["group_add"][0].as_str(), Some("video"));
        let res = &v["resources"];
        assert_eq!(res["ulimits"]["nofile"].as_str(), Some("65536:65536"));
        assert_eq!(res["shm_size"].as_str(), Some("128M"));
    }

    #[test]
    fn malformed_flags_say_what_was_expected() {
        for (f, want) in [
            (
                DefinitionFlags {
                    volume: vec!["a:b:c:d".into()],
                    ..Default::default()
                },
                "-v \"a:b:c:d\": expected TARGET, SOURCE:TARGET",
            ),
            (
                DefinitionFlags {
                    volume: vec!["a:/b:rx".into()],
                    ..Default::default()
                },
                "options may be ro, rw, U and one of",
            ),
            (
                DefinitionFlags {
                    tmpfs: vec!["/t:nr_blocks=1".into()],
                    ..Default::default()
                },
                "--tmpfs \"/t:nr_blocks=1\": options may be size=N, mode=OCTAL",
            ),
            (
                DefinitionFlags {
                    sysctl: vec!["net.ipv4.ip_forward".into()],
                    ..Default::default()
                },
                "--sysctl \"net.ipv4.ip_forward\": expected NAME=VALUE",
            ),
            (
                DefinitionFlags {
                    network: vec!["host".into(), "app".into()],
                    ..Default::default()
                },
                "--network \"host\": a mode (host, none, bridge) cannot be combined",
            ),
            (
                DefinitionFlags {
                    security_opt: vec!["apparmor=x".into()],
                    ..Default::default()
                },
                "--security-opt \"apparmor=x\": expected seccomp=",
            ),
            (
                DefinitionFlags {
                    memory_swap: Some("1G".into()),
                    ..Default::default()
                },
                "--memory-swap \"1G\": needs --memory",
            ),
            (
                DefinitionFlags {
                    memory: Some("1G".into()),
                    memory_swap: Some("512M".into()),
                    ..Default::default()
                },
                "must be at least --memory",
            ),
            (
                DefinitionFlags {
                    device_write_bps: vec!["/dev/sda".into()],
                    ..Default::default()
                },
                "--device-write-bps \"/dev/sda\": expected DEVICE:RATE",
            ),
        ] {
            let e = apply(f).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
