//! What a process exec'd into a running container inherits from the
//! container's own: its process (user, environment, capabilities, rlimits,
//! no_new_privileges, cwd), its namespaces and its seccomp filter.
//!
//! The supervisor takes it from the spec it planned and saves it as
//! `RUN/containers/NAME/exec.json`, so health checks and `berth exec` confine
//! their process exactly as the running container was confined, even after
//! its definition was edited. Owns that file, and `plan_exec`: the saved
//! confinement with a `berth exec` request's changes (command, user, cwd,
//! environment); nothing else of the container is planned again.

use std::path::{Path, PathBuf};

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

/// What `berth exec` changes of the container's own process.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub tty: bool,
}

/// The confinement of an exec'd process: the container's own process with
/// the request's changes, its namespaces and seccomp filter.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    pub process: Process,
    pub confinement: crate::runtime::Confinement,
}

/// A regular file of the running container's root (`/proc/PID/root/REL`),
/// resolved inside that root (`rootfile`): a link or symlinked parent planted
/// in the container must not make berth read a host file, and a FIFO, a
/// device or a hung filesystem there must not wedge `berth exec`.
fn read_container_file(pid: i32, rel: &str) -> Option<String> {
    crate::rootfile::read_text_in_root_within(
        Path::new(&format!("/proc/{pid}/root")),
        rel,
        crate::rootfile::MAX_ID_FILE,
        std::time::Duration::from_secs(5),
    )
}

/// The confinement container `name` (run dir `run_dir`, main process `pid`)
/// was started with, saved by its supervisor ([`ExecTemplate`]), with the
/// exec request's command, user, working directory and environment.
pub fn plan_exec(
    run_dir: &Path,
    name: &str,
    pid: i32,
    req: &ExecRequest,
) -> Result<ExecPlan, SuperviseError> {
    let err = |reason: String| SuperviseError::Exec {
        name: name.to_string(),
        reason,
    };
    let template = ExecTemplate::load(run_dir)
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| {
            err(format!(
                "no {EXEC_FILE} in \"{}\": it was started by an older berth; restart it with `systemctl restart berth@{name}`",
                run_dir.display()
            ))
        })?;
    // The command replaces the entrypoint too, as `docker exec` does.
    let mut process = template.process_for(req.command.clone(), req.tty);
    if let Some(u) = &req.user {
        let passwd = read_container_file(pid, "etc/passwd");
        let group = read_container_file(pid, "etc/group");
        let resolved = crate::spec::resolve_user(u, passwd.as_deref(), group.as_deref())
            .map_err(|e| err(format!("user \"{u}\": {e}")))?;
        let mut user = process.user().clone();
        user.set_uid(resolved.uid)
            .set_gid(resolved.gid)
            .set_additional_gids(Some(resolved.additional_gids));
        process.set_user(user);
    }
    if let Some(w) = &req.workdir {
        if !w.is_absolute() {
            return Err(err(format!(
                "working directory \"{}\" must be absolute",
                w.display()
            )));
        }
        process.set_cwd(w.clone());
    }
    if !req.env.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        for (k, v) in &req.env {
            let prefix = format!("{k}=");
            env.retain(|e| !e.starts_with(&prefix));
            env.push(format!("{k}={v}"));
        }
        process.set_env(Some(env));
    }
    Ok(ExecPlan {
        process,
        confinement: template.confinement,
    })
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

    #[test]
    fn an_exec_changes_only_what_it_asks_for() {
        let dir = tempfile::tempdir().unwrap();
        let e = plan_exec(dir.path(), "web", 1, &ExecRequest::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("container \"web\": no exec.json in"),
            "{e}"
        );
        let t = ExecTemplate::from_spec(&Spec::default()).unwrap();
        t.save(dir.path()).unwrap();
        let req = ExecRequest {
            command: vec!["sh".into()],
            workdir: Some("/srv".into()),
            env: vec![("TERM".into(), "dumb".into())],
            ..ExecRequest::default()
        };
        let plan = plan_exec(dir.path(), "web", 1, &req).unwrap();
        assert_eq!(
            plan.process.args().as_deref(),
            Some(&["sh".to_string()][..])
        );
        assert_eq!(plan.process.cwd(), Path::new("/srv"));
        let env = plan.process.env().clone().unwrap();
        assert_eq!(env.iter().filter(|e| e.starts_with("TERM=")).count(), 1);
        assert!(env.contains(&"TERM=dumb".to_string()));
        assert_eq!(plan.process.user(), t.process.user());
        assert_eq!(plan.confinement.namespaces, t.confinement.namespaces);
        let rel = ExecRequest {
            workdir: Some("srv".into()),
            ..ExecRequest::default()
        };
        let e = plan_exec(dir.path(), "web", 1, &rel).unwrap_err();
        assert!(e.to_string().contains("must be absolute"), "{e}");
    }
}
