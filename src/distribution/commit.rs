//! What `berth commit` writes, decided without touching anything: the
//! `--change` instructions it accepts (Docker's set: CMD, ENTRYPOINT, ENV,
//! EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR; `docker commit
//! --change`, moby `builder/dockerfile/evaluator.go` `validCommitCommands`),
//! the new image config (the base's, with one more diff id, a history entry
//! carrying the message, and the changes applied) and the new manifest (the
//! base's layers, then the new one). Pure: JSON values in, JSON values out.

use serde_json::{json, Value};

use super::manifest::{self, Descriptor, Manifest};

/// A `--change` berth cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--change \"{change}\": {reason}")]
pub struct ChangeError {
    pub change: String,
    pub reason: String,
}

/// One config change, as a Containerfile instruction says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Env(Vec<(String, String)>),
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    StopSignal(String),
    User(String),
    Volume(Vec<String>),
    Workdir(String),
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// `["a", "b"]` (exec form) as it is, anything else (shell form) through
/// `/bin/sh -c`, as Docker does.
fn command(rest: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(v) => v,
        Err(_) => vec!["/bin/sh".into(), "-c".into(), rest.to_string()],
    }
}

/// `K=V K2="v 2"` or the legacy `K V` form.
fn pairs(
    rest: &str,
    err: &dyn Fn(&str) -> ChangeError,
) -> Result<Vec<(String, String)>, ChangeError> {
    if !rest.contains('=') {
        return match rest.split_once(char::is_whitespace) {
            Some((k, v)) => Ok(vec![(k.to_string(), unquote(v))]),
            None => Err(err("expected KEY=VALUE")),
        };
    }
    let mut out = Vec::new();
    let mut words = Vec::new();
    let (mut cur, mut quote) = (String::new(), None);
    for c in rest.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            (_, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err(err("unterminated quote"));
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| err("expected KEY=VALUE"))?;
        if k.is_empty() {
            return Err(err("empty key"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Parse one `--change` value.
pub fn parse_change(s: &str) -> Result<Change, ChangeError> {
    let err = |reason: &str| ChangeError {
        change: s.to_string(),
        reason: reason.to_string(),
    };
    let t = s.trim();
    let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(err("expected an instruction and its value"));
    }
    Ok(match word.to_ascii_uppercase().as_str() {
        "CMD" => Change::Cmd(command(rest)),
        "ENTRYPOINT" => Change::Entrypoint(command(rest)),
        "ENV" => Change::Env(pairs(rest, &err)?),
        "LABEL" => Change::Label(pairs(rest, &err)?),
        "EXPOSE" => Change::Expose(
            rest.split_whitespace()
                .map(|p| if p.contains('/') { p.to_string() } else { format!("{p}/tcp") })
                .collect(),
        ),
        "STOPSIGNAL" => Change::StopSignal(unquote(rest)),
        "USER" => Change::User(unquote(rest)),
        "WORKDIR" => Change::Workdir(unquote(rest)),
        "VOLUME" => Change::Volume(
            serde_json::from_str::<Vec<String>>(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(String::from).collect()),
        ),
        other => {
            return Err(err(&format!(
                "'{other}' cannot be changed (one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)"
            )))
        }
    })
}

fn apply(cfg: &mut serde_json::Map<String, Value>, change: &Change) {
    let set_map = |cfg: &mut serde_json::Map<String, Value>, key: &str, items: &[String]| {
        let m = cfg.entry(key).or_insert_with(|| json!({}));
        if !m.is_object() {
            *m = json!({});
        }
        for i in items {
            m[i.as_str()] = json!({});
        }
    };
    match change {
        Change::Cmd(c) => {
            cfg.insert("Cmd".into(), json!(c));
        }
        Change::Entrypoint(c) => {
            cfg.insert("Entrypoint".into(), json!(c));
            // Docker: a new ENTRYPOINT resets an inherited CMD.
            cfg.remove("Cmd");
        }
        Change::Env(kv) => {
            let mut env: Vec<String> = cfg
                .get("Env")
                .and_then(|e| serde_json::from_value(e.clone()).ok())
                .unwrap_or_default();
            for (k, v) in kv {
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |x| x.0) != k);
                env.push(format!("{k}={v}"));
            }
            cfg.insert("Env".into(), json!(env));
        }
        Change::Label(kv) => {
            let m = cfg.entry("Labels").or_insert_with(|| json!({}));
            if !m.is_object() {
                *m = json!({});
            }
            for (k, v) in kv {
                m[k.as_str()] = json!(v);
            }
        }
        Change::Expose(p) => set_map(cfg, "ExposedPorts", p),
        Change::Volume(v) => set_map(cfg, "Volumes", v),
        Change::StopSignal(s) => {
            cfg.insert("StopSignal".into(), json!(s));
        }
        Change::User(u) => {
            cfg.insert("User".into(), json!(u));
        }
        Change::Workdir(w) => {
            cfg.insert("WorkingDir".into(), json!(w));
        }
    }
}

/// What the commit adds to the base image.
#[derive(Debug, Clone, Default)]
pub struct CommitPlan<'a> {
    pub diff_id: &'a str,
    /// `-m`: the history entry's comment.
    pub message: Option<&'a str>,
    /// `-a`: the config's and history entry's author.
    pub author: Option<&'a str>,
    /// RFC 3339.
    pub created: &'a str,
    /// What made the layer (`berth commit NAME`).
    pub created_by: &'a str,
    pub changes: &'a [Change],
}

