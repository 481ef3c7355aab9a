//! What a process exec'd into a running container inherits from the
//! container's own: its process (user, environment, capabilities, rlimits,
//! no_new_privileges, cwd), its namespaces and its seccomp filter.
//!
//! The supervisor takes it from the spec it planned and saves it as
//! `RUN/containers/NAME/exec.json`, so health checks and `berth exec` confine
//! their process exactly as the running container was confined, even after
//! its definition was edited. Owns that file; must not plan anything.

use std::path::Path;

use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

use super::SuperviseError;
use crate::runtime::Confinement;

/// File name under the container's run dir.
pub const EXEC_FILE: &str = "exec.json";

/// The confinement an exec'd process gets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecTemplate {
    /// The container's own process; an exec replaces its args.
    pub process: Process,
    /// Namespaces to join, seccomp filter, persona: the container's.
    /// Flattened: the file keeps its `namespaces` and `seccomp` keys.
    #[serde(flatten)]
    pub confinement: Confinement,
}

impl ExecTemplate {
    /// Take the template from a planned spec; None without a process.
    pub fn from_spec(spec: &Spec) -> Option<ExecTemplate> {
        Some(ExecTemplate {
            process: spec.process().clone()?,
            // An invalid persona fails the container's own create first.
            confinement: Confinement::from_spec("", spec).ok()?,
        })
    }

    /// Write `RUN_DIR/exec.json` atomically (temp + rename): a reader never
    /// sees half a file. No fsync: the run dir is on tmpfs.
    pub fn save(&self, run_dir: &Path) -> Result<(), SuperviseError> {
        let path = run_dir.join(EXEC_FILE);
        let tmp = run_dir.join(format!(".{EXEC_FILE}.tmp"));
        let text = serde_json::to_vec(self).map_err(|e| SuperviseError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // 0600 from creation: it holds the whole environment, env files included.
        crate::private::write_atomic(&tmp, &path, &text)
            .map_err(|e| SuperviseError::io("write", &path, e))
    }

    /// Read `RUN_DIR/exec.json`; None when there is none.
    pub fn load(run_dir: &Path) -> Result<Option<ExecTemplate>, SuperviseError> {
        let path = run_dir.join(EXEC_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SuperviseError::io("read", &path, e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| SuperviseError::State {
                path,
                reason: format!("not a valid exec template: {e}"),
            })
    }

    /// The template's process running `args` instead, with or without a
    /// terminal.
    pub fn process_for(&self, args: Vec<String>, terminal: bool) -> Process {
        let mut p = self.process.clone();
        p.set_args(Some(args)).set_terminal(Some(terminal));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_file() {
        let spec = Spec::default();
        let t = ExecTemplate::from_spec(&spec).expect("default spec has a process");
        let dir = tempfile::tempdir().unwrap();
        t.save(dir.path()).unwrap();
        let back = ExecTemplate::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.process, t.process);
        assert_eq!(back.confinement, t.confinement);
        let p = back.process_for(vec!["true".into()], true);
        assert_eq!(p.args().as_deref(), Some(&["true".to_string()][..]));
        assert_eq!(p.terminal(), Some(true));
        assert!(ExecTemplate::load(&dir.path().join("none"))
            .unwrap()
            .is_none());
    }
}
