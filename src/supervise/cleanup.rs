//! Teardown of everything a start recorded in its run dir's list
//! (`resources`, see [`crate::teardown`]): the container (the runtime's own
//! list), the payload and supervisor cgroups, the overlay's upper and work
//! dirs, the `userns = "auto"` ID range, the run dir. The walk keeps going
//! after a failure and returns every error, so one stuck step never hides
//! the rest (netavark's `NetavarkErrorList` does the same).

use std::path::PathBuf;

use super::state::{Paths, State};
use super::SuperviseError;
use crate::teardown::{self, List, Resource, TeardownError};

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
    let result = teardown(&paths, &opts.name, false);
    // `berth run -d --rm`: the definition written for it goes with it.
    let marker = super::remove_on_stop_marker(&opts.root, &opts.name);
    if marker.exists() {
        let def = marker.with_extension("toml");
        let _ = std::fs::remove_file(&def);
        let _ = std::fs::remove_file(&marker);
    }
    result
}

/// Undo the recorded start of `name`, newest first. With `keep_supervisor`
/// (the supervisor cleaning up after itself, still inside
/// `<unit>/supervisor`), that cgroup, the ID range and the run dir stay for
/// ExecStopPost, with a list naming them and whatever failed here.
pub fn teardown(
    paths: &Paths,
    name: &str,
    keep_supervisor: bool,
) -> Result<(), Vec<SuperviseError>> {
    let mut errors = Vec::new();
    let entries = match List::load(&paths.resources()) {
        Ok(Some(list)) if !list.entries().is_empty() => list.entries().to_vec(),
        Ok(_) => paths.default_resources(),
        Err(e) => {
            errors.push(from_teardown(name, e));
            paths.default_resources()
        }
    };
    let run_dir = Resource::Tree {
        path: paths.run_dir.clone(),
    };
    let kept = |r: &Resource| {
        keep_supervisor
            && (*r == run_dir || matches!(r, Resource::OwnCgroup { .. } | Resource::IdRange { .. }))
    };
    let out = teardown::walk(&entries, kept);
    errors.extend(out.errors.into_iter().map(|e| from_teardown(name, e)));
    if keep_supervisor && paths.run_dir.is_dir() {
        if let Err(e) = keep_record(paths, out.left) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What ExecStopPost's `berth cleanup` finds: who the supervisor was (so it
/// is not mistaken for a live one) and the list of what is left.
fn keep_record(paths: &Paths, left: Vec<Resource>) -> Result<(), SuperviseError> {
    if let Some(st) = State::load(&paths.run_dir)? {
        let kept = State {
            name: st.name.clone(),
            definition_hash: st.definition_hash.clone(),
            supervisor_pid: st.supervisor_pid,
            supervisor_start_time: st.supervisor_start_time,
            unit_cgroup: st.unit_cgroup.clone(),
            ..State::default()
        };
        kept.save(&paths.run_dir)?;
    }
    List::new(paths.resources())
        .rewrite(left)
        .map_err(|e| from_teardown(&paths.name, e))
}

/// A teardown error as the supervisor's, naming the container.
pub(super) fn from_teardown(name: &str, e: TeardownError) -> SuperviseError {
    match e {
        TeardownError::Io { op, path, error } => SuperviseError::Io { op, path, error },
        TeardownError::List { path, reason } => SuperviseError::State { path, reason },
        TeardownError::Runtime(error) => SuperviseError::Runtime {
            name: name.to_string(),
            error: *error,
        },
        TeardownError::Supervise(e) => *e,
        TeardownError::Network(reason) => SuperviseError::NetworkTeardown {
            name: name.to_string(),
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::state::STATE_FILE;

    /// Without privileges or processes: dirs recorded (and, with no list,
    /// the default ones) are removed, and the supervisor's record and the
    /// entries it keeps survive when asked to.
    #[test]
    fn removes_dirs_and_keeps_supervisor_record() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(&tmp.path().join("run"), &tmp.path().join("lib"), "web");
        std::fs::create_dir_all(paths.upper().join("etc")).unwrap();
        std::fs::create_dir_all(paths.work().join("work")).unwrap();
        std::fs::create_dir_all(&paths.run_dir).unwrap();
        let sup = tmp.path().join("supervisor-cgroup");
        std::fs::create_dir(&sup).unwrap();
        let st = State {
            name: "web".into(),
            supervisor_pid: 1,
            container_pid: Some(42),
            ..State::default()
        };
        st.save(&paths.run_dir).unwrap();
        let mut list = List::new(paths.resources());
        list.record_all(vec![
            Resource::Tree {
                path: paths.run_dir.clone(),
            },
            Resource::EmptyDir {
                path: paths.storage_dir.clone(),
            },
            Resource::Tree {
                path: paths.upper(),
            },
            Resource::Tree { path: paths.work() },
            Resource::OwnCgroup { path: sup.clone() },
        ])
        .unwrap();
        teardown(&paths, "web", true).unwrap();
        assert!(!paths.storage_dir.exists());
        assert!(sup.exists());
        let kept = State::load(&paths.run_dir).unwrap().unwrap();
        assert_eq!(kept.supervisor_pid, 1);
        assert_eq!(kept.container_pid, None);
        let left = List::load(&paths.resources()).unwrap().unwrap();
        assert_eq!(
            left.entries(),
            &[list.entries()[0].clone(), list.entries()[4].clone()]
        );
        teardown(&paths, "web", false).unwrap();
        assert!(!sup.exists());
        assert!(!paths.run_dir.exists());
        assert!(!paths.run_dir.join(STATE_FILE).exists());
        // Nothing recorded: the default list finds what a start makes.
        std::fs::create_dir_all(paths.upper().join("etc")).unwrap();
        teardown(&paths, "web", false).unwrap();
        assert!(!paths.storage_dir.exists());
        // Nothing recorded, nothing there: still fine.
        teardown(&paths, "web", false).unwrap();
    }
}
