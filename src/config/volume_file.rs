//! Volume files: `/etc/berth/volumes/NAME.toml` (then `/run`, then
//! `/usr/lib`, the first found wins, as for networks) say how a named volume
//! is made: a filesystem to mount (`type`, `device`, `options`, as Podman's
//! `volume create --opt type=… --opt device=… --opt o=…`) and the owner and
//! mode of a new volume's directory (`uid`, `gid`, `mode`).
//!
//! Pure but for reading the file: the supervisor acts on the result.

use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, Diagnostics};
use super::load::{read_source, SourceFile};
use super::raw::{self, RawVolumeDef, Sp, StrOrInt};
use super::values;

/// Where volume files are looked for, first found wins.
pub const VOLUME_DIRS: [&str; 3] = [
    "etc/berth/volumes",
    "run/berth/volumes",
    "usr/lib/berth/volumes",
];

/// A validated volume file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeDefinition {
    pub name: String,
    pub source_path: PathBuf,
    /// `type`: a filesystem (`tmpfs`, `nfs`, `cifs`, `ext4`, …) mounted at
    /// the volume's target in each container using it; `None`: a plain
    /// directory under the store.
    pub fstype: Option<String>,
    /// `device`: what is mounted (`/dev/vdb1`, `server:/export`,
    /// `//server/share`); `tmpfs` for a tmpfs when unset.
    pub device: Option<String>,
    /// `options`: mount options, one per element (`size=64m`, `addr=…`).
    pub options: Vec<String>,
    /// Owner and permission bits of a new plain volume's directory (for a
    /// tmpfs: its `uid=`, `gid=`, `mode=` options).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
}

/// Load the file of volume `name` under `root`; `Ok(None)` when there is
/// none (or it is empty: nothing to say).
pub fn load_volume(root: &Path, name: &str) -> Result<Option<VolumeDefinition>, Diagnostics> {
    let Some(path) = VOLUME_DIRS
        .iter()
        .map(|d| root.join(d).join(format!("{name}.toml")))
        .find(|p| p.symlink_metadata().is_ok())
    else {
        return Ok(None);
    };
    let file = read_source(&path).map_err(|d| Diagnostics(vec![d]))?;
    if file.text.trim().is_empty() {
        return Ok(None);
    }
    let (raw, errs) = raw::parse_volume(&file.text, 0);
    if !errs.is_empty() {
        return Err(Diagnostics(
            errs.into_iter()
                .map(|e| match e.span {
                    Some(s) => Diagnostic::at(&file.path, &file.text, s, &e.key, e.message),
                    None => Diagnostic::file(&file.path, &e.key, e.message),
                })
                .collect(),
        ));
    }
    // A password in the file is fine only where no one else can read it.
    let private = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&path).is_ok_and(|m| m.mode() & 0o077 == 0)
    };
    validate_volume_def(name, raw, &file, private).map(Some)
}

/// Every volume file under `root`, and the errors of the broken ones
/// (`berth check`).
pub fn load_all_volumes(root: &Path) -> (Vec<VolumeDefinition>, Vec<(String, Diagnostics)>) {
    let mut names = std::collections::BTreeSet::new();
    for d in VOLUME_DIRS {
        for e in std::fs::read_dir(root.join(d))
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = n.strip_suffix(".toml") {
                names.insert(stem.to_string());
            }
        }
    }
    let (mut ok, mut errors) = (Vec::new(), Vec::new());
    for name in names {
        if let Err(e) = values::validate_name(&name) {
            let path = root.join(VOLUME_DIRS[0]).join(format!("{name}.toml"));
            let msg = e.replacen("invalid name", "invalid volume name", 1);
            errors.push((name, Diagnostics(vec![Diagnostic::file(&path, "", msg)])));
            continue;
        }
        match load_volume(root, &name) {
            Ok(Some(v)) => ok.push(v),
            Ok(None) => {}
            Err(d) => errors.push((name, d)),
        }
    }
    (ok, errors)
}

