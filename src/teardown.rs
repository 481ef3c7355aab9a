//! What a start created, as one typed list, and the walk that undoes it.
//!
//! Both modes record here: service mode (`supervise/start.rs`, its list in
//! the container's run dir) and the runtime (`runtime/mod.rs::create`, its
//! list in the container's state dir, which `berth-runtime delete` and
//! service mode's teardown walk). Each resource is appended to the list
//! before (or, where the kernel names it, as) it is created, one JSON line
//! per entry, so a crash at any point leaves a list that says what to undo.
//! Appending never renames over the file: on ext4 a rename over an existing
//! file starts writeback that the removal of the directory then waits for.
//!
//! Teardown walks the list newest first, undoes what is there, skips what
//! is missing, keeps going after a failure and returns every error at the
//! end, as netavark's `NetavarkErrorList` (`src/error/mod.rs`) does for its
//! network teardown. A new kind of resource is one [`Resource`] variant and
//! its arm in [`Resource::undo`].

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One thing a start created on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Resource {
    /// A directory and everything in it: a run or state dir (state files,
    /// /etc files, sockets), an overlay upper or work dir.
    Tree { path: PathBuf },
    /// A directory removed only when empty: the overlay's mount point (the
    /// overlay lives in the container's mount namespace, so on the host it
    /// stays empty), the dir holding upper and work.
    EmptyDir { path: PathBuf },
    /// A file: the exec FIFO.
    File { path: PathBuf },
    /// A process by PID and start time: SIGKILLed through a pidfd while it is
    /// still that process, never a later one given the same PID.
    Process { pid: i32, start_time: Option<u64> },
    /// A cgroup this start made: its processes killed, then removed with any
    /// child cgroups the container made in it.
    Cgroup { path: PathBuf },
    /// A parent dir made for a container's cgroup: removed, unless another
    /// container's cgroup lives in it by now (EBUSY): it is theirs too then.
    CgroupParent { path: PathBuf },
    /// A cgroup someone else made (a systemd scope, service mode's payload
    /// given to the runtime): its processes killed, the directory left.
    CgroupMembers { path: PathBuf },
    /// The recording process's own cgroup (the supervisor's): removed once
    /// empty, never killed, since the supervisor lives in it.
    OwnCgroup { path: PathBuf },
    /// The `userns = "auto"` ID range allocated to container `name` in `dir`.
    IdRange { dir: PathBuf, name: String },
    /// A container the runtime created, with a list of its own in
    /// `state_dir/id` (service mode's container).
    Container { state_dir: PathBuf, id: String },
    /// A transient systemd unit holding the container's `cgroup`
    /// (`berth-runtime --systemd-cgroup`): stopped, then what a sub-cgroup
    /// kept of that cgroup is removed (runc removes it after the stop too).
    /// A failure only warns: systemd stops an empty scope by itself.
    Scope { unit: String, cgroup: PathBuf },
    /// A container's own elements in berth's nftables table (its published
    /// ports): the `nft -f` text that deletes them; only those whose
    /// comment names `container` are deleted.
    Rules { container: String, script: String },
    /// A veth pair, by its host end (gone already when the container's
    /// network namespace died with it).
    Veth { name: String },
    /// The leases `container` holds on `network` under the run root `run`.
    Lease {
        run: PathBuf,
        network: String,
        container: String,
    },
    /// A network's bridge and its elements (`script` deletes them): removed
    /// when no lease is left on the network, whoever stops last.
    Bridge {
        run: PathBuf,
        network: String,
        bridge: String,
        script: String,
    },
    /// A registration with systemd-machined (`systemd::machined`): removed
    /// while machined holds it for `unit`, never another's machine of the
    /// same name. Silent: machined forgets it anyway once the unit stops.
    Machine { name: String, unit: String },
}

