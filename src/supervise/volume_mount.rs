//! A volume file's network or block filesystem (`type = "nfs"`, `"cifs"`,
//! `"ext4"`, … — every type but tmpfs), mounted by the supervisor for the
//! container's init to bind, never by the init itself.
//!
//! Why not in the container: the init runs in the container's network
//! namespace (only its own `lo` until a bridge is attached, after create), so
//! an NFS or SMB server is out of its reach; and it already sits in the
//! payload cgroup whose device filter refuses to open a block device the
//! container was not given. Docker's and Podman's local volume drivers mount
//! such a volume on the host for the same reasons (moby
//! `volume/local/local_unix.go` `mount`, Podman `libpod/volume_internal_linux.go`
//! `mount`), then bind it into the container.
//!
//! Unlike them, nothing ever appears in the host's mount table: just before
//! the clone the supervisor enters a mount namespace of its own (a slave copy
//! of the host's, so nothing propagates back), mounts a private tmpfs on
//! `RUN/volumes` and each filesystem below it, lets the runtime clone the
//! init (whose mount namespace is a copy of that one, holding the mounts it
//! binds), and returns to the host's namespace. The namespace it leaves dies
//! with its last user: when the container's mount namespace goes, so do the
//! filesystems, and a crash leaves nothing to unmount.
//!
//! What the kernel needs that `mount.nfs` and `mount.cifs` would have added
//! is added here: NFS's `addr=` and `clientaddr=` (the kernel refuses an NFS
//! mount without the server's address: "mount program didn't pass remote
//! address"), CIFS's `ip=` for a server given by name, and the user, password
//! and domain of a `credentials=FILE` (mount.cifs' format; the kernel ignores
//! the option). The password goes to mount(2) alone: not into the OCI spec,
//! the state files, the journal or the unit; the kernel does not show it in
//! mountinfo.

use std::fs::File;
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use super::SuperviseError;
use crate::config::VolumeDefinition;

/// One filesystem to mount, with everything the kernel needs in `data`.
pub struct HostMount {
    /// The volume's name: its mount point below the staging dir.
    pub name: String,
    /// The volume file, for errors.
    pub file: PathBuf,
    pub fstype: String,
    pub device: String,
    pub flags: MsFlags,
    /// The data string; may hold a password: never printed.
    data: String,
    /// The options as errors show them: passwords masked.
    shown: String,
}

impl std::fmt::Debug for HostMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMount")
            .field("name", &self.name)
            .field("fstype", &self.fstype)
            .field("device", &self.device)
            .field("options", &self.shown)
            .finish()
    }
}

/// Whether a volume file's filesystem is mounted by the supervisor (every
/// type but tmpfs, which the init mounts in the container's own namespaces,
/// also in a user namespace).
pub fn host_mounted(fstype: &str) -> bool {
    fstype != "tmpfs"
}

fn err(file: &Path, reason: String) -> SuperviseError {
    SuperviseError::VolumeMount {
        file: file.to_path_buf(),
        reason,
    }
}

/// Option keys whose value is a secret (cifs `pass`, `password`, and
/// `password2` of a key rotation).
fn is_secret(opt: &str) -> bool {
    let key = opt.split('=').next().unwrap_or("");
    matches!(key, "pass" | "password" | "password2")
}