/// Filesystem types a volume file may name: the ones Podman's local driver
/// documents (`volume create --opt type=`) and the block filesystems a
/// device holds. A typo is an error here, not a mount failure at start.
const FSTYPES: &[&str] = &[
    "tmpfs", "nfs", "nfs4", "cifs", "smb3", "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat",
    "exfat", "f2fs", "bind",
];

fn validate_volume_def(
    name: &str,
    raw: RawVolumeDef,
    file: &SourceFile,
    private: bool,
) -> Result<VolumeDefinition, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut err = |at: &std::ops::Range<usize>, key: &str, msg: String| {
        diags.push(Diagnostic::at(&file.path, &file.text, at.clone(), key, msg));
    };
    let fstype = raw.fstype.as_ref().and_then(|t| {
        if t.value == "bind" {
            err(&t.span, "type", "invalid type \"bind\": a bind mount is a [[volume]] with an absolute source in the definition".into());
            None
        } else if FSTYPES.contains(&t.value.as_str()) {
            Some(t.value.clone())
        } else {
            err(
                &t.span,
                "type",
                format!(
                    "unknown filesystem type \"{}\": expected {}",
                    t.value.escape_debug(),
                    values::one_of(&FSTYPES[..FSTYPES.len() - 1])
                ),
            );
            None
        }
    });
    let device = raw
        .device
        .as_ref()
        .and_then(|d| check_device(d, fstype.as_deref(), &mut err));
    if let (Some(t), Some(ty), None) = (&raw.fstype, &fstype, &raw.device) {
        if ty != "tmpfs" {
            err(
                &t.span,
                "device",
                format!("missing key \"device\": type \"{ty}\" needs what to mount (a block device path, server:/export or //server/share)"),
            );
        }
    }
    if let (Some(d), None) = (&raw.device, &raw.fstype) {
        err(
            &d.span,
            "device",
            "\"device\" without \"type\": expected a filesystem type too".into(),
        );
    }
    let options = check_options(&raw, &mut err);
    check_secrets(&raw, fstype.as_deref(), private, &mut err);
    if let (Some(o), None) = (&raw.options, &raw.fstype) {
        err(
            &o.span,
            "options",
            "\"options\" without \"type\": mount options are for a filesystem".into(),
        );
    }
    let id = |v: &Option<Sp<i64>>,
              key: &str,
              err: &mut dyn FnMut(&std::ops::Range<usize>, &str, String)| {
        v.as_ref().and_then(|v| match u32::try_from(v.value) {
            Ok(n) if n != u32::MAX => Some(n),
            _ => {
                err(
                    &v.span,
                    key,
                    format!("invalid {key} {}: expected 0 to 4294967294", v.value),
                );
                None
            }
        })
    };
    let uid = id(&raw.uid, "uid", &mut err);
    let gid = id(&raw.gid, "gid", &mut err);
    let mode = raw.mode.as_ref().and_then(|m| match &m.value {
        StrOrInt::Str(s) => values::parse_mode(s)
            .map_err(|e| {
                err(
                    &m.span,
                    "mode",
                    format!("invalid mode \"{}\": {e}", s.escape_debug()),
                )
            })
            .ok(),
        StrOrInt::Int(n) => {
            err(
                &m.span,
                "mode",
                format!("invalid mode {n}: write it as an octal string, such as \"0750\""),
            );
            None
        }
    });
    owners_only_for_plain_or_tmpfs(&raw, fstype.as_deref(), file, &mut diags);
    if !diags.is_empty() {
        diags.sort();
        return Err(diags);
    }
    Ok(VolumeDefinition {
        name: name.to_string(),
        source_path: file.path.clone(),
        fstype,
        device,
        options,
        uid,
        gid,
        mode,
    })
}

