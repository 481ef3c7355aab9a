//! spec: the pure planner. A validated [`Definition`] plus the image's config
//! (and a few facts the caller gathered, in [`PlanContext`]) become the OCI
//! runtime [`Spec`] the runtime executes.
//!
//! Owns every decision about what a container looks like: argv (Docker's
//! entrypoint/command rules), environment, user, mounts, namespaces,
//! capabilities, rlimits, sysctls, masked paths. Must not read files, call the
//! kernel or spawn processes: whatever needs I/O (environment files, the
//! image's /etc/passwd, the seccomp profile, an ID range) is gathered by the
//! caller and passed in the context, so every rule is unit- and golden-tested
//! without root (tests/spec_golden.rs, tests/cases/spec/).

mod devices;
mod env;
mod image;
mod mounts;
mod security;
mod user;

use std::path::PathBuf;

use oci_spec::runtime::{
    Linux, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, LinuxSeccomp, Process, Root,
    Spec,
};

use crate::config::{Definition, IdMapping, NetworkMode, Seccomp, Userns};

pub use devices::HostDevice;
pub use env::parse_env_file;
pub use image::ImageConfigView;
pub use mounts::{default_mounts, plan_volumes, ETC_FILES};
pub use security::{
    capability_set, default_capabilities, linux_capabilities, DEFAULT_CAPABILITIES, MASKED_PATHS,
    NOFILE_HARD, NOFILE_SOFT, READONLY_PATHS,
};
pub use user::{resolve_user, ResolvedUser};

/// Search path used when neither the image nor the definition sets `PATH`
/// (Docker's and Podman's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// OCI runtime spec version the plan declares.
pub const OCI_VERSION: &str = "1.2.0";

/// Where a container with `notify = "container"` finds its notify socket
/// (systemd-nspawn's path, so software that knows nspawn works unchanged).
pub const NOTIFY_SOCKET: &str = "/run/host/notify";

/// Size of the private ID range of a container with `userns = "auto"`.
pub const USERNS_SIZE: u32 = 65536;

/// Errors of planning. Each names the container and the object at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("container \"{name}\" has no command: set \"command\" or \"entrypoint\" in its definition, or use an image with an Entrypoint or Cmd")]
    NoCommand { name: String },
    #[error("container \"{name}\": user \"{user}\": {reason}")]
    User {
        name: String,
        user: String,
        reason: String,
    },
    #[error("environment file \"{path}\" line {line}: {reason}")]
    EnvFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("container \"{name}\" has secrets but no credentials directory ($CREDENTIALS_DIRECTORY is unset: is the unit's LoadCredential= missing?)")]
    NoCredentials { name: String },
    #[error("container \"{name}\" asks for seccomp \"{policy}\" but no profile was loaded")]
    NoSeccompProfile { name: String, policy: String },
    #[error("container \"{name}\" has userns = \"auto\" but no ID range was allocated")]
    NoIdRange { name: String },
    #[error("container \"{name}\" has notify = \"container\" but no notify socket was given")]
    NoNotifySocket { name: String },
    #[error("container \"{name}\": unknown capability \"{cap}\"")]
    Capability { name: String, cap: String },
    #[error("container \"{name}\": building the OCI spec: {reason}")]
    Build { name: String, reason: String },
    #[error("container \"{name}\" joins the network of container \"{other}\", but no namespace of it was given")]
    NoNetworkNamespace { name: String, other: String },
    #[error("container \"{name}\": device \"{device}\" ([security] devices in {definition}) was not found on the host")]
    NoDevice {
        name: String,
        device: PathBuf,
        definition: PathBuf,
    },
    #[error("container \"{name}\": group_add: no group \"{group}\" in the image's /etc/group; give its gid instead")]
    Group { name: String, group: String },
    #[error(
        "container \"{name}\": no named volume was chosen for the anonymous volume at \"{target}\""
    )]
    NoAnonymousVolume { name: String, target: PathBuf },
    #[error("container \"{name}\": the image's VOLUME \"{path}\" {reason}")]
    ImageVolume {
        name: String,
        path: String,
        reason: String,
    },
    #[error("container \"{name}\": volume \"{volume}\" is a {fstype} filesystem, which a user namespace (userns = \"auto\") cannot mount: use userns = \"host\", or a tmpfs or plain volume")]
    VolumeInUserns {
        name: String,
        volume: String,
        fstype: String,
    },
}

