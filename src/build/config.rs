//! A build step's effect on the image config (JSON as the store holds it,
//! so fields berth does not model, Docker's `Healthcheck` among them, are
//! kept). Pure.
//!
//! Followed: `moby/buildkit: frontend/dockerfile/dockerfile2llb/convert.go`
//! (`dispatchEnv` replaces a name in place, `dispatchWorkdir` resolves a
//! relative path against the current one, `dispatchCmd` in shell form is
//! the SHELL plus the text, an ENTRYPOINT resets a CMD inherited from the
//! base, `EXPOSE 80` is `80/tcp`).

use serde_json::{json, Map, Value};

use super::containerfile::{Command, Op};

/// The default SHELL.
pub const DEFAULT_SHELL: &[&str] = &["/bin/sh", "-c"];

fn cfg(config: &mut Value) -> &mut Map<String, Value> {
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    match config["config"].as_object_mut() {
        Some(m) => m,
        None => unreachable!("just made an object"),
    }
}

/// A command as the config holds it: exec form as is, shell form through
/// the stage's shell.
pub fn argv(c: &Command, shell: &[String]) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => shell.iter().cloned().chain([s.clone()]).collect(),
    }
}

/// `/a/b` joined with `p` (absolute `p` wins), cleaned.
pub fn join_path(base: &str, p: &str) -> String {
    let joined = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{p}", base.trim_end_matches('/'))
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Apply a step that changes only the config. `shell` is the stage's SHELL
/// (a SHELL step changes it). Returns whether the step was one of those.
pub fn apply(config: &mut Value, op: &Op, shell: &mut Vec<String>) -> bool {
    let c = cfg(config);
    match op {
        Op::Env(pairs) => {
            let mut env: Vec<String> = c
                .get("Env")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in pairs {
                let item = format!("{k}={v}");
                match env
                    .iter_mut()
                    .find(|e| e.split_once('=').map(|x| x.0) == Some(k))
                {
                    Some(e) => *e = item,
                    None => env.push(item),
                }
            }
            c.insert("Env".into(), json!(env));
        }
        Op::Workdir(w) => {
            let cur = c.get("WorkingDir").and_then(Value::as_str).unwrap_or("/");
            let cur = if cur.is_empty() { "/" } else { cur };
            let w = join_path(cur, w);
            c.insert("WorkingDir".into(), json!(w));
        }
        Op::User(u) => {
            c.insert("User".into(), json!(u));
        }
        Op::StopSignal(s) => {
            c.insert("StopSignal".into(), json!(s));
        }
        Op::Cmd(cmd) => {
            c.insert("Cmd".into(), json!(argv(cmd, shell)));
        }
        Op::Entrypoint(e) => {
            c.insert("Entrypoint".into(), json!(argv(e, shell)));
            // Docker: an ENTRYPOINT drops the CMD the base image set.
            c.remove("Cmd");
        }
        Op::Expose(ports) => set_keys(
            c,
            "ExposedPorts",
            ports.iter().map(|p| {
                if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                }
            }),
        ),
        Op::Volume(v) => set_keys(c, "Volumes", v.iter().cloned()),
        Op::Label(pairs) => {
            let labels = c.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            for (k, v) in pairs {
                labels[k] = json!(v);
            }
        }
        Op::Healthcheck(h) => {
            let v = match h {
                None => json!({"Test": ["NONE"]}),
                Some(h) => {
                    let test = match &h.test {
                        Command::Exec(v) => [vec!["CMD".to_string()], v.clone()].concat(),
                        Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                    };
                    let mut v = json!({"Test": test});
                    for (k, n) in [
                        ("Interval", h.interval),
                        ("Timeout", h.timeout),
                        ("StartPeriod", h.start_period),
                        ("StartInterval", h.start_interval),
                        ("Retries", u64::from(h.retries)),
                    ] {
                        if n != 0 {
                            v[k] = json!(n);
                        }
                    }
                    v
                }
            };
            c.insert("Healthcheck".into(), v);
        }
        Op::Shell(s) => *shell = s.clone(),
        Op::Arg(_) => {}
        Op::From { .. } | Op::Run(_) | Op::Copy(_) => return false,
    }
    true
}

/// `{"k": {}}` entries, as ExposedPorts and Volumes are.
fn set_keys(c: &mut Map<String, Value>, field: &str, keys: impl Iterator<Item = String>) {
    let m = c.entry(field).or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    for k in keys {
        m[k] = json!({});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_change_the_config_as_docker() {
        let mut c =
            json!({"config": {"Env": ["PATH=/bin", "A=0"], "Cmd": ["sh"], "WorkingDir": "/srv"}});
        let mut shell: Vec<String> = DEFAULT_SHELL.iter().map(|s| s.to_string()).collect();
        apply(
            &mut c,
            &Op::Env(vec![("A".into(), "1".into()), ("B".into(), "2".into())]),
            &mut shell,
        );
        apply(&mut c, &Op::Workdir("app/../x".into()), &mut shell);
        apply(
            &mut c,
            &Op::Expose(vec!["80".into(), "53/UDP".into()]),
            &mut shell,
        );
        apply(
            &mut c,
            &Op::Entrypoint(Command::Shell("run it".into())),
            &mut shell,
        );
        assert_eq!(c["config"]["Env"], json!(["PATH=/bin", "A=1", "B=2"]));
        assert_eq!(c["config"]["WorkingDir"], json!("/srv/x"));
        assert_eq!(
            c["config"]["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}})
        );
        assert_eq!(
            c["config"]["Entrypoint"],
            json!(["/bin/sh", "-c", "run it"])
        );
        assert!(c["config"].get("Cmd").is_none());
        assert!(!apply(
            &mut c,
            &Op::Run(Command::Shell("x".into())),
            &mut shell
        ));
    }
}
