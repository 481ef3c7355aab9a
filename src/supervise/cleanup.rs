//! Teardown of everything a start recorded in `state.json`: the runtime's
//! own record (its process, overlay mount point), the payload and supervisor
//! cgroups, the overlay's upper and work dirs, the run dir. It keeps going
//! after a failure and returns every error, so one stuck step never hides
//! the rest (netavark's `NetavarkErrorList` does the same).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::state::{Paths, State};
use super::{cgroup, SuperviseError};

/// What `berth cleanup NAME` needs.
#[derive(Debug, Clone)]
pub struct CleanupOptions {
    /// The host's root prefix (`/` or `$BERTH_ROOT`).
    pub root: PathBuf,
    pub name: String,
}

/// `berth cleanup NAME` (ExecStopPost=): remove every resource of the last
/// start, whether the supervisor exited cleanly, crashed or was SIGKILLed.
pub fn cleanup(opts: &CleanupOptions) -> Result<(), Vec<SuperviseError>> {
    if let Err(e) = crate::config::validate_name(&opts.name) {
        return Err(vec![SuperviseError::State {
            path: PathBuf::from(&opts.name),
            reason: e,
        }]);
    }
    let globals = match crate::config::load_globals(&opts.root) {
        Ok(g) => g,
        Err(e) => return Err(vec![SuperviseError::Globals(e.to_string())]),
    };
    let paths = Paths::new(
        &super::run_root(&opts.root),
        &globals.storage_root,
        &opts.name,
    );
    if let Ok(Some(st)) = State::load(&paths.run_dir) {
        if st.supervisor_alive() {
            return Err(vec![SuperviseError::Running {
                name: opts.name.clone(),
                pid: st.supervisor_pid,
            }]);
        }
    }
    let mut result = teardown(&paths, &opts.name, false);
    // The `userns = "auto"` ID range goes last: nothing is left to use it.
    if let Err(e) = super::userns::release(&super::userns::userns_dir(&opts.root), &opts.name) {
        match &mut result {
            Ok(()) => result = Err(vec![e]),
            Err(v) => v.push(e),
        }
    }
    // `berth run -d --rm`: the definition written for it goes with it.
    let marker = super::remove_on_stop_marker(&opts.root, &opts.name);
    if marker.exists() {
        let def = marker.with_extension("toml");
        let _ = std::fs::remove_file(&def);
        let _ = std::fs::remove_file(&marker);
    }
    result
}

/// Undo the recorded start of `name`. With `keep_supervisor` (the supervisor
/// cleaning up after itself, still inside `<unit>/supervisor`), that cgroup
/// and the record naming it stay for ExecStopPost.
pub fn teardown(
    paths: &Paths,
    name: &str,
    keep_supervisor: bool,
) -> Result<(), Vec<SuperviseError>> {
    let mut errors = Vec::new();
    let st = match State::load(&paths.run_dir) {
        Ok(s) => s,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let st = st.unwrap_or_else(|| State {
        name: name.to_string(),
        ..State::default()
    });

    // 1. The container: the payload cgroup holds every process of it (the
    //    main process, its children, berth's init); killing it first means
    //    nothing is left to keep a mount busy.
    if let Some(p) = &st.payload_cgroup {
        if let Err(e) = cgroup::kill_and_remove(p, Duration::from_secs(5)) {
            errors.push(e.into());
        }
    }
    // 2. The runtime's record: its process (when outside any cgroup of ours,
    //    as in ad hoc mode), the overlay mount point, the record dir.
    let runtime_dir = st
        .runtime_state_dir
        .clone()
        .unwrap_or_else(|| paths.runtime_state_dir());
    if let Err(errs) = crate::runtime::cleanup(&runtime_dir, name) {
        errors.extend(errs.into_iter().map(|error| SuperviseError::Runtime {
            name: name.to_string(),
            error,
        }));
    }
    if let Err(e) = remove_dir_if_exists(&runtime_dir) {
        errors.push(e);
    }
    // 3. The overlay's upper and work dirs, and their parent when empty.
    for d in [
        st.upper.clone().unwrap_or_else(|| paths.upper()),
        st.work.clone().unwrap_or_else(|| paths.work()),
    ] {
        if let Err(e) = remove_tree(&d) {
            errors.push(e);
        }
    }
    let _ = std::fs::remove_dir(&paths.storage_dir);
    // 4. The supervisor's cgroup (empty once the supervisor is gone), then
    //    the run dir with the record.
    if keep_supervisor {
        let kept = State {
            name: st.name.clone(),
            definition_hash: st.definition_hash.clone(),
            supervisor_pid: st.supervisor_pid,
            supervisor_start_time: st.supervisor_start_time,
            unit_cgroup: st.unit_cgroup.clone(),
            supervisor_cgroup: st.supervisor_cgroup.clone(),
            ..State::default()
        };
        if paths.run_dir.is_dir() {
            if let Err(e) = kept.save(&paths.run_dir) {
                errors.push(e);
            }
        }
    } else {
        if let Some(s) = &st.supervisor_cgroup {
            if let Err(e) = cgroup::remove_empty(s) {
                errors.push(e.into());
            }
        }
        if let Err(e) = remove_tree(&paths.run_dir) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn remove_tree(p: &Path) -> Result<(), SuperviseError> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SuperviseError::io("remove", p, e)),
    }
}

fn remove_dir_if_exists(p: &Path) -> Result<(), SuperviseError> {
    match std::fs::remove_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SuperviseError::io("remove", p, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::state::STATE_FILE;

    /// Without privileges or processes: files recorded (and not) are removed,
    /// and the supervisor's record survives when asked to.
    #[test]
    fn removes_dirs_and_keeps_supervisor_record() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(&tmp.path().join("run"), &tmp.path().join("lib"), "web");
        std::fs::create_dir_all(paths.upper().join("etc")).unwrap();
        std::fs::create_dir_all(paths.work().join("work")).unwrap();
        std::fs::create_dir_all(&paths.run_dir).unwrap();
        let st = State {
            name: "web".into(),
            supervisor_cgroup: Some(tmp.path().join("no-such-cgroup")),
            upper: Some(paths.upper()),
            work: Some(paths.work()),
            ..State::default()
        };
        st.save(&paths.run_dir).unwrap();
        teardown(&paths, "web", true).unwrap();
        assert!(!paths.storage_dir.exists());
        let kept = State::load(&paths.run_dir).unwrap().unwrap();
        assert_eq!(kept.supervisor_cgroup, st.supervisor_cgroup);
        assert_eq!(kept.upper, None);
        teardown(&paths, "web", false).unwrap();
        assert!(!paths.run_dir.exists());
        assert!(!paths.run_dir.join(STATE_FILE).exists());
        // Nothing recorded, nothing there: still fine.
        teardown(&paths, "web", false).unwrap();
    }
}