fn build_err(name: &str, e: impl std::fmt::Display) -> PlanError {
    PlanError::Build {
        name: name.to_string(),
        reason: e.to_string(),
    }
}

/// (uid map, gid map) of a user namespace.
pub type IdMaps = (Vec<IdMapping>, Vec<IdMapping>);

/// A range of host IDs mapped to 0..size inside a user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub host_start: u32,
    pub size: u32,
}

/// What the planner needs beyond the definition and the image config:
/// facts the caller read or allocated. Plain data, so plans are reproducible.
#[derive(Debug, Clone, Default)]
pub struct PlanContext {
    /// Host path the runtime mounts the root filesystem on (`root.path`).
    pub rootfs: PathBuf,
    /// `/run/berth/containers/NAME`: where the supervisor writes the
    /// container's `hostname`, `hosts` and `resolv.conf`.
    pub run_dir: PathBuf,
    /// The storage root; named volumes live in `STORAGE/volumes/NAME/_data`.
    pub storage_root: PathBuf,
    /// `$CREDENTIALS_DIRECTORY` of the unit, when systemd set one.
    pub credentials_dir: Option<PathBuf>,
    /// Each of the definition's `environment_files`, with its contents, in
    /// the definition's order.
    pub environment_files: Vec<(PathBuf, String)>,
    /// The image's `/etc/passwd` and `/etc/group`, when it has them.
    pub passwd: Option<String>,
    pub group: Option<String>,
    /// The seccomp profile for `seccomp = "default"` or a profile path, loaded
    /// by the caller (the runtime's default profile or its JSON loader);
    /// ignored for `unconfined`.
    pub seccomp: Option<LinuxSeccomp>,
    /// The host ID range for `userns = "auto"`.
    pub id_range: Option<IdRange>,
    /// Allocate a terminal for the process (ad hoc `berth run -t`).
    pub terminal: bool,
    /// Host path of the socket the supervisor reads the container's
    /// sd_notify messages from (`notify = "container"`); bound at
    /// [`NOTIFY_SOCKET`] with `NOTIFY_SOCKET` set, as systemd-nspawn does.
    pub notify_socket: Option<PathBuf>,
    /// The caller's RLIMIT_NOFILE (soft, hard). Raising a hard limit needs
    /// CAP_SYS_RESOURCE, so the container's is clamped to it; `None` plans
    /// berth's defaults unclamped.
    pub nofile_limit: Option<(u64, u64)>,
    /// Extra arguments replacing the command (ad hoc `berth run IMAGE CMD…`);
    /// `None` keeps the definition's.
    pub command_override: Option<Vec<String>>,
    /// `mode = "container:NAME"`: the network namespace joined (the other
    /// container's `/proc/PID/ns/net`, found running by the caller).
    pub network_namespace: Option<PathBuf>,
    /// `[security] devices`: each entry's host path → the device nodes
    /// found there (one, or every node under a directory).
    pub host_devices: std::collections::BTreeMap<PathBuf, Vec<HostDevice>>,
    /// `[[secret]] type = "env"`: (variable, the credential's content), read
    /// by the caller from `$CREDENTIALS_DIRECTORY`.
    pub secret_env: Vec<(String, String)>,
    /// The named volume each anonymous one is (its target → its name),
    /// chosen or found again by the caller; see [`plan_volumes`].
    pub anonymous_volumes: std::collections::BTreeMap<PathBuf, String>,
    /// Named volumes whose `/etc/berth/volumes/NAME.toml` gives a `type`:
    /// mounted as that filesystem instead of bound from their directory.
    pub volume_mounts: std::collections::BTreeMap<String, VolumeMount>,
}

/// A volume file's filesystem (`type`, `device`, `options`), mounted at the
/// volume's target in the container's own mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub fstype: String,
    pub device: String,
    pub options: Vec<String>,
    /// Where the supervisor mounted it (a network or block filesystem, see
    /// `supervise::volume_mount`): bound from there, not mounted by the
    /// container's init.
    pub host_path: Option<PathBuf>,
}