/// Why undoing one resource failed. Each names the object it failed on.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    // The cause is part of the message, not a `source`: an error chain
    // would print it twice (as in `SuperviseError::Io`).
    #[error("{op} '{path}': {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("list of created resources '{path}': {reason}")]
    List { path: PathBuf, reason: String },
    #[error(transparent)]
    Runtime(Box<crate::runtime::RuntimeError>),
    #[error(transparent)]
    Supervise(Box<crate::supervise::SuperviseError>),
    #[error("network: {0}")]
    Network(String),
}

/// Every error of one teardown, in the order they happened.
#[derive(Debug, Default)]
pub struct TeardownErrors(pub Vec<TeardownError>);

impl std::fmt::Display for TeardownErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let msgs: Vec<String> = self.0.iter().map(|e| e.to_string()).collect();
        f.write_str(&msgs.join("; "))
    }
}

impl std::error::Error for TeardownErrors {}

/// What a walk left: the entries it was asked to keep or failed to undo
/// (oldest first, to be recorded again), and every error.
#[derive(Debug, Default)]
pub struct Outcome {
    pub left: Vec<Resource>,
    pub errors: Vec<TeardownError>,
}

impl Outcome {
    /// `Ok` when nothing failed.
    pub fn result(self) -> Result<(), TeardownErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(TeardownErrors(self.errors))
        }
    }
}

/// Undo `entries` (oldest first) newest first, except those `keep` names;
/// a failure never stops the walk.
pub fn walk(entries: &[Resource], keep: impl Fn(&Resource) -> bool) -> Outcome {
    let mut out = Outcome::default();
    for r in entries.iter().rev() {
        let failed = out.errors.len();
        if !keep(r) {
            r.undo(&mut out.errors);
        }
        if keep(r) || out.errors.len() > failed {
            out.left.push(r.clone());
        }
    }
    out.left.reverse();
    out
}

/// Undo every entry of `entries`, newest first.
pub fn teardown(entries: &[Resource]) -> Result<(), TeardownErrors> {
    walk(entries, |_| false).result()
}

