//! `[security] devices` and `group_add` in the spec: the host's device nodes
//! the caller found (in [`super::PlanContext::host_devices`]) become
//! `linux.devices` and allow rules of the device filter with the
//! definition's permissions; group names become gids from the image's
//! /etc/group.
//!
//! Pure: the host's /dev is read by the caller (`supervise::devices`).

use std::path::PathBuf;

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use super::{PlanContext, PlanError};
use crate::config::{Definition, GroupRef, Userns};

/// A device node found on the host for one of the definition's `devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// Its host path (under the entry's path when that is a directory).
    pub path: PathBuf,
    /// A block device (else a character device).
    pub block: bool,
    pub major: i64,
    pub minor: i64,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// `linux.devices` and their allow rules, in the definition's order. Each
/// node keeps the host's major, minor, mode and owner (as Docker's
/// `DeviceFromPath`); in a user namespace the owner is the namespace's
/// (host ids are not mapped there).
pub(super) fn plan_devices(
    def: &Definition,
    ctx: &PlanContext,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), PlanError> {
    let mut devices = Vec::new();
    let mut rules = Vec::new();
    let err = |reason: String| PlanError::Build {
        name: def.name.clone(),
        reason,
    };
    for req in &def.security.devices {
        let found = ctx
            .host_devices
            .get(&req.host)
            .ok_or_else(|| PlanError::NoDevice {
                name: def.name.clone(),
                device: req.host.clone(),
                definition: def.source_path.clone(),
            })?;
        for node in found {
            let rel = node.path.strip_prefix(&req.host).unwrap_or(&node.path);
            let path = if rel.as_os_str().is_empty() {
                req.container.clone()
            } else {
                req.container.join(rel)
            };
            let typ = if node.block {
                LinuxDeviceType::B
            } else {
                LinuxDeviceType::C
            };
            let mut b = LinuxDeviceBuilder::default()
                .path(path)
                .typ(typ)
                .major(node.major)
                .minor(node.minor)
                .file_mode(node.mode);
            if def.security.userns == Userns::Host {
                b = b.uid(node.uid).gid(node.gid);
            }
            devices.push(b.build().map_err(|e| err(e.to_string()))?);
            rules.push(
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(typ)
                    .major(node.major)
                    .minor(node.minor)
                    .access(req.access.clone())
                    .build()
                    .map_err(|e| err(e.to_string()))?,
            );
        }
    }
    Ok((devices, rules))
}

/// `group_add` as gids: numbers as written, names from the image's
/// /etc/group.
pub(super) fn plan_group_add(def: &Definition, ctx: &PlanContext) -> Result<Vec<u32>, PlanError> {
    def.security
        .group_add
        .iter()
        .map(|g| match g {
            GroupRef::Id(n) => Ok(*n),
            GroupRef::Name(n) => ctx
                .group
                .as_deref()
                .and_then(|text| super::user::group_gid(text, n))
                .ok_or_else(|| PlanError::Group {
                    name: def.name.clone(),
                    group: n.clone(),
                }),
        })
        .collect()
}
