//! The container's mount list, in the order the runtime applies it: the
//! kernel filesystems every container gets, tmpfs on scratch dirs of a
//! read-only root, the `/etc` files the supervisor writes, then volumes,
//! tmpfs and secrets from the definition (a later mount may sit on an
//! earlier one, so user mounts come last).
//!
//! Pure: paths come from the plan context.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use super::{ImageConfigView, PlanContext, PlanError};
use crate::config::{Definition, Propagation, Volume, VolumeSource};

/// Files under the container's run dir bound over the same path in `/etc`.
pub const ETC_FILES: &[&str] = &["hostname", "hosts", "resolv.conf"];

/// Where the container's zone is read from (`timezone`).
const LOCALTIME: &str = "/etc/localtime";

/// Directories a read-only root keeps writable with a tmpfs (Podman's
/// `--read-only-tmpfs`, on by default), unless the definition mounts
/// something there itself.
const READ_ONLY_SCRATCH: &[&str] = &["/tmp", "/var/tmp", "/run"];

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest))
        .set_typ(Some(typ.to_string()))
        .set_source(Some(PathBuf::from(source)))
        .set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

fn bind(dest: &Path, source: &Path, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dest.to_path_buf())
        .set_typ(Some("bind".to_string()))
        .set_source(Some(source.to_path_buf()))
        .set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// runc's default mounts (`runc spec`), with cgroup2 for `/sys/fs/cgroup`:
/// berth runs on the unified hierarchy only.
pub fn default_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup2",
            "cgroup2",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

/// `shm_size`: Docker's `--shm-size`, the size of /dev/shm.
fn set_shm_size(mounts: &mut [Mount], size: u64) {
    for m in mounts.iter_mut() {
        if m.destination() == Path::new("/dev/shm") {
            let opts = ["nosuid", "noexec", "nodev", "mode=1777"]
                .iter()
                .map(|s| s.to_string())
                .chain([format!("size={size}")])
                .collect();
            m.set_options(Some(opts));
        }
    }
}

/// The definition's volumes, then an anonymous volume for each of the
/// image's VOLUME paths that no volume, tmpfs or secret of the definition
/// covers (Docker and Podman: an image volume gets a fresh anonymous volume
/// unless the container mounts something there). The image is hostile: a
/// VOLUME path must be absolute and free of `..` like a definition's target.
pub fn plan_volumes(
    def: &Definition,
    image: Option<&ImageConfigView>,
) -> Result<Vec<Volume>, PlanError> {
    let mut out = def.volumes.clone();
    let taken = |p: &Path| {
        def.volumes.iter().any(|v| v.target == p)
            || def.tmpfs.iter().any(|t| t.target == p)
            || def.secrets.iter().any(|s| s.target == p)
    };
    for path in image.map(|i| i.volumes.as_slice()).unwrap_or_default() {
        let target = crate::config::validate::check_abs_path(path).map_err(|reason| {
            PlanError::ImageVolume {
                name: def.name.clone(),
                path: path.clone(),
                reason,
            }
        })?;
        // `/data/` and `/data` are one target.
        let target: PathBuf = target.components().collect();
        if target == Path::new("/") {
            return Err(PlanError::ImageVolume {
                name: def.name.clone(),
                path: path.clone(),
                reason: "is the root: expected a directory below it".into(),
            });
        }
        if !taken(&target) && !out.iter().any(|v| v.target == target) {
            out.push(Volume {
                source: VolumeSource::Anonymous,
                target,
                read_only: false,
                propagation: None,
                chown: false,
            });
        }
    }
    Ok(out)
}

/// The root's propagation: `rprivate`, unless a volume asks for shared or
/// slave propagation, which the root must then allow (Podman's rule in
/// libpod/container_internal_common.go generateSpec: a shared mount makes
/// the root shared, a slave one rslave). The runtime still makes the
/// mount holding the root private before pivot_root (runc's
/// rootfsParentMountPrivate), so the container's own mounts stay its own.
pub(super) fn rootfs_propagation(def: &Definition) -> &'static str {
    let props = || def.volumes.iter().filter_map(|v| v.propagation);
    if props().any(|p| matches!(p, Propagation::Shared | Propagation::Rshared)) {
        "rshared"
    } else if props().any(|p| matches!(p, Propagation::Slave | Propagation::Rslave)) {
        "rslave"
    } else {
        "rprivate"
    }
}

