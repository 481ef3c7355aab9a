//! OCI lifecycle hooks (runtime-spec config.md "POSIX-platform Hooks"): run a
//! hook with the container's state JSON on stdin, its args and env, within
//! its timeout. Which hooks run where is decided by the callers: createRuntime
//! and prestart in the parent (runtime namespace, before pivot_root),
//! createContainer and startContainer in the init (container namespaces),
//! poststart and poststop by the OCI command line.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Spec};

use super::RuntimeError;

/// The hook lists of a spec, by lifecycle point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl HookPoint {
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::Prestart => "prestart",
            HookPoint::CreateRuntime => "createRuntime",
            HookPoint::CreateContainer => "createContainer",
            HookPoint::StartContainer => "startContainer",
            HookPoint::Poststart => "poststart",
            HookPoint::Poststop => "poststop",
        }
    }
}

/// The hooks of `spec` at `point`.
#[allow(deprecated)] // prestart is deprecated in the spec but still used.
pub fn hooks_at(spec: &Spec, point: HookPoint) -> Vec<Hook> {
    let Some(h) = spec.hooks() else {
        return Vec::new();
    };
    let list = match point {
        HookPoint::Prestart => h.prestart(),
        HookPoint::CreateRuntime => h.create_runtime(),
        HookPoint::CreateContainer => h.create_container(),
        HookPoint::StartContainer => h.start_container(),
        HookPoint::Poststart => h.poststart(),
        HookPoint::Poststop => h.poststop(),
    };
    list.clone().unwrap_or_default()
}

/// The runtime-spec state object handed to hooks on stdin.
pub fn render_state(
    spec: &Spec,
    id: &str,
    status: &str,
    pid: Option<i32>,
    bundle: &Path,
) -> String {
    let mut v = serde_json::json!({
        "ociVersion": "1.0.2",
        "id": id,
        "status": status,
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    });
    if let Some(pid) = pid {
        v["pid"] = serde_json::json!(pid);
    }
    v.to_string()
}

/// Run every hook at a point in order; the first failure stops them.
pub fn run_hooks(hooks: &[Hook], point: HookPoint, state: &str) -> Result<(), RuntimeError> {
    for h in hooks {
        run_hook(h, point, state)?;
    }
    Ok(())
}

/// Run every hook at a point whose failures only warn (poststart,
/// poststop): runtime-spec says the runtime "MUST log a warning, but the
/// remaining hooks and lifecycle continue as if the hook had succeeded".
/// Every hook runs, in order; the failures, in order.
pub fn run_hooks_warning(hooks: &[Hook], point: HookPoint, state: &str) -> Vec<RuntimeError> {
    hooks
        .iter()
        .filter_map(|h| run_hook(h, point, state).err())
        .collect()
}

fn hook_err(point: HookPoint, path: &Path, reason: String) -> RuntimeError {
    RuntimeError::Hook {
        point: point.name(),
        path: path.to_path_buf(),
        reason,
    }
}

/// Run one hook: `path` with `args` (args[0] is argv[0]) and exactly `env`,
/// the state on stdin, killed after `timeout` seconds.
pub fn run_hook(h: &Hook, point: HookPoint, state: &str) -> Result<(), RuntimeError> {
    let path: &PathBuf = h.path();
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(path);
    if let Some((first, rest)) = args.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| hook_err(point, path, format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE is ignored).
        let _ = stdin.write_all(state.as_bytes());
    }
    let limit = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(hook_err(point, path, format!("failed: {status}"))),
            Ok(None) => {}
            Err(e) => return Err(hook_err(point, path, format!("wait: {e}"))),
        }
        if limit.is_some_and(|l| started.elapsed() > l) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(hook_err(
                point,
                path,
                format!("timed out after {} s", h.timeout().unwrap_or(0)),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    #[test]
    fn hook_gets_state_args_and_env_and_failures_name_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let hook = HookBuilder::default()
            .path("/bin/sh")
            .args(vec![
                "sh".to_string(),
                "-c".to_string(),
                format!(
                    "cat > {}; echo \"$1 $FOO\" >> {}",
                    out.display(),
                    out.display()
                ),
                "x".to_string(),
                "arg1".to_string(),
            ])
            .env(vec!["FOO=bar".to_string()])
            .build()
            .unwrap();
        run_hook(&hook, HookPoint::Poststart, "{\"id\":\"c\"}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"c\"}arg1 bar\n"
        );
        let bad = HookBuilder::default().path("/bin/false").build().unwrap();
        let e = run_hook(&bad, HookPoint::Prestart, "{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("prestart hook '/bin/false'"), "{e}");
        let slow = HookBuilder::default()
            .path("/bin/sleep")
            .args(vec!["sleep".to_string(), "5".to_string()])
            .timeout(1i64)
            .build()
            .unwrap();
        assert!(run_hook(&slow, HookPoint::Poststop, "{}")
            .unwrap_err()
            .to_string()
            .contains("timed out"));
    }

    #[test]
    fn a_failing_warning_hook_does_not_stop_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let bad = HookBuilder::default().path("/bin/false").build().unwrap();
        let good = HookBuilder::default()
            .path("/bin/sh")
            .args(vec![
                "sh".to_string(),
                "-c".to_string(),
                format!("echo ran >> {}", out.display()),
            ])
            .build()
            .unwrap();
        let errors = run_hooks_warning(&[bad.clone(), good, bad], HookPoint::Poststart, "{}");
        assert_eq!(errors.len(), 2);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "ran\n");
    }
}
