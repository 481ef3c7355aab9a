//! `[security] devices` on the host: each entry's path stat'ed at start, a
//! directory walked for its device nodes (Docker's `getDevicesFromPath`),
//! so the plan gets their type, major, minor, mode and owner. An entry that
//! is missing or holds no device node stops the start with an error naming
//! the device and the definition.
//!
//! The paths are the administrator's (the definition's), read in the host's
//! /dev; nothing here touches the container's root.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::SuperviseError;
use crate::config::Definition;
use crate::spec::HostDevice;

/// Bounds of a directory walk: /dev/dri has a handful of nodes; a typo such
/// as "/dev" must not make thousands of them.
const MAX_DEPTH: usize = 4;
const MAX_NODES: usize = 256;

/// Step 3': the device nodes of each `devices` entry.
pub(super) fn find_host_devices(
    def: &Definition,
) -> Result<BTreeMap<PathBuf, Vec<HostDevice>>, SuperviseError> {
    let mut out = BTreeMap::new();
    for req in &def.security.devices {
        let err = |reason: String| SuperviseError::Device {
            name: def.name.clone(),
            device: req.host.clone(),
            definition: def.source_path.clone(),
            reason,
        };
        // The entry itself may be a symlink (/dev/dri/by-path/…): followed,
        // as Docker does; below a directory, links are skipped.
        let meta = std::fs::metadata(&req.host).map_err(|e| err(e.to_string()))?;
        let mut nodes = Vec::new();
        if meta.is_dir() {
            walk(&req.host, 0, &mut nodes).map_err(|e| err(e.to_string()))?;
            if nodes.is_empty() {
                return Err(err("a directory with no device node in it".into()));
            }
        } else {
            nodes.push(node(&req.host, &meta).ok_or_else(|| {
                err("not a device node (expected a character or block device, or a directory of them)".into())
            })?);
        }
        out.insert(req.host.clone(), nodes);
    }
    Ok(out)
}

fn node(path: &Path, meta: &std::fs::Metadata) -> Option<HostDevice> {
    let ft = meta.file_type();
    if !ft.is_char_device() && !ft.is_block_device() {
        return None;
    }
    let rdev = meta.rdev();
    Some(HostDevice {
        path: path.to_path_buf(),
        block: ft.is_block_device(),
        major: i64::from(nix::sys::stat::major(rdev) as u32),
        minor: i64::from(nix::sys::stat::minor(rdev) as u32),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<HostDevice>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let meta = std::fs::symlink_metadata(e.path())?;
        if meta.is_dir() && depth < MAX_DEPTH {
            walk(&e.path(), depth + 1, out)?;
        } else if let Some(n) = node(&e.path(), &meta) {
            if out.len() >= MAX_NODES {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_NODES} device nodes: name the devices one by one"
                )));
            }
            out.push(n);
        }
    }
    Ok(())
}