fn mask(opts: &[String]) -> String {
    opts.iter()
        .map(|o| match o.split_once('=') {
            Some((k, _)) if is_secret(o) => format!("{k}=(hidden)"),
            _ => o.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn has_key(data: &[String], keys: &[&str]) -> bool {
    data.iter()
        .any(|o| keys.contains(&o.split('=').next().unwrap_or("")))
}

/// The host of an NFS `SERVER:/EXPORT` (IPv6 in brackets) or a CIFS
/// `//SERVER/SHARE`.
fn server_of(fstype: &str, device: &str) -> Option<String> {
    let host = if matches!(fstype, "nfs" | "nfs4") {
        device.split_once(":/")?.0
    } else if matches!(fstype, "cifs" | "smb3") {
        device.strip_prefix("//")?.split('/').next()?
    } else {
        return None;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| host.to_string())
}

/// An address literal as it is, else the first address the resolver gives.
fn resolve(host: &str) -> std::io::Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    (host, 0)
        .to_socket_addrs()?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
}

/// The local address the kernel would use to reach `server` (a UDP
/// socket connected, never sent on), for NFSv4's callback: what mount.nfs
/// passes as `clientaddr=`.
fn local_address_to(server: IpAddr) -> std::io::Result<IpAddr> {
    let any: IpAddr = if server.is_ipv4() {
        [0, 0, 0, 0].into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let sock = UdpSocket::bind((any, 0))?;
    sock.connect((server, 2049))?;
    Ok(sock.local_addr()?.ip())
}

/// A mount.cifs credentials file: `username=`, `password=`, `domain=`
/// lines (also `user=`, `pass=`, `dom=`), as cifs-utils `mount.cifs.c`
/// `open_cred_file` reads it. Returns the kernel's options.
pub fn parse_credentials(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = match key.trim() {
            "username" | "user" => "username",
            "password" | "pass" => "password",
            "domain" | "dom" | "workgroup" => "domain",
            _ => continue,
        };
        if value.contains('\0') {
            return Err(format!("its {key} holds a NUL byte"));
        }
        // The kernel splits options at commas; one doubled is a comma in
        // the value (cifs `smb3_fs_context_parse_monolithic`).
        let value = if key == "password" {
            value.replace(',', ",,")
        } else if value.contains(',') {
            return Err(format!("its {key} holds a comma"));
        } else {
            value.to_string()
        };
        out.retain(|o: &String| !o.starts_with(&format!("{key}=")));
        out.push(format!("{key}={value}"));
    }
    if !out.iter().any(|o| o.starts_with("username=")) {
        return Err("it has no username= line".into());
    }
    Ok(out)
}

/// Read a credentials file: root's, readable by no one else (it holds a
/// password; mount.cifs(8) asks the same of it).
fn read_credentials(path: &Path) -> Result<Vec<String>, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    if !path.is_absolute() {
        return Err(format!(
            "credentials file \"{shown}\" is not an absolute path"
        ));
    }
    let f = File::open(path).map_err(|e| format!("credentials file \"{shown}\": {e}"))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("credentials file \"{shown}\": {e}"))?;
    if meta.mode() & 0o077 != 0 || meta.uid() != 0 {
        return Err(format!(
            "credentials file \"{shown}\" holds a password but is not root's alone (mode {:04o}, owner {}): chown root and chmod 0600 it",
            meta.mode() & 0o7777,
            meta.uid()
        ));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(f, 64 * 1024), &mut text)
        .map_err(|e| format!("credentials file \"{shown}\": {e}"))?;
    parse_credentials(&text).map_err(|e| format!("credentials file \"{shown}\": {e}"))
}

/// Where the supervisor's own mount namespace holds the mounts:
/// `RUN/volumes/NAME` (an empty dir on the host).
pub fn staging_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("volumes")
}

/// What to mount for a volume file whose `type` is mounted here.
pub fn plan(v: &VolumeDefinition) -> Result<HostMount, SuperviseError> {
    let fstype = v.fstype.clone().unwrap_or_default();
    let device = v.device.clone().unwrap_or_else(|| fstype.clone());
    let parsed = crate::runtime::parse_mount_options(&v.options);
    let mut data = parsed.data;
    let mut shown = v.options.clone();
    if matches!(fstype.as_str(), "cifs" | "smb3") {
        let cred = |o: &String| o.starts_with("credentials=") || o.starts_with("cred=");
        if let Some(i) = data.iter().position(cred) {
            let opt = data.remove(i);
            let path = PathBuf::from(opt.split_once('=').map_or("", |(_, p)| p));
            let creds = read_credentials(&path)
                .map_err(|e| err(&v.source_path, format!("options: {e}")))?;
            data.extend(creds);
        }
    }
    let added = server_addresses(&fstype, &device, &data)
        .map_err(|e| err(&v.source_path, format!("device \"{device}\": {e}")))?;
    data.extend(added.iter().cloned());
    shown.extend(added);
    Ok(HostMount {
        name: v.name.clone(),
        file: v.source_path.clone(),
        fstype,
        device,
        flags: parsed.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        data: data.join(","),
        shown: mask(&shown),
    })
}

/// The options mount.nfs and mount.cifs would add about the server, unless
/// the volume file gives them: NFS `addr=` (always needed by the kernel)
/// and `clientaddr=` (NFSv4's callback address), CIFS `ip=` for a server
/// given by name (an address in the UNC the kernel reads itself).
fn server_addresses(fstype: &str, device: &str, data: &[String]) -> Result<Vec<String>, String> {
    let Some(host) = server_of(fstype, device) else {
        return Ok(Vec::new());
    };
    let resolved = || resolve(&host).map_err(|e| format!("cannot resolve server \"{host}\": {e}"));
    let mut out = Vec::new();
    if matches!(fstype, "nfs" | "nfs4") {
        let server = match data.iter().find_map(|o| o.strip_prefix("addr=")) {
            Some(a) => a.parse().ok(),
            None => {
                let ip = resolved()?;
                out.push(format!("addr={ip}"));
                Some(ip)
            }
        };
        if !has_key(data, &["clientaddr"]) {
            if let Some(local) = server.and_then(|s| local_address_to(s).ok()) {
                out.push(format!("clientaddr={local}"));
            }
        }
    } else if host.parse::<IpAddr>().is_err() && !has_key(data, &["ip", "addr"]) {
        out.push(format!("ip={}", resolved()?));
    }
    Ok(out)
}

