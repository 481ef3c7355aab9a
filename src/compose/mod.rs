//! `berth compose convert`: a compose file → berth definitions, networks
//! files, volume files and a group, plus a note for everything that could
//! not be expressed (each naming the service and the YAML line).
//!
//! Pure (listed in tests/purity.rs): the caller reads the compose file and
//! `.env` and hands in the environment; this module returns the files to
//! write and the notes to print. `yaml` parses with line numbers,
//! `interpolate` expands `${VAR}`, `project` reads the top level (networks,
//! volumes, secrets, configs), `service` converts one service, `render`
//! writes TOML. Compose semantics follow the compose specification
//! (compose-spec `spec.md`) and compose-go, the loader `docker compose` uses.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub mod interpolate;
pub mod project;
pub mod render;
pub mod service;
mod service_keys;
pub mod yaml;

use interpolate::Findings;
use yaml::{Kind, Node};

/// What to convert.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The compose file as the user named it (messages quote it).
    pub file: &'a Path,
    pub text: &'a str,
    /// The project directory (the compose file's), absolute: relative bind
    /// mounts, env_file and secret files are resolved against it.
    pub project_dir: &'a Path,
    /// The environment `${VAR}` reads (the process's, over `.env`'s).
    pub env: BTreeMap<String, String>,
    /// `--group`; else the file's `name:`, else the project directory's name.
    pub group: Option<&'a str>,
}

/// The result: files relative to the output directory (`containers/`,
/// `networks/`, `volumes/`), and the notes.
#[derive(Debug, Clone, Default)]
pub struct Conversion {
    pub group: String,
    pub files: Vec<(PathBuf, String)>,
    pub notes: Vec<Note>,
}

/// How much a note matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something in the file was not converted, or converted differently.
    Warning,
    /// Something the user has to do or know.
    Note,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub level: Level,
    pub file: PathBuf,
    pub line: Option<usize>,
    pub service: Option<String>,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        let level = match self.level {
            Level::Warning => "warning",
            Level::Note => "note",
        };
        write!(f, ": {level}: ")?;
        if let Some(s) = &self.service {
            write!(f, "service \"{s}\": ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Why nothing could be converted.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{}:{}:{}: invalid YAML: {}", file.display(), .error.line, .error.col, .error.message)]
    Yaml {
        file: PathBuf,
        error: yaml::YamlError,
    },
    #[error("{}:{line}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        message: String,
    },
}

/// The conversion's running state: the environment, the notes, the first
/// fatal error (a `${VAR:?…}` without its variable).
pub struct Cx<'a> {
    pub file: &'a Path,
    pub project_dir: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub notes: Vec<Note>,
    pub fatal: Option<ComposeError>,
    unset: Findings,
    /// Variables already reported unset (compose warns once for each).
    reported: Vec<String>,
    /// The service being converted, for notes.
    pub service: Option<String>,
}

impl<'a> Cx<'a> {
    pub fn new(file: &'a Path, project_dir: &'a Path, env: &'a BTreeMap<String, String>) -> Cx<'a> {
        Cx {
            file,
            project_dir,
            env,
            notes: Vec::new(),
            fatal: None,
            unset: Findings::default(),
            reported: Vec::new(),
            service: None,
        }
    }

    fn push(&mut self, level: Level, line: Option<usize>, message: String) {
        self.notes.push(Note {
            level,
            file: self.file.to_path_buf(),
            line,
            service: self.service.clone(),
            message,
        });
    }
    /// Something not converted (or converted differently): `message` says what and why.
    pub fn warn(&mut self, n: &Node, message: impl Into<String>) {
        self.push(Level::Warning, Some(n.line), message.into());
    }
    /// Something the user must do.
    pub fn note(&mut self, n: &Node, message: impl Into<String>) {
        self.push(Level::Note, Some(n.line), message.into());
    }

    /// A scalar's text with `${VAR}` expanded; `None` for null or a wrong
    /// type (warned, naming `what`).
    pub fn text(&mut self, n: &Node, what: &str) -> Option<String> {
        if n.is_null() {
            return None;
        }
        let Some(raw) = n.scalar() else {
            self.warn(
                n,
                format!(
                    "{what}: expected a string, found {}, skipping",
                    n.type_name()
                ),
            );
            return None;
        };
        match interpolate::interpolate(raw, self.env, &mut self.unset) {
            Ok(s) => {
                self.report_unset(n);
                Some(s)
            }
            Err(message) => {
                if self.fatal.is_none() {
                    self.fatal = Some(ComposeError::Invalid {
                        file: self.file.to_path_buf(),
                        line: n.line,
                        message: format!("{what}: {message}"),
                    });
                }
                None
            }
        }
    }

    fn report_unset(&mut self, n: &Node) {
        for var in std::mem::take(&mut self.unset.unset) {
            if self.reported.contains(&var) {
                continue;
            }
            self.reported.push(var.clone());
            self.warn(
                n,
                format!("the \"{var}\" variable is not set (in the environment or .env): defaulting to a blank string"),
            );
        }
    }

    /// A boolean (`true`/`false`, also after interpolation).
    pub fn boolean(&mut self, n: &Node, what: &str) -> Option<bool> {
        match self.text(n, what)?.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            other => {
                self.warn(
                    n,
                    format!("{what}: expected true or false, found \"{other}\", skipping"),
                );
                None
            }
        }
    }

