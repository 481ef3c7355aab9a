//! Named volumes: `STORAGE/volumes/NAME/_data`, created on first use and
//! seeded with what the image holds at the volume's target (Docker's rule:
//! an empty new volume gets the image's files, with their owners and modes),
//! and their inventory for `berth volume ls|inspect|rm` (which definitions
//! use each, and whether it may be removed).
//!
//! The image's merged view is the kernel's: with several layers a child
//! process mounts them as a read-only overlay in a mount namespace of its own
//! (gone when it exits). The target is resolved with `openat2(RESOLVE_IN_ROOT)`
//! and the copy never follows a symlink, so an image cannot make berth read
//! or write outside the image and the new volume.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use super::SuperviseError;
use crate::config::{Definition, Volume, VolumeDefinition, VolumeSource};
use crate::sys::at;

/// `STORAGE/volumes/NAME/_data`.
pub fn volume_data(storage_root: &Path, name: &str) -> PathBuf {
    storage_root.join("volumes").join(name).join("_data")
}

/// Every bind source of `def` must exist before anything is set up, so a
/// typo in a path is one clear error naming the file, not a mount failure
/// deep inside the container's start.
pub fn check_bind_sources(def: &Definition) -> Result<(), SuperviseError> {
    for v in &def.volumes {
        let VolumeSource::Bind(path) = &v.source else {
            continue;
        };
        if let Err(e) = std::fs::metadata(path) {
            let reason = if e.kind() == std::io::ErrorKind::NotFound {
                "does not exist".to_string()
            } else {
                format!("cannot be read: {e}")
            };
            return Err(SuperviseError::BindSource {
                file: def.source_path.clone(),
                source_path: path.clone(),
                target: v.target.clone(),
                reason,
            });
        }
    }
    Ok(())
}

/// The file in an anonymous volume's directory naming its container and
/// target, so the next start finds it again and `berth volume ls` shows
/// whose it is.
const ANONYMOUS: &str = "anonymous";

/// (container, target) of an anonymous volume, from its `anonymous` file.
fn anonymous_owner(vol: &Path) -> Option<(String, PathBuf)> {
    let text = std::fs::read_to_string(vol.join(ANONYMOUS)).ok()?;
    let mut lines = text.lines();
    Some((lines.next()?.to_string(), PathBuf::from(lines.next()?)))
}

