//! The process environment: image `Env`, then `environment_files`, then
//! `environment`, then berth's own variables.
//!
//! Pure: environment files arrive as text in the plan context.

use std::path::Path;

use super::{ImageConfigView, PlanContext, PlanError, ResolvedUser, DEFAULT_PATH};
use crate::config::Definition;

/// An ordered environment: a key keeps the place where it first appeared
/// and takes the value set last, as Docker merges image and run-time Env.
#[derive(Default)]
struct EnvList(Vec<(String, String)>);

impl EnvList {
    fn set(&mut self, k: &str, v: &str) {
        match self.0.iter_mut().find(|(key, _)| key == k) {
            Some(e) => e.1 = v.to_string(),
            None => self.0.push((k.to_string(), v.to_string())),
        }
    }
    fn has(&self, k: &str) -> bool {
        self.0.iter().any(|(key, _)| key == k)
    }
}

/// Parse an environment file: `KEY=VALUE` per line; blank lines and lines
/// starting with `#` are skipped; `export ` before a key is allowed; a value
/// wholly inside one pair of matching quotes loses them. Nothing else is
/// interpreted (no `$` expansion, no escapes), like Docker's `--env-file`.
pub fn parse_env_file(path: &Path, text: &str) -> Result<Vec<(String, String)>, PlanError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let err = |reason: String| PlanError::EnvFile {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let Some((k, v)) = line.split_once('=') else {
            return Err(err("expected KEY=VALUE".into()));
        };
        let k = k.trim_end();
        crate::config::values::validate_env_name(k).map_err(err)?;
        let v = v.trim_end_matches(['\r']);
        let v = match v.as_bytes() {
            [q @ (b'"' | b'\''), .., last] if last == q && v.len() >= 2 => &v[1..v.len() - 1],
            _ => v,
        };
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

pub(super) fn plan_env(
    def: &Definition,
    image: Option<&ImageConfigView>,
    ctx: &PlanContext,
    hostname: &str,
    user: &ResolvedUser,
) -> Result<Vec<String>, PlanError> {
    let mut env = EnvList::default();
    // Docker sets these first, so an image or the definition may override.
    env.set("PATH", DEFAULT_PATH);
    env.set("HOSTNAME", hostname);
    for e in image.map(|i| i.env.as_slice()).unwrap_or_default() {
        match e.split_once('=') {
            Some((k, v)) => env.set(k, v),
            None => env.set(e, ""),
        }
    }
    for (path, text) in &ctx.environment_files {
        for (k, v) in parse_env_file(path, text)? {
            env.set(&k, &v);
        }
    }
    for (k, v) in &def.environment {
        env.set(k, v);
    }
    // Validation keeps these apart from `environment`; they win over the
    // image's and the files' variables as the definition's own do.
    for (k, v) in &ctx.secret_env {
        env.set(k, v);
    }
    if !env.has("HOME") {
        env.set("HOME", user.home.as_deref().unwrap_or("/"));
    }
    if ctx.terminal && !env.has("TERM") {
        env.set("TERM", "xterm");
    }
    if def.service.notify == crate::config::Notify::Container {
        env.set("NOTIFY_SOCKET", super::NOTIFY_SOCKET);
    }
    // systemd's convention (man systemd-detect-virt): who runs the container.
    env.set("container", "berth");
    Ok(env.0.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::{ctx, def};

    fn user() -> ResolvedUser {
        ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: Some("/root".into()),
        }
    }

    #[test]
    fn env_file_format() {
        let p = Path::new("/etc/berth/web.env");
        let got = parse_env_file(
            p,
            "# c\n\nA=1\nexport B = x\nC=\"q u\"\nD='s'\nE=a=b\nF=\"half\n",
        )
        .unwrap();
        let want = [
            ("A", "1"),
            ("B", " x"),
            ("C", "q u"),
            ("D", "s"),
            ("E", "a=b"),
            ("F", "\"half"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
        let e = parse_env_file(p, "A=1\nnope\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment file \"/etc/berth/web.env\" line 2: expected KEY=VALUE"
        );
        assert!(parse_env_file(p, "1A=x").is_err());
    }

    #[test]
    fn precedence_image_files_definition() {
        let mut d = def();
        d.environment.insert("B".into(), "def".into());
        d.environment.insert("container".into(), "nope".into());
        let img = ImageConfigView {
            env: vec![
                "PATH=/img".into(),
                "A=img".into(),
                "B=img".into(),
                "C=img".into(),
            ],
            ..Default::default()
        };
        let mut c = ctx();
        c.environment_files = vec![("/f".into(), "A=file\nB=file\n".into())];
        let env = plan_env(&d, Some(&img), &c, "web", &user()).unwrap();
        let want = [
            "PATH=/img",
            "HOSTNAME=web",
            "A=file",
            "B=def",
            "C=img",
            "container=berth",
            "HOME=/root",
        ];
        assert_eq!(env, want.map(String::from).to_vec());
    }
}