pub(super) fn plan_mounts(
    def: &Definition,
    image: Option<&ImageConfigView>,
    ctx: &PlanContext,
) -> Result<Vec<Mount>, PlanError> {
    let mut mounts = default_mounts();
    if let Some(size) = def.resources.shm_size {
        set_shm_size(&mut mounts, size);
    }
    let volumes = plan_volumes(def, image)?;
    let user_targets: Vec<&Path> = volumes
        .iter()
        .map(|v| v.target.as_path())
        .chain(def.tmpfs.iter().map(|t| t.target.as_path()))
        .collect();
    if def.read_only {
        for dir in READ_ONLY_SCRATCH {
            if !user_targets.contains(&Path::new(dir)) {
                let opts: &[&str] = if *dir == "/run" {
                    &["nosuid", "nodev", "mode=755"]
                } else {
                    &["nosuid", "nodev", "mode=1777"]
                };
                mounts.push(mount(dir, "tmpfs", "tmpfs", opts));
            }
        }
    }
    // With `userns = "auto"` the host's files would show as nobody's; an
    // idmapped bind (runtime-spec "idmap", the container's own mapping)
    // shows host root as the container's root, and so on, without chown.
    let idmap = super::has_user_namespace(def);
    for f in ETC_FILES {
        let dest = Path::new("/etc").join(f);
        if !user_targets.contains(&dest.as_path()) {
            // Read-write like Docker's: programs that rewrite /etc/hosts
            // change the supervisor's copy, never the image.
            let opts: &[&str] = if idmap {
                &["bind", "rprivate", "idmap"]
            } else {
                &["bind", "rprivate"]
            };
            mounts.push(bind(&dest, &ctx.run_dir.join(f), opts));
        }
    }
    // `timezone`: the host's zone file read-only over /etc/localtime (a
    // symlink there in the image is followed inside the root, as for
    // /etc/resolv.conf). TZ is left alone: a program reads /etc/localtime
    // when TZ is unset, and a definition's TZ still wins. Podman's `--tz`
    // (docs/source/markdown/options/tz.md: a zone name or `local`) copies
    // the zone file into the container's run dir; a read-only bind gives
    // the same bytes without a copy per start.
    if let Some(tz) = &def.timezone {
        if !user_targets.contains(&Path::new(LOCALTIME)) {
            mounts.push(bind(
                Path::new(LOCALTIME),
                &tz.host_file(),
                &["bind", "rprivate", "ro", "nosuid", "nodev", "noexec"],
            ));
        }
    }
    for v in &volumes {
        mounts.push(plan_volume_mount(def, v, ctx, idmap)?);
    }
    for t in &def.tmpfs {
        // The flags (berth's nosuid and nodev, then the definition's
        // options), then the tmpfs data options, as `--tmpfs` sets them.
        let mut opts = crate::config::container_keys::tmpfs_flags(&t.options);
        opts.push(format!("mode={:o}", t.mode.unwrap_or(0o1777)));
        opts.extend(t.size.map(|s| format!("size={s}")));
        opts.extend(t.uid.map(|u| format!("uid={u}")));
        opts.extend(t.gid.map(|g| format!("gid={g}")));
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let mut m = mount("", "tmpfs", "tmpfs", &opts);
        m.set_destination(t.target.clone());
        mounts.push(m);
    }
    if def.service.notify == crate::config::Notify::Container {
        let sock = ctx
            .notify_socket
            .as_ref()
            .ok_or_else(|| PlanError::NoNotifySocket {
                name: def.name.clone(),
            })?;
        mounts.push(bind(
            Path::new(super::NOTIFY_SOCKET),
            sock,
            &["bind", "rprivate", "nosuid", "nodev", "noexec"],
        ));
    }
    // `type = "env"` secrets are no file (their content is in the process's
    // environment, `env.rs`).
    if def.secrets.iter().any(|s| s.env.is_none()) {
        let creds = ctx
            .credentials_dir
            .as_ref()
            .ok_or_else(|| PlanError::NoCredentials {
                name: def.name.clone(),
            })?;
        for s in def.secrets.iter().filter(|s| s.env.is_none()) {
            mounts.push(bind(
                &s.target,
                &creds.join(&s.credential),
                &["bind", "rprivate", "ro", "nosuid", "nodev", "noexec"],
            ));
        }
    }
    Ok(mounts)
}