/// uid/gid/mode make a new directory or a tmpfs; a mounted filesystem
/// has owners of its own, never silently changed.
fn owners_only_for_plain_or_tmpfs(
    raw: &RawVolumeDef,
    fstype: Option<&str>,
    file: &SourceFile,
    diags: &mut Diagnostics,
) {
    let Some(ty) = fstype.filter(|t| *t != "tmpfs") else {
        return;
    };
    let spans = [
        ("uid", raw.uid.as_ref().map(|v| v.span.clone())),
        ("gid", raw.gid.as_ref().map(|v| v.span.clone())),
        ("mode", raw.mode.as_ref().map(|v| v.span.clone())),
    ];
    let hint = if matches!(ty, "cifs" | "smb3") {
        " (for a CIFS share: options uid=, gid=, file_mode=, dir_mode=)"
    } else {
        ""
    };
    for (key, span) in spans {
        if let Some(span) = span {
            diags.push(Diagnostic::at(
                &file.path,
                &file.text,
                span,
                key,
                format!("\"{key}\" is for a plain or tmpfs volume: a \"{ty}\" filesystem keeps the owners and modes it has{hint}"),
            ));
        }
    }
}

/// `options`: one mount option per element, no commas (they would smuggle
/// more options past this check).
fn check_options(
    raw: &RawVolumeDef,
    err: &mut dyn FnMut(&std::ops::Range<usize>, &str, String),
) -> Vec<String> {
    let mut options = Vec::new();
    for o in raw.options.iter().flat_map(|o| o.value.iter()) {
        if matches!(o.value.as_str(), "bind" | "rbind" | "remount" | "move") {
            // mount(2) would bind or move the device path instead of
            // mounting the filesystem.
            err(
                &o.span,
                "options",
                format!(
                    "invalid option \"{}\": a volume file mounts a filesystem; a bind mount is a [[volume]] with an absolute source in the definition",
                    o.value
                ),
            );
        } else if o.value.is_empty() || o.value.contains([',', '\0', '\n']) {
            err(
                &o.span,
                "options",
                format!(
                    "invalid option \"{}\": expected one option per element, without commas",
                    o.value.escape_debug()
                ),
            );
        } else {
            options.push(o.value.clone());
        }
    }
    options
}

/// CIFS credentials: `credentials=` names an absolute file (read by the
/// supervisor, as mount.cifs reads it), and a password written in the
/// volume file itself is refused while others can read the file (it would
/// be as readable as the file).
fn check_secrets(
    raw: &RawVolumeDef,
    fstype: Option<&str>,
    private: bool,
    err: &mut dyn FnMut(&std::ops::Range<usize>, &str, String),
) {
    let cifs = matches!(fstype, Some("cifs" | "smb3"));
    for o in raw.options.iter().flat_map(|o| o.value.iter()) {
        let (key, value) = o.value.split_once('=').unwrap_or((o.value.as_str(), ""));
        match key {
            "credentials" | "cred" if !cifs => err(
                &o.span,
                "options",
                format!("invalid option \"{key}=\": credentials files are for type \"cifs\" or \"smb3\""),
            ),
            "credentials" | "cred" if !value.starts_with('/') => err(
                &o.span,
                "options",
                format!(
                    "invalid option \"{}\": expected credentials=/ABSOLUTE/PATH",
                    o.value.escape_debug()
                ),
            ),
            "pass" | "password" | "password2" if !private => err(
                &o.span,
                "options",
                format!("\"{key}=\" in a volume file other users can read: put the user and password in a credentials file (credentials=/etc/berth/volumes/NAME.cred, mode 0600), or chmod 0600 this file"),
            ),
            _ => {}
        }
    }
}