/// The new image config: the base's (every field kept, Docker's
/// `Healthcheck` included) with the layer's diff id appended, a history
/// entry, a new `created` and the changes.
pub fn plan_config(base: &Value, plan: &CommitPlan) -> Value {
    let mut out = base.clone();
    if !out.is_object() {
        out = json!({});
    }
    out["created"] = json!(plan.created);
    if let Some(a) = plan.author {
        out["author"] = json!(a);
    }
    if !out["rootfs"].is_object() {
        out["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    let ids = &mut out["rootfs"]["diff_ids"];
    if !ids.is_array() {
        *ids = json!([]);
    }
    if let Some(a) = ids.as_array_mut() {
        a.push(json!(plan.diff_id));
    }
    let mut h = json!({"created": plan.created, "created_by": plan.created_by});
    if let Some(m) = plan.message {
        h["comment"] = json!(m);
    }
    if let Some(a) = plan.author {
        h["author"] = json!(a);
    }
    if !out["history"].is_array() {
        out["history"] = json!([]);
    }
    if let Some(a) = out["history"].as_array_mut() {
        a.push(h);
    }
    if !plan.changes.is_empty() {
        if !out["config"].is_object() {
            out["config"] = json!({});
        }
        if let Some(cfg) = out["config"].as_object_mut() {
            for c in plan.changes {
                apply(cfg, c);
            }
        }
    }
    out
}

/// The new manifest: the base's layers and the new one (gzip, in the
/// media type family of the base's manifest), and the new config.
pub fn plan_manifest(
    base: &Manifest,
    config: Descriptor,
    layer_digest: &str,
    layer_size: u64,
) -> Manifest {
    let docker = base.media_type == manifest::DOCKER_MANIFEST;
    let mut m = base.clone();
    m.config = Descriptor {
        media_type: if docker {
            manifest::DOCKER_CONFIG
        } else {
            manifest::OCI_CONFIG
        }
        .to_string(),
        ..config
    };
    m.layers.push(Descriptor {
        media_type: if docker {
            manifest::DOCKER_LAYER_GZIP
        } else {
            manifest::OCI_LAYER_GZIP
        }
        .to_string(),
        digest: layer_digest.to_string(),
        size: layer_size,
        platform: None,
        annotations: None,
    });
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_parse_as_docker_reads_them() {
        assert_eq!(
            parse_change("CMD [\"/bin/app\", \"-v\"]").unwrap(),
            Change::Cmd(vec!["/bin/app".into(), "-v".into()])
        );
        assert_eq!(
            parse_change("cmd echo hi").unwrap(),
            Change::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            parse_change("ENV A=1 B=\"two words\"").unwrap(),
            Change::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into())
            ])
        );
        assert_eq!(
            parse_change("ENV A one").unwrap(),
            Change::Env(vec![("A".into(), "one".into())])
        );
        assert_eq!(
            parse_change("EXPOSE 80 53/udp").unwrap(),
            Change::Expose(vec!["80/tcp".into(), "53/udp".into()])
        );
        let e = parse_change("RUN rm -rf /").unwrap_err().to_string();
        assert!(e.contains("'RUN' cannot be changed"), "{e}");
        assert!(parse_change("USER").is_err());
        assert!(parse_change("LABEL a=\"x").is_err());
    }

    #[test]
    fn the_config_gets_the_layer_history_and_changes() {
        let base = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin", "A=0"], "Cmd": ["sh"], "Healthcheck": {"Test": ["NONE"]}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created_by": "base"}]
        });
        let changes = [
            parse_change("ENV A=1").unwrap(),
            parse_change("WORKDIR /srv").unwrap(),
            parse_change("LABEL k=v").unwrap(),
        ];
        let out = plan_config(
            &base,
            &CommitPlan {
                diff_id: "sha256:bb",
                message: Some("fixed it"),
                author: None,
                created: "2026-12-07T00:00:00Z",
                created_by: "berth commit web",
                changes: &changes,
            },
        );
        assert_eq!(out["rootfs"]["diff_ids"], json!(["sha256:aa", "sha256:bb"]));
        assert_eq!(out["history"][1]["comment"], json!("fixed it"));
        assert_eq!(out["history"][1]["created_by"], json!("berth commit web"));
        assert_eq!(out["config"]["Env"], json!(["PATH=/bin", "A=1"]));
        assert_eq!(out["config"]["WorkingDir"], json!("/srv"));
        assert_eq!(out["config"]["Labels"], json!({"k": "v"}));
        assert_eq!(out["config"]["Cmd"], json!(["sh"]));
        assert_eq!(out["config"]["Healthcheck"], json!({"Test": ["NONE"]}));
        assert_eq!(out["created"], json!("2026-12-07T00:00:00Z"));
    }

    #[test]
    fn the_manifest_keeps_its_family() {
        let d = |m: &str| Descriptor {
            media_type: m.into(),
            digest: "sha256:00".into(),
            size: 1,
            platform: None,
            annotations: None,
        };
        let base = Manifest {
            schema_version: 2,
            media_type: manifest::DOCKER_MANIFEST.into(),
            config: d(manifest::DOCKER_CONFIG),
            layers: vec![d(manifest::DOCKER_LAYER_GZIP)],
            annotations: None,
        };
        let m = plan_manifest(&base, d("x"), "sha256:11", 7);
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.layers[1].media_type, manifest::DOCKER_LAYER_GZIP);
        assert_eq!(m.config.media_type, manifest::DOCKER_CONFIG);
        assert_eq!(m.layers[1].digest, "sha256:11");
    }
}
