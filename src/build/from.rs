//! `COPY --from=STAGE|IMAGE`: the source tree is a stage's (or an image's)
//! layers seen as one. One layer is its unpacked directory; several are a
//! read-only overlayfs of them (no upper dir), mounted in a mount namespace
//! of the build's own (unshared once, propagation private), so nothing of
//! it is seen on the host and it goes with the process at worst. The
//! copier then reads it through the same RESOLVE_BENEATH lookups as the
//! context.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Once;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::store::{Store, StoreError};

/// A stage's root, open; unmounted and removed when dropped.
pub struct FromRoot {
    pub fd: OwnedFd,
    mountpoint: Option<PathBuf>,
}

static UNSHARE: Once = Once::new();

fn private_mounts() -> Result<(), String> {
    let mut result = Ok(());
    UNSHARE.call_once(|| {
        result = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .and_then(|()| {
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
            })
            .map_err(|e| format!("cannot make a private mount namespace: {e}"));
    });
    result
}

impl FromRoot {
    /// The merged tree of the layers `diff_ids` (lowest first).
    pub fn open(store: &Store, diff_ids: &[String], n: usize) -> Result<FromRoot, String> {
        let dirs = diff_ids
            .iter()
            .map(|d| store.layer_path(d))
            .collect::<Result<Vec<PathBuf>, StoreError>>()
            .map_err(|e| e.to_string())?;
        let dirs = crate::runtime::topmost_distinct(&dirs);
        let open = |p: &Path| {
            crate::sys::at::openat2_cwd(p, libc::O_PATH | libc::O_DIRECTORY)
                .map_err(|e| format!("cannot open '{}': {e}", p.display()))
        };
        let mountpoint = store
            .root()
            .join(format!("tmp/build-{}-from-{n}", std::process::id()));
        match dirs.as_slice() {
            [one] => Ok(FromRoot {
                fd: open(one)?,
                mountpoint: None,
            }),
            _ => {
                let _ = std::fs::remove_dir_all(&mountpoint);
                std::fs::create_dir_all(&mountpoint)
                    .map_err(|e| format!("cannot create '{}': {e}", mountpoint.display()))?;
                if dirs.is_empty() {
                    // `FROM scratch` and nothing copied: an empty tree.
                    return Ok(FromRoot {
                        fd: open(&mountpoint)?,
                        mountpoint: Some(mountpoint),
                    });
                }
                private_mounts()?;
                let lower: Vec<String> =
                    dirs.iter().rev().map(|d| d.display().to_string()).collect();
                let opts = format!("lowerdir={}", lower.join(":"));
                mount(
                    Some("overlay"),
                    &mountpoint,
                    Some("overlay"),
                    MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
                    Some(opts.as_str()),
                )
                .map_err(|e| format!("cannot mount the stage's {} layers: {e}", dirs.len()))?;
                let root = FromRoot {
                    fd: open(&mountpoint)?,
                    mountpoint: Some(mountpoint),
                };
                Ok(root)
            }
        }
    }
}

impl Drop for FromRoot {
    fn drop(&mut self) {
        if let Some(m) = &self.mountpoint {
            let _ = umount2(m, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(m);
        }
    }
}