/// `device`: an absolute path for a block filesystem, `HOST:/PATH` for NFS,
/// `//HOST/SHARE` for CIFS, anything without NUL for tmpfs.
fn check_device(
    d: &Sp<String>,
    fstype: Option<&str>,
    err: &mut dyn FnMut(&std::ops::Range<usize>, &str, String),
) -> Option<String> {
    let v = d.value.as_str();
    let ok = !v.is_empty()
        && !v.contains(['\0', '\n'])
        && match fstype {
            Some("nfs" | "nfs4") => v.contains(":/"),
            Some("cifs" | "smb3") => v.starts_with("//"),
            Some("tmpfs") | None => true,
            Some(_) => super::validate::check_abs_path(v).is_ok(),
        };
    if ok {
        return Some(v.to_string());
    }
    let expected = match fstype {
        Some("nfs" | "nfs4") => "SERVER:/EXPORT",
        Some("cifs" | "smb3") => "//SERVER/SHARE",
        _ => "an absolute path such as /dev/vdb1",
    };
    err(
        &d.span,
        "device",
        format!(
            "invalid device \"{}\": expected {expected}",
            v.escape_debug()
        ),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<VolumeDefinition, Vec<String>> {
        let file = SourceFile {
            path: PathBuf::from("/etc/berth/volumes/v.toml"),
            text: text.to_string(),
        };
        let (raw, errs) = raw::parse_volume(text, 0);
        assert!(errs.is_empty(), "{errs:?}");
        validate_volume_def("v", raw, &file, false)
            .map_err(|d| d.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn good_files() {
        let v = check("type = \"tmpfs\"\noptions = [\"size=8m\"]\nuid = 100\nmode = \"0700\"\n")
            .unwrap();
        assert_eq!(v.fstype.as_deref(), Some("tmpfs"));
        assert_eq!(v.options, ["size=8m"]);
        assert_eq!((v.uid, v.gid, v.mode), (Some(100), None, Some(0o700)));
        let v = check("type = \"nfs\"\ndevice = \"srv:/export\"\noptions = [\"addr=192.0.2.1\"]\n")
            .unwrap();
        assert_eq!(v.device.as_deref(), Some("srv:/export"));
        assert!(check("uid = 1000\ngid = 1000\n").is_ok());
    }

    #[test]
    fn bad_files_name_line_and_column() {
        let e = check("type = \"ext5\"\n").unwrap_err().join("\n");
        assert!(
            e.contains("v.toml:1:8: type: unknown filesystem type \"ext5\""),
            "{e}"
        );
        let e = check("type = \"ext4\"\ndevice = \"vdb1\"\n")
            .unwrap_err()
            .join("\n");
        assert!(
            e.contains("2:10: device: invalid device \"vdb1\": expected an absolute path"),
            "{e}"
        );
        let e = check("type = \"ext4\"\n").unwrap_err().join("\n");
        assert!(e.contains("missing key \"device\""), "{e}");
        let e = check("type = \"tmpfs\"\noptions = [\"size=1m,exec\"]\n")
            .unwrap_err()
            .join("\n");
        assert!(e.contains("2:12: options: invalid option"), "{e}");
        let e =
            check("type = \"cifs\"\ndevice = \"//s/x\"\noptions = [\"user=a\", \"password=b\"]\n")
                .unwrap_err()
                .join("\n");
        assert!(
            e.contains("3:22: options: \"password=\" in a volume file other users can read"),
            "{e}"
        );
        let e = check("type = \"cifs\"\ndevice = \"//s/x\"\noptions = [\"credentials=x.cred\"]\n")
            .unwrap_err()
            .join("\n");
        assert!(e.contains("3:12: options: invalid option \"credentials=x.cred\": expected credentials=/ABSOLUTE/PATH"), "{e}");
        let e = check("type = \"nfs\"\ndevice = \"s:/x\"\noptions = [\"credentials=/c\"]\n")
            .unwrap_err()
            .join("\n");
        assert!(e.contains("credentials files are for type \"cifs\""), "{e}");
        assert!(
            check("type = \"cifs\"\ndevice = \"//s/x\"\noptions = [\"credentials=/etc/c\"]\n")
                .is_ok()
        );
        let e = check("type = \"ext4\"\ndevice = \"/dev/vdb\"\noptions = [\"rbind\"]\n")
            .unwrap_err()
            .join("\n");
        assert!(
            e.contains(
                "3:12: options: invalid option \"rbind\": a volume file mounts a filesystem"
            ),
            "{e}"
        );
        let e = check("type = \"nfs\"\ndevice = \"s:/x\"\nuid = 1000\n")
            .unwrap_err()
            .join("\n");
        assert!(
            e.contains("3:7: uid: \"uid\" is for a plain or tmpfs volume"),
            "{e}"
        );
        let e = check("uid = -1\nmode = 755\n").unwrap_err().join("\n");
        assert!(e.contains("1:7: uid: invalid uid -1"), "{e}");
        assert!(e.contains("2:8: mode: invalid mode 755"), "{e}");
    }
}
