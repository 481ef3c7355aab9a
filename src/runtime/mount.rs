//! Mounts of the container's root filesystem, run by the init inside its own
//! mount namespace: propagation, the root (bind or overlay), the spec's mounts
//! in order, pivot_root, read-only and masked paths, the read-only root.
//!
//! Option parsing (`parse_mount_options`) is pure and unit-tested; everything
//! else here must only ever run in the container's mount namespace. Every
//! path in the container is resolved by the kernel inside the root
//! (`Syscall::resolve`, sys/at.rs) and mounted onto the descriptor it gave,
//! never joined as a string (CVE-2021-30465).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::sys::{at, Create, FileKind, Resolved, Root, Syscall};
use oci_spec::runtime::Mount;

use super::{RootfsSource, RuntimeError};

/// A mount's options split the way runc's `parseMountOptions` does.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Flags the options clear (`rw`, `suid`, …): they matter on remount.
    pub cleared: MsFlags,
    pub propagation: Vec<MsFlags>,
    /// Everything the kernel gets as the filesystem's data string.
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

/// Flags of the OCI/fstab option names: (name, clears?, flag).
const FLAG_TABLE: &[(&str, bool, MsFlags)] = &[
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("iversion", false, MsFlags::MS_I_VERSION),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("loud", true, MsFlags::MS_SILENT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("noiversion", true, MsFlags::MS_I_VERSION),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("silent", false, MsFlags::MS_SILENT),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

/// Propagation flags by name (mount(8), runc `mountPropagationMapping`).
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

pub fn parse_mount_options(options: &[String]) -> MountOptions {
    let mut out = MountOptions::default();
    for o in options {
        if let Some((_, clears, flag)) = FLAG_TABLE.iter().find(|(n, _, _)| *n == o) {
            if *clears {
                out.flags.remove(*flag);
                out.cleared.insert(*flag);
            } else {
                out.flags.insert(*flag);
                out.cleared.remove(*flag);
            }
        } else if let Some(p) = propagation_flag(o) {
            out.propagation.push(p);
        } else if o == "tmpcopyup" || o == "idmap" || o == "ridmap" {
            // runc extensions berth does not implement; the kernel must not see them.
        } else {
            out.data.push(o.clone());
        }
    }
    out
}

fn mnt(
    sys: &dyn Syscall,
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), RuntimeError> {
    sys.mount(source, target, fstype, flags, data).map_err(|e| {
        RuntimeError::sys(
            format!(
                "mount {} on '{}' (type {}, flags {:?}, data {:?})",
                source
                    .map(|s| format!("'{}'", s.display()))
                    .unwrap_or_else(|| "none".into()),
                target.display(),
                fstype.unwrap_or("none"),
                flags,
                data.unwrap_or("")
            ),
            e,
        )
    })
}

/// Flags of an existing mount that a bind remount must repeat: in a user
/// namespace the kernel refuses to clear locked nosuid/nodev/noexec/atime bits.
fn locked_flags(sys: &dyn Syscall, path: &Path) -> MsFlags {
    sys.mount_flags(path)
}

/// Step: make `/` (and everything below) slave or private in the new mount
/// namespace before mounting anything, so nothing propagates back to the host.
/// rslave is runc's default.
pub fn setup_propagation(sys: &dyn Syscall, propagation: Option<&str>) -> Result<(), RuntimeError> {
    let flags = match propagation {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => propagation_flag(p).ok_or_else(|| RuntimeError::InvalidSpec {
            id: String::new(),
            reason: format!("linux.rootfsPropagation '{p}' is not one of private, slave, shared, unbindable (with or without r)"),
        })?,
    };
    mnt(sys, None, Path::new("/"), None, flags, None)
}

/// Step: mount the root: a recursive bind of the directory onto itself (pivot_root
/// needs a mount point), or the overlay of lowers + upper + work.
pub fn setup_root(
    sys: &dyn Syscall,
    rootfs: &Path,
    source: &RootfsSource,
) -> Result<(), RuntimeError> {
    // pivot_root(2) refuses a shared parent of the new root, which a
    // `shared` rootfsPropagation makes; this is our own copy of that mount
    // (runc `rootfsParentMountPrivate`). The parent of the bind made below
    // is the mount holding `rootfs`: `rootfs` itself when it is a mount
    // point, as containerd's overlay is.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some(parent) = mount_point_holding(rootfs, &mountinfo) {
        mnt(sys, None, &parent, None, MsFlags::MS_PRIVATE, None)?;
    }
    match source {
        RootfsSource::Dir(_) => mnt(
            sys,
            Some(rootfs),
            rootfs,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        ),
        RootfsSource::Overlay {
            lowers,
            upper,
            work,
        } => {
            let data = render_overlay_data(lowers, upper, work);
            mnt(
                sys,
                Some(Path::new("overlay")),
                rootfs,
                Some("overlay"),
                MsFlags::empty(),
                Some(&data),
            )
        }
    }?;
    // pivot_root(2) refuses a shared new root; a private root also keeps the
    // container's later mounts from reaching a shared parent.
    mnt(sys, None, rootfs, None, MsFlags::MS_PRIVATE, None)
}

/// The mount point of the mount `path` is on (itself when it is a mount
/// point), from mountinfo's text.
fn mount_point_holding(path: &Path, mountinfo: &str) -> Option<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| path.starts_with(p))
        .max_by_key(|p| p.components().count())
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Step (after pivot_root): the asked rootfsPropagation applies to the new
/// root too, which had to be private for pivot_root (shared and unbindable
/// are visible to the container; slave of a private mount stays private).
pub fn apply_root_propagation(
    sys: &dyn Syscall,
    propagation: Option<&str>,
) -> Result<(), RuntimeError> {
    match propagation.and_then(propagation_flag) {
        Some(f) => mnt(sys, None, Path::new("/"), None, f, None),
        None => Ok(()),
    }
}