/// The definition's hostname, else its name.
/// Who the container runs as, unresolved: the definition's `user`, else
/// the image's User, else root (`""`).
pub fn user_spec(def: &Definition, image: Option<&ImageConfigView>) -> String {
    def.user
        .as_ref()
        .map(|u| u.to_string())
        .or_else(|| image.and_then(|i| i.user.clone()))
        .unwrap_or_default()
}

pub fn hostname(def: &Definition) -> String {
    def.hostname.clone().unwrap_or_else(|| def.name.clone())
}

/// Whether the container gets a network namespace of its own.
pub fn own_network(def: &Definition) -> bool {
    def.network.mode != NetworkMode::Host
}

/// argv as Docker builds it: a definition `entrypoint` replaces the image's
/// Entrypoint and drops the image's Cmd; a definition `command` replaces Cmd;
/// the result is entrypoint ++ cmd.
pub fn plan_args(
    def: &Definition,
    image: Option<&ImageConfigView>,
) -> Result<Vec<String>, PlanError> {
    let image_ep = image.and_then(|i| i.entrypoint.clone()).unwrap_or_default();
    let image_cmd = image.and_then(|i| i.cmd.clone()).unwrap_or_default();
    let (ep, cmd) = match (&def.entrypoint, &def.command) {
        (Some(ep), Some(cmd)) => (ep.clone(), cmd.clone()),
        // moby daemon/create.go: setting the entrypoint resets Cmd.
        (Some(ep), None) => (ep.clone(), Vec::new()),
        (None, Some(cmd)) => (image_ep, cmd.clone()),
        (None, None) => (image_ep, image_cmd),
    };
    let args: Vec<String> = ep.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(PlanError::NoCommand {
            name: def.name.clone(),
        });
    }
    Ok(args)
}

/// The working directory: the definition's, the image's, else `/`.
/// A relative image `WorkingDir` is taken relative to `/`, as Docker does.
pub fn plan_cwd(def: &Definition, image: Option<&ImageConfigView>) -> PathBuf {
    if let Some(w) = &def.workdir {
        return w.clone();
    }
    match image.and_then(|i| i.working_dir.as_deref()) {
        Some(w) if !w.is_empty() => PathBuf::from("/").join(w),
        _ => PathBuf::from("/"),
    }
}

/// Build the OCI runtime spec for `def`.
pub fn plan(
    def: &Definition,
    image: Option<&ImageConfigView>,
    ctx: &PlanContext,
) -> Result<Spec, PlanError> {
    let name = &def.name;
    let hostname = hostname(def);

    let mut args = plan_args(def, image)?;
    if let Some(over) = &ctx.command_override {
        if !over.is_empty() {
            // `berth run IMAGE CMD…` replaces Cmd, keeping the Entrypoint.
            let mut d = def.clone();
            d.command = Some(over.clone());
            args = plan_args(&d, image)?;
        }
    }

    let user_spec = user_spec(def, image);
    let user = resolve_user(&user_spec, ctx.passwd.as_deref(), ctx.group.as_deref()).map_err(
        |reason| PlanError::User {
            name: name.clone(),
            user: user_spec.clone(),
            reason,
        },
    )?;

    let env = env::plan_env(def, image, ctx, &hostname, &user)?;

    let caps = capability_set(&def.security.cap_drop, &def.security.cap_add).map_err(|cap| {
        PlanError::Capability {
            name: name.clone(),
            cap,
        }
    })?;

    let mut oci_user = user.to_oci();
    let group_add = devices::plan_group_add(def, ctx)?;
    if !group_add.is_empty() {
        let mut gids = oci_user.additional_gids().clone().unwrap_or_default();
        gids.extend(
            group_add
                .iter()
                .filter(|g| !gids.contains(g))
                .collect::<Vec<_>>(),
        );
        oci_user.set_additional_gids(Some(gids));
    }

    let mut process = Process::default();
    process
        .set_terminal(Some(ctx.terminal))
        .set_args(Some(args))
        .set_env(Some(env))
        .set_cwd(plan_cwd(def, image))
        .set_user(oci_user)
        .set_capabilities(Some(security::linux_capabilities(&caps)))
        .set_rlimits(Some(
            security::rlimits(ctx.nofile_limit, &def.resources.ulimits)
                .map_err(|e| build_err(name, e))?,
        ))
        .set_no_new_privileges(Some(def.security.no_new_privileges))
        .set_console_size(None)
        .set_apparmor_profile(None)
        .set_oom_score_adj(None)
        .set_selinux_label(None);

    let mut root = Root::default();
    root.set_path(ctx.rootfs.clone())
        .set_readonly(Some(def.read_only));

    let mut linux = Linux::default();
    linux
        .set_namespaces(Some(plan_namespaces(def, ctx)?))
        .set_cgroups_path(None)
        .set_rootfs_propagation(Some(mounts::rootfs_propagation(def).into()))
        .set_seccomp(plan_seccomp(def, ctx)?);
    plan_confinement(def, ctx, &mut linux)?;
    plan_ids_and_ping(def, ctx, &mut linux)?;

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.into())
        .set_root(Some(root))
        .set_mounts(Some(mounts::plan_mounts(def, image, ctx)?))
        .set_process(Some(process))
        .set_hostname(Some(hostname))
        .set_domainname(None)
        .set_annotations(plan_annotations(def))
        .set_hooks(None)
        .set_linux(Some(linux));
    Ok(spec)
}