/// Run `f` (the runtime's create) in a mount namespace of the supervisor's
/// own holding `mounts` below `staging`, then return to the host's. With
/// no mounts, just `f`.
pub fn with_mounts<T>(
    mounts: &[HostMount],
    staging: &Path,
    f: impl FnOnce() -> Result<T, SuperviseError>,
) -> Result<T, SuperviseError> {
    if mounts.is_empty() {
        return f();
    }
    let host = File::open("/proc/self/ns/mnt")
        .map_err(|e| SuperviseError::io("open", "/proc/self/ns/mnt", e))?;
    let cwd = File::open(".").ok();
    std::fs::create_dir_all(staging).map_err(|e| SuperviseError::io("create", staging, e))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| SuperviseError::sys("unshare the mount namespace for volume mounts", e))?;
    let result = mount_all(mounts, staging).and_then(|()| f());
    let back = nix::sched::setns(host.as_fd(), CloneFlags::CLONE_NEWNS)
        .map_err(|e| SuperviseError::sys("return to the host's mount namespace", e));
    if let Some(d) = cwd {
        let _ = nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(&d));
    }
    let r = result?;
    back?;
    Ok(r)
}

fn mount_all(mounts: &[HostMount], staging: &Path) -> Result<(), SuperviseError> {
    use nix::mount::mount;
    // A slave: the host's later mounts still show here, nothing made here
    // shows on the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| SuperviseError::sys("make the volume mount namespace a slave", e))?;
    mount(
        Some("tmpfs"),
        staging,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700,size=64k"),
    )
    .map_err(|e| SuperviseError::sys(format!("mount a tmpfs on \"{}\"", staging.display()), e))?;
    for m in mounts {
        let target = staging.join(&m.name);
        std::fs::create_dir(&target).map_err(|e| SuperviseError::io("create", &target, e))?;
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        mount(Some(m.device.as_str()), &target, Some(m.fstype.as_str()), m.flags, data).map_err(|e| {
            err(
                &m.file,
                format!(
                    "type \"{}\", device \"{}\", options \"{}\": mount failed: {e}; check them, and that the server or device is there",
                    m.fstype, m.device, m.shown
                ),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(fstype: &str, device: &str, options: &[&str]) -> VolumeDefinition {
        VolumeDefinition {
            name: "v".into(),
            source_path: "/etc/berth/volumes/v.toml".into(),
            fstype: Some(fstype.into()),
            device: Some(device.into()),
            options: options.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn nfs_gets_the_server_and_callback_addresses() {
        let m = plan(&vol("nfs", "127.0.0.1:/export", &["vers=4.2", "ro"])).unwrap();
        assert_eq!(m.data, "vers=4.2,addr=127.0.0.1,clientaddr=127.0.0.1");
        assert!(m
            .flags
            .contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV));
        let m = plan(&vol("nfs4", "[::1]:/", &["addr=::1", "clientaddr=::1"])).unwrap();
        assert_eq!(m.data, "addr=::1,clientaddr=::1");
        assert_eq!(server_of("nfs", "[::1]:/x").as_deref(), Some("::1"));
        // A CIFS server by name gets its address (the kernel resolves no
        // names); an address in the UNC needs nothing.
        let m = plan(&vol("cifs", "//localhost/share", &["vers=3.1.1"])).unwrap();
        assert!(m.data.starts_with("vers=3.1.1,ip="), "{}", m.data);
        let m = plan(&vol("cifs", "//127.0.0.1/share", &[])).unwrap();
        assert_eq!(m.data, "");
        let e = plan(&vol("nfs", "no-such-host.invalid:/x", &[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/berth/volumes/v.toml: device \"no-such-host.invalid:/x\": cannot resolve server \"no-such-host.invalid\""),
            "{e}"
        );
        assert_eq!(
            server_of("cifs", "//srv.example/share/sub").as_deref(),
            Some("srv.example")
        );
    }

    #[test]
    fn credentials_are_read_and_never_shown() {
        let creds =
            parse_credentials("username=alice\n  password=a,b=c\ndomain=WG\nother=1\n").unwrap();
        assert_eq!(creds, ["username=alice", "password=a,,b=c", "domain=WG"]);
        assert!(parse_credentials("password=x\n")
            .unwrap_err()
            .contains("no username"));
        let m = plan(&vol(
            "cifs",
            "//127.0.0.1/share",
            &["username=bob", "password=hunter2"],
        ))
        .unwrap();
        assert_eq!(m.data, "username=bob,password=hunter2");
        assert_eq!(m.shown, "username=bob,password=(hidden)");
        assert!(!format!("{m:?}").contains("hunter2"));
        let dir = tempfile::tempdir().unwrap();
        let cred = dir.path().join("cred");
        std::fs::write(&cred, "username=alice\npassword=pw\n").unwrap();
        std::fs::set_permissions(&cred, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let opt = format!("credentials={}", cred.display());
        let e = plan(&vol("cifs", "//127.0.0.1/s", &[&opt]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/berth/volumes/v.toml: options: credentials file"),
            "{e}"
        );
        assert!(e.contains("chmod 0600"), "{e}");
    }
}