/// A fresh volume name as Podman gives an anonymous volume: 64 random hex
/// digits (containers/storage stringid.GenerateRandomID).
fn random_name() -> Result<String, SuperviseError> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| SuperviseError::io("read", "/dev/urandom", e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The named volume of each anonymous one of `planned` (a `[[volume]]`
/// without source, or the image's VOLUME): the one made for this container
/// and target at an earlier start, else a new one. Recorded in the volume's
/// own directory, so it survives restarts and reboots like any named volume
/// and is removed only by `berth volume rm`.
pub fn setup_anonymous_volumes(
    container: &str,
    planned: &[Volume],
    storage_root: &Path,
) -> Result<BTreeMap<PathBuf, String>, SuperviseError> {
    let mut out = BTreeMap::new();
    let wanted: Vec<&Path> = planned
        .iter()
        .filter(|v| v.source == VolumeSource::Anonymous)
        .map(|v| v.target.as_path())
        .collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    let dir = storage_root.join("volumes");
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if let Some((c, t)) = anonymous_owner(&e.path()) {
            if c == container && wanted.contains(&t.as_path()) {
                out.insert(t, e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    for target in wanted {
        if out.contains_key(target) {
            continue;
        }
        let name = random_name()?;
        let vol = dir.join(&name);
        std::fs::create_dir_all(&vol).map_err(|e| SuperviseError::io("create volume", &vol, e))?;
        std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| SuperviseError::io("chmod", &vol, e))?;
        let owner = format!("{container}\n{}\n", target.display());
        std::fs::write(vol.join(ANONYMOUS), owner)
            .map_err(|e| SuperviseError::io("write", vol.join(ANONYMOUS), e))?;
        out.insert(target.to_path_buf(), name);
    }
    Ok(out)
}

/// The volume file (`/etc/berth/volumes/NAME.toml`) of each named volume
/// in `names` that has one; a broken file stops the start, naming it.
pub fn load_volume_files(
    root: &Path,
    names: &[String],
) -> Result<BTreeMap<String, VolumeDefinition>, SuperviseError> {
    let mut out = BTreeMap::new();
    for n in names {
        match crate::config::load_volume(root, n) {
            Ok(Some(v)) => {
                out.insert(n.clone(), v);
            }
            Ok(None) => {}
            Err(d) => {
                return Err(SuperviseError::VolumeFile {
                    name: n.clone(),
                    diagnostics: d.to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// `chown = true` on a volume whose file mounts a filesystem: refused, for
/// the chown walks the volume's directory, which that filesystem covers.
pub fn check_chown_of_mounted(
    def: &Definition,
    planned: &[Volume],
    anonymous: &BTreeMap<PathBuf, String>,
    files: &BTreeMap<String, VolumeDefinition>,
) -> Result<(), SuperviseError> {
    for v in planned.iter().filter(|v| v.chown) {
        let name = match &v.source {
            VolumeSource::Named(n) => Some(n),
            VolumeSource::Anonymous => anonymous.get(&v.target),
            VolumeSource::Bind(_) => None,
        };
        let Some((name, f)) = name.and_then(|n| Some((n, files.get(n)?))) else {
            continue;
        };
        if let Some(ty) = &f.fstype {
            return Err(SuperviseError::VolumeMount {
                file: def.source_path.clone(),
                reason: format!(
                    "[[volume]] target \"{}\": chown = true, but volume \"{name}\" is a \"{ty}\" filesystem ({}): its owners are the filesystem's; remove chown",
                    v.target.display(),
                    f.source_path.display()
                ),
            });
        }
    }
    Ok(())
}

/// What the plan mounts for the volumes whose file gives a `type`; a
/// tmpfs takes the file's uid, gid and mode as its options. Any other type
/// is bound from `staging/NAME`, where the supervisor mounts it
/// (`volume_mount`): its options, which may hold a password, stay out of
/// the spec.
pub fn plan_volume_mounts(
    files: &BTreeMap<String, VolumeDefinition>,
    staging: &Path,
) -> BTreeMap<String, crate::spec::VolumeMount> {
    files
        .iter()
        .filter_map(|(n, f)| {
            let fstype = f.fstype.clone()?;
            let mut options = f.options.clone();
            if fstype == "tmpfs" {
                options.extend(f.uid.map(|u| format!("uid={u}")));
                options.extend(f.gid.map(|g| format!("gid={g}")));
                options.extend(f.mode.map(|m| format!("mode={m:o}")));
            }
            let device = f.device.clone().unwrap_or_else(|| fstype.clone());
            let host_path = super::volume_mount::host_mounted(&fstype).then(|| {
                options.clear();
                staging.join(n)
            });
            Some((
                n.clone(),
                crate::spec::VolumeMount {
                    fstype,
                    device,
                    options,
                    host_path,
                },
            ))
        })
        .collect()
}

/// Create every named volume in `named` (name, target) that does not exist
/// yet, seeded from `lowers` (lowest first) unless its file mounts a
/// filesystem there, then given its file's owner and mode. Must be called
/// while single-threaded.
pub fn setup_named_volumes(
    named: &[(String, PathBuf)],
    files: &BTreeMap<String, VolumeDefinition>,
    storage_root: &Path,
    lowers: &[PathBuf],
) -> Result<(), SuperviseError> {
    for (name, target) in named {
        let file = files.get(name);
        let data = volume_data(storage_root, name);
        let vol = data.parent().unwrap_or(storage_root).to_path_buf();
        remove_stale_seeds(&vol);
        if data.is_dir() {
            continue;
        }
        std::fs::create_dir_all(&vol).map_err(|e| SuperviseError::io("create volume", &vol, e))?;
        std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| SuperviseError::io("chmod", &vol, e))?;
        // Seeded aside and renamed, so a crash never leaves half a volume
        // that would count as existing.
        let tmp = vol.join(format!(".seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(|e| SuperviseError::io("create", &tmp, e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| SuperviseError::io("chmod", &tmp, e))?;
        if !file.is_some_and(|f| f.fstype.is_some()) {
            seed(lowers, target, &tmp, &vol)?;
        }
        if let Some(f) = file.filter(|f| f.fstype.is_none()) {
            apply_owner_and_mode(&tmp, f)?;
        }
        crate::fault::point("seed");
        if let Err(e) = std::fs::rename(&tmp, &data) {
            // Another container seeding the same new volume at the same
            // moment got there first (rename(2) refuses to replace a
            // non-empty directory): use its copy, drop ours.
            if data.is_dir() {
                let _ = std::fs::remove_dir_all(&tmp);
                continue;
            }
            return Err(SuperviseError::io("rename", &data, e));
        }
    }
    Ok(())
}

/// A volume file's `uid`, `gid` and `mode` on a new volume's directory
/// (Podman's `volume create --opt o=uid=…,gid=…` for the local driver).
fn apply_owner_and_mode(dir: &Path, f: &VolumeDefinition) -> Result<(), SuperviseError> {
    if f.uid.is_some() || f.gid.is_some() {
        std::os::unix::fs::lchown(dir, f.uid, f.gid)
            .map_err(|e| SuperviseError::io("chown", dir, e))?;
    }
    if let Some(m) = f.mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m))
            .map_err(|e| SuperviseError::io("chmod", dir, e))?;
    }
    Ok(())
}

/// `chown = true` (Podman's `:U`): the source of each such volume, and all
/// below it, given to the container's user. The walk goes by descriptors
/// (fchownat with AT_SYMLINK_NOFOLLOW in a directory opened O_NOFOLLOW), so
/// a symlink a container planted in a volume never leads it outside.
pub fn chown_volume_sources(
    planned: &[Volume],
    anonymous: &BTreeMap<PathBuf, String>,
    storage_root: &Path,
    uid: u32,
    gid: u32,
) -> Result<(), SuperviseError> {
    for v in planned.iter().filter(|v| v.chown) {
        let source = match &v.source {
            VolumeSource::Bind(p) => p.clone(),
            VolumeSource::Named(n) => volume_data(storage_root, n),
            VolumeSource::Anonymous => match anonymous.get(&v.target) {
                Some(n) => volume_data(storage_root, n),
                None => continue,
            },
        };
        let fd = at::openat2_cwd(&source, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| SuperviseError::io("open", &source, e))?;
        chown_tree(&fd, uid, gid, 0).map_err(|e| SuperviseError::io("chown", &source, e))?;
    }
    Ok(())
}

/// Deeper than any real tree; keeps a hostile one from exhausting the stack.
const MAX_CHOWN_DEPTH: usize = 512;

fn chown_tree(dir: &std::os::fd::OwnedFd, uid: u32, gid: u32, depth: usize) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    if depth > MAX_CHOWN_DEPTH {
        return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
    }
    // SAFETY: fchown on a descriptor we own.
    if unsafe { libc::fchown(dir.as_raw_fd(), uid, gid) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let list = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    for e in list {
        let e = e?;
        let name = std::ffi::CString::new(e.file_name().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        if e.file_type()?.is_dir() {
            // SAFETY: openat relative to our descriptor, a single name.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: a fresh descriptor openat returned.
            let sub = unsafe { OwnedFd::from_raw_fd(fd) };
            chown_tree(&sub, uid, gid, depth + 1)?;
        } else {
            // SAFETY: fchownat relative to our descriptor, a single name,
            // never following a symlink.
            let r = unsafe {
                libc::fchownat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    uid,
                    gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Seed copies and mount points left in `vol` by a supervisor that died
/// while seeding: their names carry its PID, and nothing else would ever
/// remove them. A live PID may be another start seeding right now.
fn remove_stale_seeds(vol: &Path) {
    let Ok(entries) = std::fs::read_dir(vol) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(".seed-")
            .or_else(|| name.strip_prefix(".mnt-"))
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // std's remove_dir_all does not follow symlinks (CVE-2022-21658
        // fixed); a .mnt- dir was a mount point only in a dead child's
        // private mount namespace, so here it is an empty dir.
        let _ = std::fs::remove_dir_all(e.path());
    }
}

fn seed(lowers: &[PathBuf], target: &Path, dest: &Path, vol: &Path) -> Result<(), SuperviseError> {
    // An image may hold one layer twice (two RUN steps that changed
    // nothing), which overlayfs refuses.
    match crate::runtime::topmost_distinct(lowers).as_slice() {
        [] => Ok(()),
        [only] => copy_from_root(only, target, dest),
        many => {
            let mnt = vol.join(format!(".mnt-{}", std::process::id()));
            std::fs::create_dir_all(&mnt).map_err(|e| SuperviseError::io("create", &mnt, e))?;
            let r = seed_in_child(many, target, dest, &mnt);
            let _ = std::fs::remove_dir(&mnt);
            r
        }
    }
}

/// Mount the layers read-only in a private mount namespace of a child and copy
/// from the merged view.
fn seed_in_child(
    lowers: &[PathBuf],
    target: &Path,
    dest: &Path,
    mnt: &Path,
) -> Result<(), SuperviseError> {
    // overlayfs lists lowers uppermost first.
    let data = format!(
        "lowerdir={}",
        lowers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    );
    // SAFETY: single-threaded caller; the child exits with _exit.
    match unsafe { fork() }.map_err(|e| SuperviseError::sys("fork", e))? {
        ForkResult::Child => {
            let ok = (|| -> Result<(), String> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(|e| e.to_string())?;
                nix::mount::mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .map_err(|e| e.to_string())?;
                nix::mount::mount(
                    Some("overlay"),
                    mnt,
                    Some("overlay"),
                    nix::mount::MsFlags::MS_RDONLY,
                    Some(data.as_str()),
                )
                .map_err(|e| format!("mount overlay: {e}"))?;
                copy_from_root(mnt, target, dest).map_err(|e| e.to_string())
            })();
            if let Err(e) = &ok {
                eprintln!("berth: seeding volume from the image: {e}");
            }
            // SAFETY: _exit skips the parent's atexit handlers.
            unsafe { libc::_exit(if ok.is_ok() { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            other => Err(SuperviseError::State {
                path: dest.to_path_buf(),
                reason: format!("seeding the volume from the image failed ({other:?})"),
            }),
        },
    }
}

/// Copy `root`/`target` (resolved inside `root`) into `dest`: contents,
/// plus the directory's own owner and mode. A missing target seeds nothing.
fn copy_from_root(root: &Path, target: &Path, dest: &Path) -> Result<(), SuperviseError> {
    use std::os::fd::{AsFd, AsRawFd};
    let root_fd = at::openat2_cwd(root, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| SuperviseError::io("open", root, e))?;
    let fd = match at::openat2(
        root_fd.as_fd(),
        target,
        libc::O_PATH | libc::O_DIRECTORY,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        // Nothing (or not a directory) at the target: an empty volume.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Ok(())
        }
        Err(e) => return Err(SuperviseError::io("open", root.join(target), e)),
    };
    let src = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let meta = std::fs::metadata(&src).map_err(|e| SuperviseError::io("stat", target, e))?;
    copy_dir_contents(&src, dest)?;
    std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| SuperviseError::io("chown", dest, e))?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| SuperviseError::io("chmod", dest, e))
}

/// Recursive copy that never follows symlinks (they are copied as links).
fn copy_dir_contents(src: &Path, dest: &Path) -> Result<(), SuperviseError> {
    let entries = std::fs::read_dir(src).map_err(|e| SuperviseError::io("read dir", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SuperviseError::io("read dir", src, e))?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let meta =
            std::fs::symlink_metadata(&from).map_err(|e| SuperviseError::io("stat", &from, e))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let link =
                std::fs::read_link(&from).map_err(|e| SuperviseError::io("readlink", &from, e))?;
            std::os::unix::fs::symlink(&link, &to)
                .map_err(|e| SuperviseError::io("symlink", &to, e))?;
        } else if ft.is_dir() {
            std::fs::create_dir(&to).map_err(|e| SuperviseError::io("create", &to, e))?;
            copy_dir_contents(&from, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(|e| SuperviseError::io("copy", &to, e))?;
        } else {
            // Devices, FIFOs and sockets are not seeded.
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| SuperviseError::io("chown", &to, e))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(|e| SuperviseError::io("chmod", &to, e))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- inventory

/// Why a volume cannot be shown or removed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume \"{name}\" does not exist (see `berth volume ls`)")]
    NoVolume { name: String },
    #[error("volume \"{name}\" is used by running container(s) {users} (stop them first, or pass --force)")]
    InUse { name: String, users: String },
    #[error("remove volume \"{path}\": {error}")]
    Remove {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// A named volume and who uses it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VolumeInfo {
    pub name: String,
    /// `STORAGE/volumes/NAME/_data`.
    pub path: PathBuf,
    /// Definitions that mount it.
    pub used_by: Vec<String>,
    /// Of those, the ones running now.
    pub running: Vec<String>,
}

/// Definitions mounting each named volume (volume → container names).
fn volume_users(root: &Path, storage_root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let dir = storage_root.join("volumes");
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if let Some((c, _)) = anonymous_owner(&e.path()) {
            let n = e.file_name().to_string_lossy().into_owned();
            map.entry(n).or_default().push(c);
        }
    }
    for d in crate::config::load_all(root).definitions {
        for v in &d.volumes {
            if let VolumeSource::Named(n) = &v.source {
                map.entry(n.clone()).or_default().push(d.name.clone());
            }
        }
    }
    map
}

/// Every named volume in `storage_root`, sorted, with the definitions under
/// `root` that use it and which of those `is_running`.
pub fn volumes(
    root: &Path,
    storage_root: &Path,
    is_running: &dyn Fn(&str) -> bool,
) -> Vec<VolumeInfo> {
    let users = volume_users(root, storage_root);
    let dir = storage_root.join("volumes");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_data").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let used_by = users.get(&n).cloned().unwrap_or_default();
            let running = used_by.iter().filter(|c| is_running(c)).cloned().collect();
            VolumeInfo {
                path: volume_data(storage_root, &n),
                name: n,
                used_by,
                running,
            }
        })
        .collect()
}

/// One volume, or [`VolumeError::NoVolume`].
pub fn volume(
    root: &Path,
    storage_root: &Path,
    is_running: &dyn Fn(&str) -> bool,
    name: &str,
) -> Result<VolumeInfo, VolumeError> {
    volumes(root, storage_root, is_running)
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| VolumeError::NoVolume {
            name: name.to_string(),
        })
}

/// Remove a named volume; refuses one a running container mounts unless `force`.
pub fn remove_volume(
    root: &Path,
    storage_root: &Path,
    is_running: &dyn Fn(&str) -> bool,
    name: &str,
    force: bool,
) -> Result<(), VolumeError> {
    let v = volume(root, storage_root, is_running, name)?;
    if !v.running.is_empty() && !force {
        return Err(VolumeError::InUse {
            name: name.to_string(),
            users: v
                .running
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let dir = storage_root.join("volumes").join(name);
    std::fs::remove_dir_all(&dir).map_err(|error| VolumeError::Remove { path: dir, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The single-layer path needs no privileges beyond owning the files.
    #[test]
    fn seeds_from_one_root_without_following_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("srv/data/sub")).unwrap();
        std::fs::write(root.join("srv/data/sub/f"), "hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("srv/data/link")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        let dest = tmp.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        copy_from_root(&root, Path::new("/srv/data"), &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/f")).unwrap(),
            "hello"
        );
        assert_eq!(
            std::fs::read_link(dest.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        // A symlink in the image resolves inside the image, never on the host.
        let dest2 = tmp.path().join("dest2");
        std::fs::create_dir(&dest2).unwrap();
        copy_from_root(&root, Path::new("/escape"), &dest2).unwrap();
        assert_eq!(std::fs::read_dir(&dest2).unwrap().count(), 0);
        // Nothing at the target: nothing seeded.
        copy_from_root(&root, Path::new("/nope"), &dest2).unwrap();
    }

    #[test]
    fn volumes_with_their_users() {
        let root = tempfile::tempdir().unwrap();
        let storage = tempfile::tempdir().unwrap();
        let defs = root.path().join("etc/berth/containers");
        std::fs::create_dir_all(&defs).unwrap();
        std::fs::write(
            defs.join("web.toml"),
            "rootfs = \"/srv/web\"\n[[volume]]\nsource = \"data\"\ntarget = \"/data\"\n",
        )
        .unwrap();
        for v in ["data", "orphan"] {
            std::fs::create_dir_all(storage.path().join("volumes").join(v).join("_data")).unwrap();
        }
        let (r, s) = (root.path(), storage.path());
        let stopped = |_: &str| false;
        let vols = volumes(r, s, &stopped);
        let names: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["data", "orphan"]);
        assert_eq!(vols[0].used_by, ["web"]);
        assert!(vols[0].running.is_empty() && vols[1].used_by.is_empty());
        assert_eq!(vols[0].path, s.join("volumes/data/_data"));
        // Running: refused without --force, naming the user.
        let web_runs = |c: &str| c == "web";
        let e = remove_volume(r, s, &web_runs, "data", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "volume \"data\" is used by running container(s) \"web\" (stop them first, or pass --force)"
        );
        assert!(s.join("volumes/data/_data").is_dir());
        // Not running: removable without --force.
        remove_volume(r, s, &stopped, "data", false).unwrap();
        assert!(!s.join("volumes/data").exists());
        let e = remove_volume(r, s, &stopped, "data", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "volume \"data\" does not exist (see `berth volume ls`)"
        );
        remove_volume(r, s, &web_runs, "orphan", true).unwrap();
        assert!(volumes(r, s, &stopped).is_empty());
    }
}