/// `lowers` (lowest first) with each directory only at its topmost place.
/// overlayfs refuses a layer named twice (ELOOP), and an image may hold the
/// same layer twice (two RUN steps that changed nothing). Dropping the
/// lower copy changes nothing: every path it names, whiteouts and opaque
/// dirs included, the upper copy names too, higher up.
pub fn topmost_distinct(lowers: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::with_capacity(lowers.len());
    for (i, l) in lowers.iter().enumerate() {
        if !lowers[i + 1..].contains(l) {
            out.push(l.clone());
        }
    }
    out
}

/// overlayfs lists lowerdirs top first; berth's `lowers` are lowest first.
pub fn render_overlay_data(lowers: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lower: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| escape_overlay_path(p))
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        escape_overlay_path(upper),
        escape_overlay_path(work)
    )
}

fn escape_overlay_path(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

/// What the init knows about its namespaces when mounting.
pub struct MountContext<'a> {
    pub sys: &'a dyn Syscall,
    /// The container's root (before pivot_root), opened once the root is
    /// mounted: every destination is resolved from it.
    pub root: &'a Root,
    pub new_net_ns: bool,
    pub new_cgroup_ns: bool,
    pub new_user_ns: bool,
    pub cgroup: Option<&'a Path>,
}

fn in_root_error(op: &'static str, path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::io(op, path, e)
}

/// Resolve `path` inside `root`, creating it as `create` says.
pub fn resolve_target(
    sys: &dyn Syscall,
    root: &Root,
    path: &Path,
    create: Create,
) -> Result<Resolved, RuntimeError> {
    sys.resolve(root, path, Some(create))
        .map_err(|e| in_root_error("resolve inside the container root", path, e))
}

/// After a mount onto `before`, resolve `path` again: it must now lead to
/// the new mount (else the mount did not land where it was meant to, and
/// the start stops), and what comes back is the new mount's root, which a
/// remount or a propagation change must name (the old descriptor still
/// holds the covered directory).
fn landed(
    sys: &dyn Syscall,
    root: &Root,
    path: &Path,
    before: &Resolved,
) -> Result<Resolved, RuntimeError> {
    let after = sys
        .resolve(root, path, None)
        .map_err(|e| in_root_error("resolve mount destination again", path, e))?;
    if !sys.mount_changed(before, &after) {
        return Err(in_root_error(
            "mount did not land on its destination (it changed during the mount)",
            path,
            std::io::Error::from_raw_os_error(libc::EXDEV),
        ));
    }
    Ok(after)
}