/// One volume: a bind of its directory (or host path), or, for a named
/// volume whose file gives a `type`, that filesystem.
fn plan_volume_mount(
    def: &Definition,
    v: &Volume,
    ctx: &PlanContext,
    idmap: bool,
) -> Result<Mount, PlanError> {
    let name = match &v.source {
        VolumeSource::Bind(_) => None,
        VolumeSource::Named(n) => Some(n.clone()),
        VolumeSource::Anonymous => Some(ctx.anonymous_volumes.get(&v.target).cloned().ok_or_else(
            || PlanError::NoAnonymousVolume {
                name: def.name.clone(),
                target: v.target.clone(),
            },
        )?),
    };
    if let Some(fs) = name.as_ref().and_then(|n| ctx.volume_mounts.get(n)) {
        // A block device or a network filesystem needs the host's user
        // namespace to mount; tmpfs may be mounted in the container's own.
        if idmap && fs.fstype != "tmpfs" {
            return Err(PlanError::VolumeInUserns {
                name: def.name.clone(),
                volume: name.unwrap_or_default(),
                fstype: fs.fstype.clone(),
            });
        }
        let mut opts: Vec<&str> = vec!["nosuid", "nodev"];
        if v.read_only {
            opts.push("ro");
        }
        if let Some(staged) = &fs.host_path {
            // Mounted by the supervisor (a network or block filesystem):
            // its one mount bound, nothing below it.
            let mut b = vec!["bind", "rprivate"];
            b.extend(opts);
            return Ok(bind(&v.target, staged, &b));
        }
        opts.extend(fs.options.iter().map(String::as_str));
        let mut m = mount("", &fs.fstype, &fs.device, &opts);
        m.set_destination(v.target.clone());
        return Ok(m);
    }
    let source = match (&v.source, &name) {
        (VolumeSource::Bind(p), _) => p.clone(),
        (_, Some(n)) => ctx.storage_root.join("volumes").join(n).join("_data"),
        (_, None) => {
            return Err(PlanError::NoAnonymousVolume {
                name: def.name.clone(),
                target: v.target.clone(),
            })
        }
    };
    let propagation = v.propagation.unwrap_or(Propagation::Rprivate);
    let mut opts = vec!["rbind", propagation.as_str()];
    if v.read_only {
        opts.push("ro");
    }
    if idmap {
        opts.push("idmap");
    }
    Ok(bind(&v.target, &source, &opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, Tmpfs, Volume};
    use crate::spec::tests::{ctx, def};

    fn dests(m: &[Mount]) -> Vec<String> {
        m.iter()
            .map(|m| m.destination().display().to_string())
            .collect()
    }

    #[test]
    fn defaults_then_etc_files() {
        let m = plan_mounts(&def(), None, &ctx()).unwrap();
        assert_eq!(
            dests(&m),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf"
            ]
        );
        assert_eq!(
            m[9].source().as_deref(),
            Some(Path::new("/run/berth/containers/web/resolv.conf"))
        );
    }

    fn vol(source: VolumeSource, target: &str) -> Volume {
        Volume {
            source,
            target: target.into(),
            read_only: false,
            propagation: None,
            chown: false,
        }
    }

    #[test]
    fn image_volumes_become_anonymous_unless_covered() {
        let mut d = def();
        d.volumes = vec![vol(VolumeSource::Named("db".into()), "/var/lib/db")];
        let image = ImageConfigView {
            volumes: vec!["/var/lib/db".into(), "/cache/".into(), "/logs".into()],
            ..Default::default()
        };
        d.tmpfs = vec![crate::config::Tmpfs {
            target: "/logs".into(),
            size: None,
            mode: None,
            options: vec![],
            uid: None,
            gid: None,
        }];
        let v = plan_volumes(&d, Some(&image)).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1], vol(VolumeSource::Anonymous, "/cache"));
        // Without a chosen name the plan refuses; with one it binds it.
        assert!(matches!(
            plan_mounts(&d, Some(&image), &ctx()),
            Err(PlanError::NoAnonymousVolume { .. })
        ));
        let mut c = ctx();
        c.anonymous_volumes
            .insert("/cache".into(), "0123abcd".into());
        let m = plan_mounts(&d, Some(&image), &c).unwrap();
        let cache = m
            .iter()
            .find(|m| m.destination() == Path::new("/cache"))
            .unwrap();
        assert_eq!(
            cache.source().as_deref(),
            Some(Path::new("/var/lib/berth/volumes/0123abcd/_data"))
        );
        // A hostile image's VOLUME is refused, never mounted outside.
        for bad in ["../../etc", "/a/../../b", "/"] {
            let image = ImageConfigView {
                volumes: vec![bad.into()],
                ..Default::default()
            };
            assert!(matches!(
                plan_volumes(&def(), Some(&image)),
                Err(PlanError::ImageVolume { .. })
            ));
        }
    }

    #[test]
    fn typed_volumes_and_propagation() {
        let mut d = def();
        d.volumes = vec![
            vol(VolumeSource::Named("scratch".into()), "/scratch"),
            Volume {
                propagation: Some(Propagation::Rshared),
                ..vol(VolumeSource::Bind("/srv/m".into()), "/m")
            },
        ];
        let mut c = ctx();
        c.volume_mounts.insert(
            "scratch".into(),
            super::super::VolumeMount {
                fstype: "tmpfs".into(),
                device: "tmpfs".into(),
                options: vec!["size=8m".into(), "mode=0700".into()],
                host_path: None,
            },
        );
        let m = plan_mounts(&d, None, &c).unwrap();
        let s = m
            .iter()
            .find(|m| m.destination() == Path::new("/scratch"))
            .unwrap();
        assert_eq!(s.typ().as_deref(), Some("tmpfs"));
        assert_eq!(
            s.options().clone().unwrap(),
            ["nosuid", "nodev", "size=8m", "mode=0700"]
        );
        let b = m
            .iter()
            .find(|m| m.destination() == Path::new("/m"))
            .unwrap();
        assert_eq!(b.options().clone().unwrap(), ["rbind", "rshared"]);
        assert_eq!(rootfs_propagation(&d), "rshared");
        assert_eq!(rootfs_propagation(&def()), "rprivate");
        // An ext4 volume in a user namespace is refused, not half-mounted.
        c.volume_mounts.get_mut("scratch").unwrap().fstype = "ext4".into();
        d.security.userns = crate::config::Userns::Auto;
        assert!(matches!(
            plan_mounts(&d, None, &c),
            Err(PlanError::VolumeInUserns { .. })
        ));
    }

    #[test]
    fn volumes_tmpfs_secrets() {
        let mut d = def();
        d.read_only = true;
        d.volumes = vec![
            Volume {
                source: VolumeSource::Named("data".into()),
                target: "/data".into(),
                read_only: false,
                propagation: None,
                chown: false,
            },
            Volume {
                source: VolumeSource::Bind("/srv/conf".into()),
                target: "/etc/hosts".into(),
                read_only: true,
                propagation: None,
                chown: false,
            },
        ];
        d.tmpfs = vec![Tmpfs {
            target: "/tmp".into(),
            size: Some(1 << 20),
            mode: None,
            options: vec![],
            uid: None,
            gid: None,
        }];
        d.secrets = vec![Secret {
            credential: "pw".into(),
            target: "/run/secrets/pw".into(),
            env: None,
            encrypted: false,
        }];
        assert!(matches!(
            plan_mounts(&d, None, &ctx()),
            Err(PlanError::NoCredentials { .. })
        ));
        let mut c = ctx();
        c.credentials_dir = Some("/run/credentials/berth@web.service".into());
        let m = plan_mounts(&d, None, &c).unwrap();
        assert_eq!(
            dests(&m)[7..],
            [
                "/var/tmp",
                "/run",
                "/etc/hostname",
                "/etc/resolv.conf",
                "/data",
                "/etc/hosts",
                "/tmp",
                "/run/secrets/pw"
            ]
        );
        assert_eq!(
            m[11].source().as_deref(),
            Some(Path::new("/var/lib/berth/volumes/data/_data"))
        );
        assert!(m[12]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string()));
        assert!(m[13]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=1048576".to_string()));
        assert_eq!(
            m[14].source().as_deref(),
            Some(Path::new("/run/credentials/berth@web.service/pw"))
        );
    }
}