    /// A list of strings; a single string is a list of one when `single` says so.
    pub fn strings(&mut self, n: &Node, what: &str, single: bool) -> Vec<String> {
        match &n.kind {
            Kind::Seq(items) => items.iter().filter_map(|i| self.text(i, what)).collect(),
            Kind::Scalar { .. } if single => self.text(n, what).into_iter().collect(),
            _ if n.is_null() => Vec::new(),
            _ => {
                self.warn(
                    n,
                    format!("{what}: expected a list, found {}, skipping", n.type_name()),
                );
                Vec::new()
            }
        }
    }

    /// A mapping's entries with string keys, `<<` merge keys expanded (YAML
    /// 1.1's merge, which compose files use with `x-` anchors; the
    /// mapping's own keys win).
    pub fn entries<'n>(&mut self, n: &'n Node, what: &str) -> Vec<(String, &'n Node, &'n Node)> {
        if n.is_null() {
            return Vec::new();
        }
        let Some(map) = n.map() else {
            self.warn(
                n,
                format!(
                    "{what}: expected a mapping, found {}, skipping",
                    n.type_name()
                ),
            );
            return Vec::new();
        };
        let mut own: Vec<(String, &Node, &Node)> = Vec::new();
        let mut merged: Vec<(String, &Node, &Node)> = Vec::new();
        for (k, v) in map {
            let key = k.scalar().unwrap_or_default().to_string();
            if key == "<<" {
                let sources: Vec<&Node> = match &v.kind {
                    Kind::Seq(items) => items.iter().collect(),
                    _ => vec![v],
                };
                for s in sources {
                    for e in self.entries(s, what) {
                        if !merged.iter().any(|m| m.0 == e.0) {
                            merged.push(e);
                        }
                    }
                }
            } else {
                own.push((key, k, v));
            }
        }
        merged.retain(|m| !own.iter().any(|o| o.0 == m.0));
        own.extend(merged);
        own
    }

    /// A host path from the file, absolute (relative to the project
    /// directory; `~` is the invoking user's home, as compose expands it).
    pub fn host_path(&self, p: &str) -> PathBuf {
        let expanded = match p.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                let home = self.env.get("HOME").map_or("/root", String::as_str);
                format!("{home}{rest}")
            }
            _ => p.to_string(),
        };
        normalize(&self.project_dir.join(expanded))
    }
}

/// `a/./b/../c` → `a/c`, lexically (the path may not exist yet).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Convert a compose file.
pub fn convert(input: &Input) -> Result<Conversion, ComposeError> {
    let root = yaml::parse(input.text)
        .map_err(|error| ComposeError::Yaml {
            file: input.file.to_path_buf(),
            error,
        })?
        .filter(|r| !r.is_null());
    let Some(root) = root.filter(|r| r.map().is_some()) else {
        return Err(ComposeError::Invalid {
            file: input.file.to_path_buf(),
            line: 1,
            message: "expected a mapping with a \"services\" key at the top".into(),
        });
    };
    let mut cx = Cx::new(input.file, input.project_dir, &input.env);
    let project = project::read(&mut cx, &root, input)?;
    let mut conv = Conversion {
        group: project.group.clone(),
        ..Conversion::default()
    };
    let mut defs = Vec::new();
    for (name, key, node) in &project.services {
        cx.service = Some(name.clone());
        defs.push(service::convert(&mut cx, name, key, node, &project));
    }
    cx.service = None;
    service::link_dependencies(&mut cx, &mut defs);
    if let Some(e) = cx.fatal.take() {
        return Err(e);
    }
    // In the file's order, as a reader goes through it.
    cx.notes.sort_by_key(|n| n.line);
    // The notes about a service also go into its file, for whoever reads
    // it later.
    for d in &mut defs {
        for n in cx
            .notes
            .iter()
            .filter(|n| n.service.as_deref() == Some(d.name.as_str()))
        {
            let line = n.line.map(|l| format!("line {l}: ")).unwrap_or_default();
            d.doc.comments.push(format!("compose {line}{}", n.message));
        }
    }
    for d in &defs {
        conv.files.push((
            PathBuf::from(format!("containers/{}.toml", d.name)),
            d.doc.render(),
        ));
    }
    conv.files.extend(project.files);
    conv.files.sort_by(|a, b| a.0.cmp(&b.0));
    conv.notes = cx.notes;
    Ok(conv)
}