/// Step: the spec's mounts, in order, each under the root (never outside it).
pub fn setup_spec_mounts(ctx: &MountContext, mounts: &[Mount]) -> Result<(), RuntimeError> {
    for m in mounts {
        setup_one_mount(ctx, m)?;
    }
    Ok(())
}

fn setup_one_mount(ctx: &MountContext, m: &Mount) -> Result<(), RuntimeError> {
    let dest_in = m.destination();
    if !dest_in.is_absolute() {
        return Err(RuntimeError::InvalidSpec {
            id: String::new(),
            reason: format!("mount destination '{}' is not absolute", dest_in.display()),
        });
    }
    let opts = parse_mount_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let source = m.source().as_deref();

    let top = if opts.is_bind() || typ == "bind" {
        let source = source.ok_or_else(|| RuntimeError::InvalidSpec {
            id: String::new(),
            reason: format!("bind mount on '{}' has no source", dest_in.display()),
        })?;
        mount_bind(ctx, source, dest_in, typ, &opts)?
    } else {
        if typ.is_empty() {
            return Err(RuntimeError::InvalidSpec {
                id: String::new(),
                reason: format!(
                    "mount on '{}' has neither a type nor a bind option",
                    dest_in.display()
                ),
            });
        }
        mount_typed(ctx, source, dest_in, typ, &opts)?
    };
    for p in &opts.propagation {
        mnt(ctx.sys, None, &top.mount_path(), None, *p, None)?;
    }
    Ok(())
}

/// A bind mount (type `bind` or a `bind`/`rbind` option), then a remount
/// for its other flags; returns the new mount's root.
fn mount_bind(
    ctx: &MountContext,
    source: &Path,
    dest_in: &Path,
    typ: &str,
    opts: &MountOptions,
) -> Result<Resolved, RuntimeError> {
    let sys = ctx.sys;
    let kind = sys.file_kind(source).ok_or_else(|| {
        RuntimeError::io(
            "stat bind mount source",
            source,
            std::io::Error::from_raw_os_error(libc::ENOENT),
        )
    })?;
    let create = if kind == FileKind::Dir {
        Create::Dir
    } else {
        Create::File
    };
    let dest = resolve_target(sys, ctx.root, dest_in, create)?;
    let mut flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
    if typ == "bind" && !opts.is_bind() {
        flags |= MsFlags::MS_REC;
    }
    mnt(sys, Some(source), &dest.mount_path(), None, flags, None)?;
    let top = landed(sys, ctx.root, dest_in, &dest)?;
    // A bind ignores every other flag; they take effect only on a remount.
    let rest = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !rest.is_empty() {
        let target = top.mount_path();
        let keep = locked_flags(sys, &target) - opts.cleared;
        mnt(
            sys,
            None,
            &target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest | keep,
            None,
        )?;
    }
    // A remount changes one mount: an `rbind,ro` volume would keep its
    // submounts writable (runc needs `rro` for this). Read-only means
    // the whole tree here, as Docker's read-only binds on kernels with
    // mount_setattr.
    if flags.contains(MsFlags::MS_REC) && opts.flags.contains(MsFlags::MS_RDONLY) {
        sys.set_attrs_recursive(&top, at::MOUNT_ATTR_RDONLY)
            .map_err(|e| {
                in_root_error("make a read-only bind read-only recursively", dest_in, e)
            })?;
    }
    Ok(top)
}

/// A mount of a filesystem type (sysfs, cgroup, mqueue, tmpfs, proc, …) on
/// a directory; returns the new mount's root.
fn mount_typed(
    ctx: &MountContext,
    source: Option<&Path>,
    dest_in: &Path,
    typ: &str,
    opts: &MountOptions,
) -> Result<Resolved, RuntimeError> {
    let sys = ctx.sys;
    let dest = resolve_target(sys, ctx.root, dest_in, Create::Dir)?;
    let target = dest.mount_path();
    match typ {
        "sysfs" => mount_sysfs(ctx, &dest, opts)?,
        "cgroup" | "cgroup2" => mount_cgroup(ctx, dest_in, &dest, opts)?,
        "mqueue" => mount_mqueue(ctx, source, &target, opts)?,
        _ => {
            let data = opts.data_string();
            let src = source
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(typ));
            mnt(
                sys,
                Some(&src),
                &target,
                Some(typ),
                opts.flags - MsFlags::MS_REMOUNT,
                data.as_deref(),
            )?;
        }
    }
    landed(sys, ctx.root, dest_in, &dest)
}