/// The user namespace's maps, and the ping group range, which in a user
/// namespace must stay within the mapped gids.
fn plan_ids_and_ping(
    def: &Definition,
    ctx: &PlanContext,
    linux: &mut Linux,
) -> Result<(), PlanError> {
    let name = &def.name;
    let maps = plan_id_maps(def, ctx)?;
    let mut sysctl = std::collections::HashMap::new();
    if own_network(def) {
        // NET_RAW is not granted, so ping works through ICMP datagram
        // sockets, which this range allows for every group (Podman and
        // Docker ≥ 20.10 set the same).
        // In a user namespace the kernel accepts only groups mapped there
        // (EINVAL otherwise): the run of gids mapped from 0 up; none when
        // gid 0 is not mapped.
        let last = match &maps {
            None => Some(2147483647),
            Some((_, gids)) => mapped_from_zero(gids).checked_sub(1),
        };
        if let Some(last) = last {
            sysctl.insert("net.ipv4.ping_group_range".to_string(), format!("0 {last}"));
        }
    }
    // The definition's own sysctls (namespaced ones, checked) win.
    sysctl.extend(def.security.sysctls.clone());
    if !sysctl.is_empty() {
        linux.set_sysctl(Some(sysctl));
    }
    if let Some((uids, gids)) = maps {
        let oci = |m: &[IdMapping]| {
            m.iter()
                .map(|m| {
                    LinuxIdMappingBuilder::default()
                        .container_id(m.container)
                        .host_id(m.host)
                        .size(m.size)
                        .build()
                        .map_err(|e| build_err(name, e))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        linux
            .set_uid_mappings(Some(oci(&uids)?))
            .set_gid_mappings(Some(oci(&gids)?));
    }
    Ok(())
}

/// Whether the container gets a user namespace: `userns = "auto"` or
/// `"keep-id"`, or explicit `uid_map`/`gid_map`.
pub fn has_user_namespace(def: &Definition) -> bool {
    def.security.userns != Userns::Host || !def.security.uid_map.is_empty()
}

/// The (uid, gid) maps of the container's user namespace, `None` without
/// one. `auto`: the allocated range at 0. `keep-id`, for a root-run system
/// service: the same range, except that the definition's user keeps its
/// host uid and gid (Podman's keep-id maps the invoking user to itself; a
/// system service's invoking user is root, which keeping would undo the
/// namespace, so the kept ID is the service's own `user`). Explicit maps
/// as written.
pub fn plan_id_maps(def: &Definition, ctx: &PlanContext) -> Result<Option<IdMaps>, PlanError> {
    let range = || {
        ctx.id_range.ok_or_else(|| PlanError::NoIdRange {
            name: def.name.clone(),
        })
    };
    match def.security.userns {
        Userns::Host if def.security.uid_map.is_empty() => Ok(None),
        Userns::Host => Ok(Some((
            def.security.uid_map.clone(),
            def.security.gid_map.clone(),
        ))),
        Userns::Auto => {
            let r = range()?;
            let m = vec![IdMapping {
                container: 0,
                host: r.host_start,
                size: r.size,
            }];
            Ok(Some((m.clone(), m)))
        }
        Userns::KeepId => {
            let r = range()?;
            let (uid, gid) = match &def.user {
                Some(crate::config::User::Id { uid, gid }) if *uid != 0 => {
                    (*uid, gid.unwrap_or(*uid))
                }
                _ => {
                    return Err(PlanError::User {
                        name: def.name.clone(),
                        user: def.user.as_ref().map(|u| u.to_string()).unwrap_or_default(),
                        reason: "userns = \"keep-id\" needs a numeric, non-root user".into(),
                    })
                }
            };
            Ok(Some((keep_id(r, uid), keep_id(r, gid))))
        }
    }
}

/// `range` mapped from container ID 0, with `id` taken out of it and mapped
/// to itself.
fn keep_id(range: IdRange, id: u32) -> Vec<IdMapping> {
    let mut out = Vec::new();
    if id >= range.size {
        out.push(IdMapping {
            container: 0,
            host: range.host_start,
            size: range.size,
        });
        out.push(IdMapping {
            container: id,
            host: id,
            size: 1,
        });
        return out;
    }
    if id > 0 {
        out.push(IdMapping {
            container: 0,
            host: range.host_start,
            size: id,
        });
    }
    out.push(IdMapping {
        container: id,
        host: id,
        size: 1,
    });
    if id + 1 < range.size {
        out.push(IdMapping {
            container: id + 1,
            host: range.host_start + id + 1,
            size: range.size - id - 1,
        });
    }
    out
}

/// How many IDs from 0 up are mapped without a gap.
fn mapped_from_zero(maps: &[IdMapping]) -> u32 {
    let mut next: u64 = 0;
    loop {
        match maps.iter().find(|m| u64::from(m.container) == next) {
            Some(m) => next += u64::from(m.size),
            None => return u32::try_from(next).unwrap_or(u32::MAX),
        }
    }
}

/// The definition's `annotations`; `None` when it has none.
fn plan_annotations(def: &Definition) -> Option<std::collections::HashMap<String, String>> {
    (!def.annotations.is_empty()).then(|| def.annotations.clone().into_iter().collect())
}

/// Masked and read-only paths (`mask`, `unmask`), the cgroup resources with
/// the device filter's rules, and the device nodes (`devices`).
fn plan_confinement(
    def: &Definition,
    ctx: &PlanContext,
    linux: &mut Linux,
) -> Result<(), PlanError> {
    let (masked, readonly) = security::masked_and_readonly(&def.security);
    let (devices, device_rules) = devices::plan_devices(def, ctx)?;
    let mut resources = security::resources(&def.resources).map_err(|e| build_err(&def.name, e))?;
    if !device_rules.is_empty() {
        // After the deny-all: the last matching rule decides.
        let mut rules = resources.devices().clone().unwrap_or_default();
        rules.extend(device_rules);
        resources.set_devices(Some(rules));
    }
    linux
        .set_masked_paths(Some(masked))
        .set_readonly_paths(Some(readonly))
        .set_resources(Some(resources))
        .set_devices((!devices.is_empty()).then_some(devices));
    Ok(())
}

/// pid, mount, uts, ipc and cgroup always; network unless `mode = "host"`;
/// user with `userns = "auto"`. With `init = true` the runtime keeps the
/// container's own init as PID 1 of its new pid namespace (runtime/reaper.rs).
pub fn plan_namespaces(
    def: &Definition,
    ctx: &PlanContext,
) -> Result<Vec<LinuxNamespace>, PlanError> {
    let mut types = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    if own_network(def) {
        types.push(LinuxNamespaceType::Network);
    }
    if has_user_namespace(def) {
        types.push(LinuxNamespaceType::User);
    }
    let mut out = Vec::new();
    for t in types {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(t);
        if t == LinuxNamespaceType::Network && def.network.mode == NetworkMode::Container {
            let other = def.network.container.clone().unwrap_or_default();
            let path = ctx.network_namespace.clone();
            ns.set_path(Some(path.ok_or_else(|| PlanError::NoNetworkNamespace {
                name: def.name.clone(),
                other,
            })?));
        }
        out.push(ns);
    }
    Ok(out)
}

fn plan_seccomp(def: &Definition, ctx: &PlanContext) -> Result<Option<LinuxSeccomp>, PlanError> {
    match &def.security.seccomp {
        Seccomp::Unconfined => Ok(None),
        policy => match &ctx.seccomp {
            Some(p) => Ok(Some(p.clone())),
            None => Err(PlanError::NoSeccompProfile {
                name: def.name.clone(),
                policy: policy.to_string(),
            }),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{
        ImageSource, Network, Notify, Pull, Resources, Restart, Security, Service,
    };
    use std::collections::BTreeMap;

    /// A definition with every default, running `/bin/true` from a rootfs.
    pub fn def() -> Definition {
        Definition {
            name: "web".into(),
            source_path: PathBuf::from("/etc/berth/containers/web.toml"),
            dropins: vec![],
            hash: String::new(),
            image: ImageSource::Rootfs(PathBuf::from("/srv/web")),
            command: None,
            entrypoint: None,
            workdir: None,
            user: None,
            hostname: None,
            environment: BTreeMap::new(),
            environment_files: vec![],
            read_only: false,
            init: false,
            network: Network {
                mode: NetworkMode::Bridge,
                networks: vec!["default".into()],
                publish: vec![],
                ..Default::default()
            },
            volumes: vec![],
            tmpfs: vec![],
            resources: Resources::default(),
            security: Security {
                cap_add: vec![],
                cap_drop: vec![],
                no_new_privileges: false,
                seccomp: Seccomp::Default,
                userns: Userns::Host,
                devices: vec![],
                sysctls: BTreeMap::new(),
                mask: vec![],
                unmask: Default::default(),
                group_add: vec![],
                uid_map: vec![],
                gid_map: vec![],
            },
            health: None,
            service: Service {
                restart: Restart::No,
                requires: vec![],
                after: vec![],
                wanted_by: vec![],
                stop_timeout: std::time::Duration::from_secs(10),
                notify: Notify::Started,
                pull: Pull::Missing,
                auto_update: false,
                group: None,
                wants: vec![],
                binds_to: vec![],
                part_of: vec![],
                before: vec![],
                stop_signal: None,
                reload: None,
                restart_sec: None,
                start_limit_burst: None,
            },
            secrets: vec![],
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            timezone: None,
        }
    }

    #[test]
    fn keep_id_splits_the_range_around_the_kept_id() {
        let r = IdRange {
            host_start: 1_000_000,
            size: 65536,
        };
        let m = |c, h, n| IdMapping {
            container: c,
            host: h,
            size: n,
        };
        assert_eq!(
            keep_id(r, 1000),
            [
                m(0, 1_000_000, 1000),
                m(1000, 1000, 1),
                m(1001, 1_001_001, 64535)
            ]
        );
        assert_eq!(
            keep_id(r, 65535),
            [m(0, 1_000_000, 65535), m(65535, 65535, 1)]
        );
        assert_eq!(
            keep_id(r, 70000),
            [m(0, 1_000_000, 65536), m(70000, 70000, 1)]
        );
        assert_eq!(mapped_from_zero(&keep_id(r, 1000)), 65536);
        assert_eq!(mapped_from_zero(&[m(1, 5, 5)]), 0);
    }

    pub fn ctx() -> PlanContext {
        PlanContext {
            rootfs: "/run/berth/containers/web/rootfs".into(),
            run_dir: "/run/berth/containers/web".into(),
            storage_root: "/var/lib/berth".into(),
            seccomp: Some(LinuxSeccomp::default()),
            ..PlanContext::default()
        }
    }

    fn image(ep: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfigView {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ImageConfigView {
            entrypoint: ep.map(v),
            cmd: cmd.map(v),
            ..ImageConfigView::default()
        }
    }

    fn strings(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_follow_docker_rules() {
        let img = image(Some(&["/ep"]), Some(&["cmd1"]));
        let mut d = def();
        assert_eq!(
            plan_args(&d, Some(&img)).unwrap(),
            strings(&["/ep", "cmd1"])
        );
        d.command = Some(strings(&["x"]));
        assert_eq!(plan_args(&d, Some(&img)).unwrap(), strings(&["/ep", "x"]));
        d.command = None;
        d.entrypoint = Some(strings(&["/new"]));
        assert_eq!(plan_args(&d, Some(&img)).unwrap(), strings(&["/new"]));
        d.command = Some(strings(&["a"]));
        assert_eq!(plan_args(&d, Some(&img)).unwrap(), strings(&["/new", "a"]));
        d.entrypoint = Some(vec![]);
        assert_eq!(plan_args(&d, Some(&img)).unwrap(), strings(&["a"]));
        d.command = None;
        assert!(matches!(
            plan_args(&d, Some(&img)),
            Err(PlanError::NoCommand { .. })
        ));
        assert!(plan_args(&def(), None).is_err());
    }

    #[test]
    fn cwd_precedence() {
        let mut d = def();
        let mut img = ImageConfigView::default();
        assert_eq!(plan_cwd(&d, Some(&img)), PathBuf::from("/"));
        img.working_dir = Some("app".into());
        assert_eq!(plan_cwd(&d, Some(&img)), PathBuf::from("/app"));
        d.workdir = Some("/srv".into());
        assert_eq!(plan_cwd(&d, Some(&img)), PathBuf::from("/srv"));
    }

    #[test]
    fn namespaces_follow_network_and_userns() {
        let mut d = def();
        let ns = |d: &Definition, c: &PlanContext| -> Vec<LinuxNamespaceType> {
            plan_namespaces(d, c)
                .unwrap()
                .iter()
                .map(|n| n.typ())
                .collect()
        };
        assert!(ns(&d, &ctx()).contains(&LinuxNamespaceType::Network));
        d.network.mode = NetworkMode::Host;
        assert!(!ns(&d, &ctx()).contains(&LinuxNamespaceType::Network));
        // A sidecar joins the other's namespace by path, or is refused.
        let mut side = def();
        side.network.mode = NetworkMode::Container;
        side.network.container = Some("db".into());
        assert!(matches!(
            plan_namespaces(&side, &ctx()),
            Err(PlanError::NoNetworkNamespace { .. })
        ));
        let mut c = ctx();
        c.network_namespace = Some("/proc/42/ns/net".into());
        let joined = plan_namespaces(&side, &c).unwrap();
        let net = joined
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(
            net.path().as_deref(),
            Some(std::path::Path::new("/proc/42/ns/net"))
        );
        d.security.userns = Userns::Auto;
        assert!(ns(&d, &ctx()).contains(&LinuxNamespaceType::User));
        assert!(matches!(
            plan(&d, None, &ctx()),
            Err(PlanError::NoCommand { .. })
        ));
        d.command = Some(strings(&["true"]));
        assert!(matches!(
            plan(&d, None, &ctx()),
            Err(PlanError::NoIdRange { .. })
        ));
    }

    #[test]
    fn seccomp_needs_a_profile_unless_unconfined() {
        let mut d = def();
        d.command = Some(strings(&["true"]));
        let mut c = ctx();
        c.seccomp = None;
        assert!(matches!(
            plan(&d, None, &c),
            Err(PlanError::NoSeccompProfile { .. })
        ));
        d.security.seccomp = Seccomp::Unconfined;
        let spec = plan(&d, None, &c).unwrap();
        assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    }

    #[test]
    fn command_override_keeps_entrypoint() {
        let img = image(Some(&["/ep"]), Some(&["cmd1"]));
        let mut c = ctx();
        c.command_override = Some(strings(&["sh"]));
        let spec = plan(&def(), Some(&img), &c).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_ref().unwrap(),
            &strings(&["/ep", "sh"])
        );
    }
}
