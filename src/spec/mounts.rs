//! The container's mount list, in the order the runtime applies it: the
//! kernel filesystems every container gets, tmpfs on scratch dirs of a
//! read-only root, the `/etc` files the supervisor writes, then volumes,
//! tmpfs and secrets from the definition (a later mount may sit on an
//! earlier one, so user mounts come last).
//!
//! Pure: paths come from the plan context.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use super::{PlanContext, PlanError};
use crate::config::{Definition, VolumeSource};

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

pub(super) fn plan_mounts(def: &Definition, ctx: &PlanContext) -> Result<Vec<Mount>, PlanError> {
    let mut mounts = default_mounts();
    if let Some(size) = def.resources.shm_size {
        set_shm_size(&mut mounts, size);
    }
    let user_targets: Vec<&Path> = def
        .volumes
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
    let idmap = def.security.userns == crate::config::Userns::Auto;
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
    for v in &def.volumes {
        let source = match &v.source {
            VolumeSource::Bind(p) => p.clone(),
            VolumeSource::Named(n) => ctx.storage_root.join("volumes").join(n).join("_data"),
        };
        let mut opts = vec!["rbind", "rprivate"];
        if v.read_only {
            opts.push("ro");
        }
        if idmap {
            opts.push("idmap");
        }
        mounts.push(bind(&v.target, &source, &opts));
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
        let m = plan_mounts(&def(), &ctx()).unwrap();
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

    #[test]
    fn volumes_tmpfs_secrets() {
        let mut d = def();
        d.read_only = true;
        d.volumes = vec![
            Volume {
                source: VolumeSource::Named("data".into()),
                target: "/data".into(),
                read_only: false,
            },
            Volume {
                source: VolumeSource::Bind("/srv/conf".into()),
                target: "/etc/hosts".into(),
                read_only: true,
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
            plan_mounts(&d, &ctx()),
            Err(PlanError::NoCredentials { .. })
        ));
        let mut c = ctx();
        c.credentials_dir = Some("/run/credentials/berth@web.service".into());
        let m = plan_mounts(&d, &c).unwrap();
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