impl Resource {
    /// Undo this resource; one missing is fine. Pushes what failed.
    fn undo(&self, errors: &mut Vec<TeardownError>) {
        let rt = |e| TeardownError::Runtime(Box::new(e));
        let result = match self {
            Resource::Tree { path } => {
                ignore_missing(std::fs::remove_dir_all(path)).map_err(|e| io("remove", path, e))
            }
            Resource::EmptyDir { path } => {
                ignore_missing(std::fs::remove_dir(path)).map_err(|e| io("remove", path, e))
            }
            Resource::File { path } => {
                ignore_missing(std::fs::remove_file(path)).map_err(|e| io("remove", path, e))
            }
            Resource::Process { pid, start_time } => {
                let pid = crate::runtime::Pid::from_raw(*pid);
                if let Some(p) = crate::runtime::ProcessHandle::open(pid, *start_time) {
                    // Dead already, or dying: the cgroup entries wait for it.
                    let _ = p.signal(libc::SIGKILL);
                }
                Ok(())
            }
            Resource::Cgroup { path } => crate::runtime::remove_cgroup(path).map_err(rt),
            Resource::CgroupParent { path } => match std::fs::remove_dir(path) {
                Err(e) if !matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => {
                    ignore_missing(Err(e)).map_err(|e| io("remove cgroup", path, e))
                }
                _ => Ok(()),
            },
            Resource::CgroupMembers { path } if path.exists() => {
                crate::runtime::cgroup_kill(path, nix::sys::signal::Signal::SIGKILL).map_err(rt)
            }
            Resource::CgroupMembers { .. } => Ok(()),
            Resource::OwnCgroup { path } => {
                ignore_missing(std::fs::remove_dir(path)).map_err(|e| io("remove cgroup", path, e))
            }
            Resource::IdRange { dir, name } => crate::supervise::userns::release(dir, name)
                .map_err(|e| TeardownError::Supervise(Box::new(e))),
            Resource::Scope { unit, cgroup } => {
                if let Err(e) = stop_scope(unit, cgroup) {
                    crate::runtime::warn(&format!("stop scope '{unit}': {e}, ignoring"));
                }
                Ok(())
            }
            Resource::Container { state_dir, id } => {
                if let Err(errs) = crate::runtime::cleanup(state_dir, id) {
                    errors.extend(errs.into_iter().map(rt));
                }
                Ok(())
            }
            Resource::Rules { container, script } => {
                crate::network::attach::remove_rules(container, script)
                    .map_err(TeardownError::Network)
            }
            Resource::Veth { name } => crate::network::attach::remove_veth(name)
                .map_err(|e| TeardownError::Network(e.to_string())),
            Resource::Lease {
                run,
                network,
                container,
            } => crate::network::ipam::release(run, network, container)
                .map(|_| ())
                .map_err(|e| TeardownError::Network(e.to_string())),
            Resource::Bridge {
                run,
                network,
                bridge,
                script,
            } => crate::network::attach::remove_bridge_if_unused(run, network, bridge, script)
                .map(|_| ())
                .map_err(TeardownError::Network),
            Resource::Machine { name, unit } => {
                crate::systemd::machined::unregister(name, unit);
                Ok(())
            }
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
}

/// Stop `unit` (one systemd no longer knows is fine), then remove what is
/// left of its cgroup.
fn stop_scope(unit: &str, cgroup: &Path) -> Result<(), Box<dyn std::error::Error>> {
    crate::systemd::bus::stop_unit(unit)?;
    if cgroup.exists() {
        crate::runtime::remove_cgroup(cgroup)?;
    }
    Ok(())
}

fn io(op: &'static str, path: &Path, error: std::io::Error) -> TeardownError {
    TeardownError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

fn ignore_missing(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The list of one start, appended to as it creates things.
#[derive(Debug)]
pub struct List {
    path: PathBuf,
    entries: Vec<Resource>,
}

impl List {
    /// The list kept at `path`, to be appended to; nothing is written yet.
    pub fn new(path: impl Into<PathBuf>) -> List {
        List {
            path: path.into(),
            entries: Vec::new(),
        }
    }

    /// Everything recorded, oldest first.
    pub fn entries(&self) -> &[Resource] {
        &self.entries
    }

    /// Record `r` before it is created.
    pub fn record(&mut self, r: Resource) -> Result<(), TeardownError> {
        self.record_all(vec![r])
    }

    /// Record several resources with one write (a crash records all or the
    /// last one half, which [`List::load`] drops: none of it was made yet).
    pub fn record_all(&mut self, rs: Vec<Resource>) -> Result<(), TeardownError> {
        let mut text = Vec::new();
        for r in &rs {
            let line = serde_json::to_vec(r).map_err(|e| TeardownError::List {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        // O_NOFOLLOW: the list lives in a private dir, but a planted link
        // must still not redirect the write.
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)
            .and_then(|mut f| f.write_all(&text));
        match appended {
            // A new list appears with its first entries whole (0600, temp
            // file and rename onto no file): a crash right after creating
            // it must not leave an empty list that says nothing is to undo.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let tmp = self.path.with_extension("tmp");
                crate::private::write_atomic(&tmp, &self.path, &text)
                    .map_err(|e| io("write", &self.path, e))?
            }
            other => other.map_err(|e| io("append to", &self.path, e))?,
        }
        self.entries.extend(rs);
        Ok(())
    }

    /// Replace the recorded entries with `entries` (atomically), e.g. what
    /// a walk left.
    pub fn rewrite(&mut self, entries: Vec<Resource>) -> Result<(), TeardownError> {
        let tmp = self.path.with_extension("tmp");
        let mut text = Vec::new();
        for r in &entries {
            text.extend_from_slice(&serde_json::to_vec(r).map_err(|e| TeardownError::List {
                path: self.path.clone(),
                reason: e.to_string(),
            })?);
            text.push(b'\n');
        }
        crate::private::write_atomic(&tmp, &self.path, &text)
            .map_err(|e| io("write", &self.path, e))?;
        self.entries = entries;
        Ok(())
    }

    /// The list at `path`; `Ok(None)` when there is none. A last line
    /// without its newline is a write a crash cut short: nothing of it was
    /// created, so it is dropped.
    pub fn load(path: &Path) -> Result<Option<List>, TeardownError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", path, e)),
        };
        let complete = match text.iter().rposition(|b| *b == b'\n') {
            Some(end) => &text[..end],
            None => &[][..],
        };
        let mut entries = Vec::new();
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            entries.push(
                serde_json::from_slice(line).map_err(|e| TeardownError::List {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?,
            );
        }
        Ok(Some(List {
            path: path.to_path_buf(),
            entries,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant survives a write and a read (the list's string form).
    #[test]
    fn entries_round_trip_and_a_cut_line_is_dropped() {
        let t = tempfile::tempdir().unwrap();
        let p = |s: &str| t.path().join(s);
        let all = vec![
            Resource::Tree { path: p("a") },
            Resource::EmptyDir { path: p("b") },
            Resource::File { path: p("c") },
            Resource::Process {
                pid: 7,
                start_time: Some(9),
            },
            Resource::Cgroup { path: p("d") },
            Resource::CgroupParent { path: p("e") },
            Resource::CgroupMembers { path: p("f") },
            Resource::OwnCgroup { path: p("g") },
            Resource::IdRange {
                dir: p("h"),
                name: "web".into(),
            },
            Resource::Container {
                state_dir: p("i"),
                id: "web".into(),
            },
            Resource::Scope {
                unit: "c1.scope".into(),
                cgroup: p("j"),
            },
            Resource::Machine {
                name: "web".into(),
                unit: "berth@web.service".into(),
            },
        ];
        let path = p("list");
        let mut list = List::new(&path);
        list.record(all[0].clone()).unwrap();
        list.record_all(all[1..].to_vec()).unwrap();
        assert_eq!(List::load(&path).unwrap().unwrap().entries(), &all[..]);
        // A crash in the middle of an append.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"kind\":\"tree\",\"pa")
            .unwrap();
        assert_eq!(List::load(&path).unwrap().unwrap().entries(), &all[..]);
        assert!(List::load(&p("none")).unwrap().is_none());
    }

    /// A resource whose removal fails does not stop the walk: the entries
    /// before and after it are removed, the failure is reported, and what
    /// failed is left to retry.
    #[test]
    fn walk_goes_on_after_a_failure_and_reports_them_all() {
        let t = tempfile::tempdir().unwrap();
        let p = |s: &str| t.path().join(s);
        std::fs::create_dir_all(p("tree/sub")).unwrap();
        std::fs::write(p("tree/sub/f"), "x").unwrap();
        std::fs::create_dir_all(p("mountpoint/stray")).unwrap();
        // A file entry that is a directory by now: its removal fails.
        std::fs::create_dir(p("fifo")).unwrap();
        std::fs::create_dir(p("empty")).unwrap();
        let entries = vec![
            Resource::Tree { path: p("tree") },
            Resource::EmptyDir {
                path: p("mountpoint"),
            },
            Resource::File { path: p("fifo") },
            Resource::EmptyDir { path: p("empty") },
            Resource::File {
                path: p("never-made"),
            },
        ];
        let out = walk(&entries, |_| false);
        assert!(!p("tree").exists(), "entries before the failures stay");
        assert!(!p("empty").exists(), "entries after the failures stay");
        let msgs: Vec<String> = out.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(
            msgs[0].contains(&p("fifo").display().to_string()),
            "{msgs:?}"
        );
        assert!(
            msgs[1].contains(&p("mountpoint").display().to_string()),
            "{msgs:?}"
        );
        assert_eq!(out.left, entries[1..3].to_vec());
        // Kept entries stay untouched and are left too.
        std::fs::remove_dir(p("fifo")).unwrap();
        std::fs::remove_dir(p("mountpoint/stray")).unwrap();
        let out = walk(&entries, |r| matches!(r, Resource::File { .. }));
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert!(!p("mountpoint").exists());
        assert_eq!(out.left, vec![entries[2].clone(), entries[4].clone()]);
        assert!(teardown(&entries).is_ok());
    }
}