/// mqueue: a new instance, or the host's in a user namespace that has no
/// IPC namespace of its own.
fn mount_mqueue(
    ctx: &MountContext,
    source: Option<&Path>,
    target: &Path,
    opts: &MountOptions,
) -> Result<(), RuntimeError> {
    let sys = ctx.sys;
    let r = mnt(
        sys,
        source.or(Some(Path::new("mqueue"))),
        target,
        Some("mqueue"),
        opts.flags,
        opts.data_string().as_deref(),
    );
    if let Err(e) = r {
        // Without an own IPC namespace in a user namespace the kernel
        // refuses a new mqueue instance; share the host's as runc does.
        if ctx.new_user_ns {
            mnt(
                sys,
                Some(Path::new("/dev/mqueue")),
                target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
        } else {
            return Err(e);
        }
    }
    Ok(())
}

/// sysfs. With an own network namespace: a fresh instance (it shows that
/// namespace's devices). Without one (`host` network) a fresh instance
/// too, forced read-only: an rbind of the host's /sys would bring its
/// writable submounts (debugfs, tracefs, securityfs, bpffs, configfs, …),
/// which a remount of the top mount leaves writable. Where the kernel
/// refuses a fresh one (a user namespace without its own netns), the host's
/// /sys is bound with every submount made read-only (mount_setattr
/// AT_RECURSIVE), as a detached copy attached onto the destination.
fn mount_sysfs(
    ctx: &MountContext,
    dest: &Resolved,
    opts: &MountOptions,
) -> Result<(), RuntimeError> {
    let sys = ctx.sys;
    let target = &dest.mount_path();
    let mut flags = opts.flags;
    if !ctx.new_net_ns {
        flags |= MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    }
    let fresh = mnt(
        sys,
        Some(Path::new("sysfs")),
        target,
        Some("sysfs"),
        flags,
        opts.data_string().as_deref(),
    );
    match fresh {
        Ok(()) => Ok(()),
        Err(RuntimeError::Sys { source, .. })
            if source == nix::errno::Errno::EPERM || source == nix::errno::Errno::EACCES =>
        {
            let host = sys
                .open_host(Path::new("/sys"))
                .map_err(|e| RuntimeError::io("open", "/sys", e))?;
            sys.bind_tree(
                &host,
                dest,
                true,
                at::MOUNT_ATTR_RDONLY
                    | at::MOUNT_ATTR_NOSUID
                    | at::MOUNT_ATTR_NODEV
                    | at::MOUNT_ATTR_NOEXEC,
            )
            .map_err(|e| {
                RuntimeError::io(
                    "bind the host's /sys read-only (recursively)",
                    &dest.path,
                    e,
                )
            })
        }
        Err(e) => Err(e),
    }
}

fn mount_cgroup(
    ctx: &MountContext,
    dest_in: &Path,
    dest: &Resolved,
    opts: &MountOptions,
) -> Result<(), RuntimeError> {
    let sys = ctx.sys;
    let target = dest.mount_path();
    if ctx.new_cgroup_ns {
        // In its own cgroup namespace a fresh cgroup2 mount shows the
        // container's cgroup as the root and nothing above it.
        match mnt(
            sys,
            Some(Path::new("cgroup2")),
            &target,
            Some("cgroup2"),
            opts.flags,
            None,
        ) {
            Ok(()) => return Ok(()),
            // The kernel refuses a second cgroup2 superblock in some setups
            // (EBUSY when /sys came in as an rbind of the host's, without an
            // own netns; EPERM in a user namespace). runc then binds the
            // container's cgroup directory instead (rootfs_linux.go,
            // mountCgroupV2), which shows the same tree.
            Err(RuntimeError::Sys { source, .. })
                if source == nix::errno::Errno::EBUSY || source == nix::errno::Errno::EPERM => {}
            Err(e) => return Err(e),
        }
    }
    // Without one, show only the container's own cgroup directory.
    let src = ctx.cgroup.unwrap_or(Path::new("/sys/fs/cgroup"));
    mnt(
        sys,
        Some(src),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    // Kept alive: its descriptor is what `/proc/self/fd/N` names.
    let landed = landed(sys, ctx.root, dest_in, dest)?;
    let top = landed.mount_path();
    let flags = opts.flags | locked_flags(sys, &top);
    mnt(
        sys,
        None,
        &top,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
        None,
    )
}

/// Step: pivot_root into the prepared root and detach the old one. Uses the
/// `pivot_root(".", ".")` trick of runc and crun: no put_old directory is
/// needed inside the root, and the old root is stacked under the new one until
/// it is lazily unmounted. Never chroot: a chroot can be escaped.
pub fn pivot_into(sys: &dyn Syscall, rootfs: &Path) -> Result<(), RuntimeError> {
    let old_root = sys
        .open_dir(Path::new("/"))
        .map_err(|e| RuntimeError::io("open", "/", e))?;
    sys.chdir(rootfs)
        .map_err(|e| RuntimeError::sys(format!("chdir '{}'", rootfs.display()), e))?;
    sys.pivot_root(Path::new("."), Path::new("."))
        .map_err(|e| RuntimeError::sys(format!("pivot_root to '{}'", rootfs.display()), e))?;
    sys.fchdir(&old_root)
        .map_err(|e| RuntimeError::sys("fchdir to the old root", e))?;
    // Slave first, so the unmount cannot propagate to the host's mounts.
    mnt(
        sys,
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )?;
    sys.umount2(Path::new("."), MntFlags::MNT_DETACH)
        .map_err(|e| RuntimeError::sys("detach the old root", e))?;
    sys.chdir(Path::new("/"))
        .map_err(|e| RuntimeError::sys("chdir /", e))?;
    Ok(())
}

/// Step (after pivot_root): bind each read-only path onto itself
/// read-only, submounts included: a detached recursive copy gets
/// MOUNT_ATTR_RDONLY on every mount (mount_setattr AT_RECURSIVE) before it
/// is attached onto the path's descriptor; a remount would only have made
/// the top mount read-only. Missing paths are skipped, as runc does.
pub fn apply_readonly_paths(
    sys: &dyn Syscall,
    root: &Root,
    paths: &[String],
) -> Result<(), RuntimeError> {
    for p in paths {
        let path = Path::new(p);
        let target = match sys.resolve(root, path, None) {
            Ok(t) => t,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(in_root_error("resolve read-only path", path, e)),
        };
        sys.bind_tree(&target, &target, true, at::MOUNT_ATTR_RDONLY)
            .map_err(|e| in_root_error("bind read-only path (recursively)", path, e))?;
    }
    Ok(())
}

/// Step (after pivot_root): hide each masked path: the container's
/// /dev/null over a file, an empty read-only tmpfs over a directory (runc
/// `maskPath`). The /dev/null used must be the real char device 1:3 — an
/// image's /dev/null symlinked to a procfs file would otherwise bind that
/// file, writable, over the path (CVE-2025-31133) — and it is bound by
/// descriptor onto the path's descriptor.
pub fn apply_masked_paths(
    sys: &dyn Syscall,
    root: &Root,
    paths: &[String],
) -> Result<(), RuntimeError> {
    let mut null: Option<Resolved> = None;
    for p in paths {
        let path = Path::new(p);
        let target = match sys.resolve(root, path, None) {
            Ok(t) => t,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(in_root_error("resolve masked path", path, e)),
        };
        if target.kind == FileKind::Dir {
            sys.mount_new_fs("tmpfs", &target, at::MOUNT_ATTR_RDONLY)
                .map_err(|e| in_root_error("mask directory with a read-only tmpfs", path, e))?;
        } else {
            if null.is_none() {
                null = Some(open_dev_null(sys, root)?);
            }
            let Some(n) = &null else { continue };
            sys.bind_tree(n, &target, false, 0)
                .map_err(|e| in_root_error("mask file with /dev/null", path, e))?;
        }
    }
    Ok(())
}

/// The container's /dev/null, checked to be the char device 1:3.
pub fn open_dev_null(sys: &dyn Syscall, root: &Root) -> Result<Resolved, RuntimeError> {
    let dev_null = Path::new("/dev/null");
    let n = sys
        .resolve(root, dev_null, None)
        .map_err(|e| in_root_error("open", dev_null, e))?;
    if n.kind != FileKind::Char(1, 3) {
        return Err(in_root_error(
            "refusing to mask with a /dev/null that is not the char device 1:3",
            dev_null,
            std::io::Error::from_raw_os_error(libc::ENODEV),
        ));
    }
    Ok(n)
}

/// Step (last of the mounts): `root.readonly` remounts `/` read-only.
pub fn remount_root_readonly(sys: &dyn Syscall) -> Result<(), RuntimeError> {
    let keep = locked_flags(sys, Path::new("/"));
    mnt(
        sys,
        None,
        Path::new("/"),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_holding_a_rootfs_may_be_the_rootfs_itself() {
        let info = "\
22 1 0:21 / / rw - overlay overlay rw
30 22 0:25 / /run rw shared:5 - tmpfs tmpfs rw
41 30 0:40 / /run/c/b\\040x/rootfs rw shared:9 - overlay overlay rw
";
        // containerd mounts the rootfs itself: its mount is the parent.
        assert_eq!(
            mount_point_holding(Path::new("/run/c/b x/rootfs"), info),
            Some(PathBuf::from("/run/c/b x/rootfs"))
        );
        // A plain directory: the mount it lives on.
        assert_eq!(
            mount_point_holding(Path::new("/run/c/other/rootfs"), info),
            Some(PathBuf::from("/run"))
        );
        assert_eq!(
            mount_point_holding(Path::new("/srv/rootfs"), info),
            Some(PathBuf::from("/"))
        );
        // A path prefix is not a parent: /run/c/b x/rootfs2 is on /run.
        assert_eq!(
            mount_point_holding(Path::new("/run/c/b x/rootfs2"), info),
            Some(PathBuf::from("/run"))
        );
    }

    fn opts(v: &[&str]) -> MountOptions {
        parse_mount_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn bind_options_parse_like_runc() {
        let o = opts(&["rbind", "ro", "nosuid", "rprivate"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(o.data.is_empty());
    }

    #[test]
    fn unknown_options_become_data_and_clearing_options_clear() {
        let o = opts(&["nosuid", "size=65536k", "mode=755", "ro", "rw", "suid"]);
        assert_eq!(o.flags, MsFlags::empty());
        assert_eq!(o.cleared, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(o.data_string().as_deref(), Some("size=65536k,mode=755"));
    }

    #[test]
    fn overlay_lowers_are_listed_top_first_and_escaped() {
        let d = render_overlay_data(
            &[PathBuf::from("/l/base"), PathBuf::from("/l/top:1")],
            Path::new("/u"),
            Path::new("/w"),
        );
        assert_eq!(d, "lowerdir=/l/top\\:1:/l/base,upperdir=/u,workdir=/w");
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            topmost_distinct(&[p("/a"), p("/e"), p("/b"), p("/e"), p("/c")]),
            [p("/a"), p("/b"), p("/e"), p("/c")]
        );
    }

    use crate::sys::{Call, RecordingSyscall};

    fn mount_call(
        source: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: MsFlags,
    ) -> Call {
        Call::Mount {
            source: source.map(PathBuf::from),
            target: PathBuf::from(target),
            fstype: fstype.map(str::to_string),
            flags,
            data: None,
        }
    }

    /// Order test (recording double): each read-only path is bound onto
    /// itself as a recursive detached copy made read-only on every mount;
    /// masked files get the container's /dev/null (checked to be 1:3),
    /// masked dirs a fresh read-only tmpfs; missing paths are skipped. The
    /// kernel's side is checked by tests/runtime_run.rs and tests/escapes.
    #[test]
    fn readonly_and_masked_paths_in_order() {
        let sys = RecordingSyscall::with_paths(&[
            ("/proc/sys", FileKind::Dir),
            ("/proc/kcore", FileKind::Other),
            ("/proc/acpi", FileKind::Dir),
            ("/dev/null", FileKind::Char(1, 3)),
        ]);
        let root = sys.open_root(Path::new("/")).unwrap();
        let paths = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        apply_readonly_paths(&sys, &root, &paths(&["/proc/sys", "/proc/missing"])).unwrap();
        apply_masked_paths(&sys, &root, &paths(&["/proc/kcore", "/proc/acpi", "/nope"])).unwrap();
        assert_eq!(
            sys.take(),
            vec![
                Call::BindTree {
                    source: PathBuf::from("/proc/sys"),
                    target: PathBuf::from("/proc/sys"),
                    recursive: true,
                    attrs: at::MOUNT_ATTR_RDONLY,
                },
                Call::BindTree {
                    source: PathBuf::from("/dev/null"),
                    target: PathBuf::from("/proc/kcore"),
                    recursive: false,
                    attrs: 0,
                },
                Call::NewFs {
                    fstype: "tmpfs".into(),
                    target: PathBuf::from("/proc/acpi"),
                    attrs: at::MOUNT_ATTR_RDONLY,
                },
            ]
        );
    }

    /// A /dev/null that is not the char device 1:3 (a regular file, or a
    /// symlink resolved to a procfs file) is refused for masking.
    #[test]
    fn masking_refuses_a_fake_dev_null() {
        for fake in [FileKind::Other, FileKind::Char(1, 5), FileKind::Dir] {
            let sys = RecordingSyscall::with_paths(&[
                ("/proc/kcore", FileKind::Other),
                ("/dev/null", fake),
            ]);
            let root = sys.open_root(Path::new("/")).unwrap();
            let e = apply_masked_paths(&sys, &root, &["/proc/kcore".to_string()]).unwrap_err();
            assert!(e.to_string().contains("1:3"), "{e}");
            assert!(sys.take().is_empty());
        }
    }

    /// Order test: pivot_root(".", "."), then the old root is made slave
    /// before it is detached, so the unmount cannot reach the host.
    #[test]
    fn pivot_makes_the_old_root_slave_before_detaching_it() {
        let sys = RecordingSyscall::default();
        pivot_into(&sys, Path::new("/r")).unwrap();
        assert_eq!(
            sys.take(),
            vec![
                Call::Chdir(PathBuf::from("/r")),
                Call::PivotRoot {
                    new_root: PathBuf::from("."),
                    put_old: PathBuf::from(".")
                },
                Call::Fchdir,
                mount_call(None, ".", None, MsFlags::MS_SLAVE | MsFlags::MS_REC),
                Call::Umount2 {
                    target: PathBuf::from("."),
                    flags: MntFlags::MNT_DETACH
                },
                Call::Chdir(PathBuf::from("/")),
            ]
        );
    }

    /// Order test: a read-only bind is a bind first (which ignores flags),
    /// then a remount with the asked flags plus the flags locked on the
    /// source, then (an rbind) read-only on every submount, then its
    /// propagation.
    #[test]
    fn readonly_bind_is_bound_then_remounted() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("data");
        let mut sys = RecordingSyscall::with_paths(&[("/srv/vol", FileKind::Dir)]);
        let root = sys.open_root(tmp.path()).unwrap();
        sys.flags.insert(dest.clone(), MsFlags::MS_NODEV);
        let m: Mount = serde_json::from_value(serde_json::json!({
            "destination": "/data", "type": "bind", "source": "/srv/vol",
            "options": ["rbind", "ro", "nosuid", "rprivate"]
        }))
        .unwrap();
        let ctx = MountContext {
            sys: &sys,
            root: &root,
            new_net_ns: true,
            new_cgroup_ns: true,
            new_user_ns: false,
            cgroup: None,
        };
        setup_spec_mounts(&ctx, &[m]).unwrap();
        let d = dest.to_str().unwrap();
        assert_eq!(
            sys.take(),
            vec![
                mount_call(
                    Some("/srv/vol"),
                    d,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC
                ),
                mount_call(
                    None,
                    d,
                    None,
                    MsFlags::MS_BIND
                        | MsFlags::MS_REMOUNT
                        | MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                ),
                Call::SetAttrsRecursive {
                    target: dest.clone(),
                    attrs: at::MOUNT_ATTR_RDONLY
                },
                mount_call(None, d, None, MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            ]
        );
    }

    #[test]
    fn mountinfo_paths_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/x\\134y"), "/x\\y");
    }

    #[test]
    fn every_propagation_name_maps() {
        for n in [
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
        ] {
            let f = propagation_flag(n).unwrap();
            assert_eq!(f.contains(MsFlags::MS_REC), n.starts_with('r'), "{n}");
        }
        assert!(propagation_flag("bogus").is_none());
    }
}
