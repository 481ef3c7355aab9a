//! The build plan: a parsed Containerfile → its stages, the ones `--target`
//! needs, each step with its variables expanded, and the cache key of each
//! step. Pure.
//!
//! Followed: `moby/buildkit: frontend/dockerfile/dockerfile2llb/convert.go`
//! — ARGs before the first FROM are "meta args", seen only by FROM lines
//! unless a stage declares them again (`ARG NAME` then takes the global
//! value); a `--build-arg` overrides an ARG's default; ENV wins over ARG in
//! expansion; one ENV instruction expands against the environment before it
//! (`ENV a=1 b=$a` sees the old `a`); RUN, CMD, ENTRYPOINT, SHELL and
//! HEALTHCHECK are not expanded (their shell does it).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::containerfile::{Containerfile, Copy, Instruction, Op, ParseError, Pos};
use super::words::{expand, expand_heredoc, Vars};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// `FROM scratch`: nothing.
    Scratch,
    /// `FROM NAME` of an earlier stage (its index).
    Stage(usize),
    /// An image reference (a registry ref, `oci:DIR[:TAG]`, `oci-archive:FILE`).
    Image(String),
}

/// One stage, its FROM resolved; its steps still as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub index: usize,
    pub name: Option<String>,
    pub pos: Pos,
    pub base: Base,
    #[serde(skip)]
    pub instructions: Vec<Instruction>,
    /// Stages this one reads with `COPY --from` (their indexes).
    pub copies_from: Vec<usize>,
}

/// The stages of a build and which of them to build, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub stages: Vec<Stage>,
    /// The stages to build, dependencies first; the last is the target.
    pub order: Vec<usize>,
    /// The meta ARGs (before the first FROM) with their values.
    pub meta_args: Vec<(String, String)>,
    #[serde(skip)]
    pub escape: char,
    #[serde(skip)]
    pub build_args: BTreeMap<String, String>,
}

/// One step ready to run: its variables expanded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub pos: Pos,
    pub text: String,
    pub op: Op,
    /// The ARGs in effect (RUN sees them in its environment; they are part
    /// of its cache key but not of the image's config).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<(String, String)>,
}

/// Build arguments Docker predefines: usable without an ARG line, and
/// never reported as unused (`dockerfile2llb`'s `defaultArgs`).
const PREDEFINED: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

fn error(file: &str, pos: Pos, message: impl Into<String>) -> ParseError {
    ParseError {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        message: message.into(),
    }
}

/// Split into stages and choose those `target` (a stage name; `None`: the
/// last stage) needs.
pub fn plan(
    file: &str,
    cf: &Containerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<Plan, ParseError> {
    let mut meta = Vars::new();
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in &cf.instructions {
        match (&ins.op, stages.len().checked_sub(1)) {
            (Op::Arg(decls), None) => {
                for (name, default) in decls {
                    let value = match (build_args.get(name), default) {
                        (Some(v), _) => v.clone(),
                        (None, Some(d)) => expand(d, &meta, cf.escape)
                            .map_err(|m| error(file, ins.pos, format!("ARG: {m}")))?,
                        (None, None) => continue,
                    };
                    meta.insert(name.clone(), value.clone());
                    meta_args.push((name.clone(), value));
                }
            }
            (Op::From { image, name }, _) => {
                let image = expand(image, &meta, cf.escape)
                    .map_err(|m| error(file, ins.pos, format!("FROM: {m}")))?;
                let base = if image.eq_ignore_ascii_case("scratch") {
                    Base::Scratch
                } else if let Some(s) = stages
                    .iter()
                    .find(|s| s.name.as_deref() == Some(&image.to_ascii_lowercase()))
                {
                    Base::Stage(s.index)
                } else if image.is_empty() {
                    return Err(error(
                        file,
                        ins.pos,
                        "FROM: the image is empty after expansion",
                    ));
                } else {
                    Base::Image(image)
                };
                if let Some(n) = name {
                    if stages.iter().any(|s| s.name.as_ref() == Some(n)) {
                        return Err(error(file, ins.pos, format!("duplicate stage name {n:?}")));
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    name: name.clone(),
                    pos: ins.pos,
                    base,
                    instructions: Vec::new(),
                    copies_from: Vec::new(),
                });
            }
            (_, None) => {
                return Err(error(
                    file,
                    ins.pos,
                    "only ARG may come before the first FROM",
                ))
            }
            (op, Some(current)) => {
                if let Op::Copy(Copy { from: Some(f), .. }) = op {
                    let f = expand(f, &meta, cf.escape)
                        .map_err(|m| error(file, ins.pos, format!("COPY --from: {m}")))?;
                    let earlier = stages_named(&stages[..current], &f);
                    if let Some(i) = earlier {
                        stages[current].copies_from.push(i);
                    } else if f.parse::<usize>().is_ok() {
                        return Err(error(
                            file,
                            ins.pos,
                            format!("COPY --from={f}: no earlier stage has that index"),
                        ));
                    }
                }
                stages[current].instructions.push(ins.clone());
            }
        }
    }
    let Some(last) = stages.last() else {
        return Err(error(
            file,
            Pos { line: 1, column: 1 },
            "no FROM instruction",
        ));
    };
    let target = match target {
        None => last.index,
        Some(t) => stages_named(&stages, t).ok_or_else(|| {
            let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
            error(
                file,
                Pos { line: 1, column: 1 },
                format!(
                    "--target {t}: no stage of that name (stages: {})",
                    names.join(", ")
                ),
            )
        })?,
    };
    let order = order(&stages, target);
    Ok(Plan {
        stages,
        order,
        meta_args,
        escape: cf.escape,
        build_args: build_args.clone(),
    })
}

/// A stage by name or by index (as `COPY --from=0` allows), among `stages`.
fn stages_named(stages: &[Stage], name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    stages
        .iter()
        .find(|s| s.name.as_deref() == Some(&lower))
        .map(|s| s.index)
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < stages.len()))
}

/// The stages `target` needs, each after those it reads.
fn order(stages: &[Stage], target: usize) -> Vec<usize> {
    let mut need = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if need.insert(i) {
            if let Base::Stage(b) = stages[i].base {
                todo.push(b);
            }
            todo.extend(&stages[i].copies_from);
        }
    }
    // A stage only ever reads earlier ones, so the file's order is a
    // dependency order.
    need.into_iter().collect()
}

impl Plan {
    /// The images the stages to build read: FROM bases and `COPY --from`
    /// sources that name no stage, as written after the meta ARGs (the
    /// generator asks whether a declared build may pull).
    pub fn images_named(&self) -> Vec<String> {
        let mut out = Vec::new();
        for &i in &self.order {
            let s = &self.stages[i];
            if let Base::Image(r) = &s.base {
                out.push(r.clone());
            }
            for ins in &s.instructions {
                if let Op::Copy(Copy { from: Some(f), .. }) = &ins.op {
                    if stages_named(&self.stages[..i], f).is_none() {
                        out.push(f.clone());
                    }
                }
            }
        }
        out
    }

    /// The build arguments nothing declared (Docker warns about them).
    pub fn unused_args(&self) -> Vec<String> {
        let declared: BTreeSet<&str> = self
            .meta_args
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(self.stages.iter().flat_map(|s| {
                s.instructions.iter().flat_map(|i| match &i.op {
                    Op::Arg(d) => d.iter().map(|(n, _)| n.as_str()).collect(),
                    _ => Vec::new(),
                })
            }))
            .collect();
        self.build_args
            .keys()
            .filter(|k| !declared.contains(k.as_str()) && !PREDEFINED.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    /// The steps of stage `index`, expanded; `base_env` is the environment
    /// its base image's config holds (`NAME=VALUE`).
    pub fn steps(
        &self,
        file: &str,
        index: usize,
        base_env: &[String],
    ) -> Result<Vec<Step>, ParseError> {
        let mut env: Vars = base_env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut args: Vec<(String, String)> = Vec::new();
        let mut out = Vec::new();
        for ins in &self.stages[index].instructions {
            // ENV wins over ARG in expansion.
            let mut vars: Vars = args.iter().cloned().collect();
            vars.extend(env.clone());
            let x = |s: &str| expand(s, &vars, self.escape).map_err(|m| error(file, ins.pos, m));
            let op = match &ins.op {
                Op::Arg(decls) => {
                    for (name, default) in decls {
                        let value = match (self.build_args.get(name), default) {
                            (Some(v), _) => Some(v.clone()),
                            (None, Some(d)) => Some(x(d)?),
                            (None, None) => self
                                .meta_args
                                .iter()
                                .find(|(n, _)| n == name)
                                .map(|(_, v)| v.clone()),
                        };
                        args.retain(|(n, _)| n != name);
                        if let Some(v) = value {
                            args.push((name.clone(), v));
                        }
                    }
                    ins.op.clone()
                }
                Op::Env(pairs) => {
                    let mut done = Vec::new();
                    for (k, v) in pairs {
                        done.push((x(k)?, x(v)?));
                    }
                    env.extend(done.iter().cloned());
                    Op::Env(done)
                }
                Op::Label(pairs) => {
                    let mut done = Vec::new();
                    for (k, v) in pairs {
                        done.push((x(k)?, x(v)?));
                    }
                    Op::Label(done)
                }
                Op::Copy(c) => Op::Copy(Copy {
                    add: c.add,
                    from: c.from.as_deref().map(x).transpose()?,
                    chown: c.chown.as_deref().map(x).transpose()?,
                    chmod: c.chmod.as_deref().map(x).transpose()?,
                    sources: c.sources.iter().map(|s| x(s)).collect::<Result<_, _>>()?,
                    dest: x(&c.dest)?,
                    // An unquoted delimiter: the content is expanded too.
                    heredocs: c
                        .heredocs
                        .iter()
                        .map(|h| {
                            let mut h = h.clone();
                            if h.expand {
                                h.content = expand_heredoc(&h.content, &vars, self.escape)
                                    .map_err(|m| error(file, ins.pos, m))?;
                            }
                            Ok(h)
                        })
                        .collect::<Result<_, ParseError>>()?,
                }),
                Op::Workdir(s) => Op::Workdir(x(s)?),
                Op::User(s) => Op::User(x(s)?),
                Op::StopSignal(s) => Op::StopSignal(x(s)?),
                Op::Expose(v) => Op::Expose(v.iter().map(|s| x(s)).collect::<Result<_, _>>()?),
                Op::Volume(v) => Op::Volume(v.iter().map(|s| x(s)).collect::<Result<_, _>>()?),
                other => other.clone(),
            };
            let run = matches!(op, Op::Run(_));
            out.push(Step {
                pos: ins.pos,
                text: ins.text.clone(),
                op,
                args: if run { args.clone() } else { Vec::new() },
            });
        }
        Ok(out)
    }
}

/// One file a COPY or ADD reads, as its content hash sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The path relative to the source root.
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `sha256:…` of a regular file's bytes, a symlink's target, or empty.
    pub data: String,
}

fn sha256_json(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The content hash of what a COPY/ADD reads: names, modes, owners and
/// bytes, in path order (so that the walk's order does not matter).
pub fn content_hash(entries: &[Entry]) -> String {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    sha256_json(&sorted)
}

/// A step's cache key: the parent (the layer chain and config digest before
/// it), the step as expanded, the ARGs a RUN sees, and for COPY/ADD the
/// content hash. The same key means the step's result is the same.
pub fn cache_key(parent: &str, step: &Step, content: Option<&str>) -> String {
    #[derive(Serialize)]
    struct Key<'a> {
        v: u32,
        parent: &'a str,
        op: &'a Op,
        args: &'a [(String, String)],
        content: Option<&'a str>,
    }
    sha256_json(&Key {
        v: 1,
        parent,
        op: &step.op,
        args: &step.args,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::super::containerfile::parse;
    use super::*;

    fn args(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const MULTI: &str = "ARG BASE=busybox\nARG V\nFROM ${BASE}:1 AS build\nARG V\n\
        RUN make $V\nFROM scratch AS other\nFROM build AS final\nCOPY --from=build /a /b\n";

    #[test]
    fn meta_args_and_targets() {
        let cf = parse("C", MULTI).unwrap();
        let p = plan("C", &cf, &args(&[("V", "7")]), None).unwrap();
        assert_eq!(p.stages[0].base, Base::Image("busybox:1".into()));
        assert_eq!(p.stages[2].base, Base::Stage(0));
        assert_eq!(p.order, vec![0, 2]);
        let steps = p.steps("C", 0, &[]).unwrap();
        assert_eq!(steps[1].args, vec![("V".to_string(), "7".to_string())]);
        let p = plan("C", &cf, &BTreeMap::new(), Some("other")).unwrap();
        assert_eq!(p.order, vec![1]);
        let e = plan("C", &cf, &BTreeMap::new(), Some("nope")).unwrap_err();
        assert!(e.message.contains("stages: build, other, final"), "{e}");
    }

    #[test]
    fn env_expands_against_the_env_before_it() {
        let cf = parse("C", "FROM scratch\nENV a=new b=$a\nWORKDIR $HOME/$a\n").unwrap();
        let p = plan("C", &cf, &BTreeMap::new(), None).unwrap();
        let steps = p
            .steps("C", 0, &["a=old".into(), "HOME=/root".into()])
            .unwrap();
        assert_eq!(
            steps[0].op,
            Op::Env(vec![("a".into(), "new".into()), ("b".into(), "old".into())])
        );
        assert_eq!(steps[1].op, Op::Workdir("/root/new".into()));
    }

    #[test]
    fn structure_errors() {
        let e = |t: &str| plan("C", &parse("C", t).unwrap(), &BTreeMap::new(), None).unwrap_err();
        assert!(e("ENV a=1\nFROM x\n")
            .to_string()
            .contains("C:1:1: only ARG"));
        assert!(e("").message.contains("no FROM"));
        assert!(e("FROM a AS x\nFROM b AS x\n")
            .to_string()
            .contains("C:2:1: duplicate"));
        assert!(e("FROM a\nCOPY --from=3 a b\n")
            .message
            .contains("no earlier stage"));
    }

    #[test]
    fn unused_build_args_are_reported() {
        let cf = parse("C", MULTI).unwrap();
        let p = plan(
            "C",
            &cf,
            &args(&[("V", "1"), ("W", "2"), ("HTTP_PROXY", "x")]),
            None,
        )
        .unwrap();
        assert_eq!(p.unused_args(), vec!["W".to_string()]);
    }

    #[test]
    fn cache_keys_change_with_each_input() {
        let cf = parse("C", "FROM scratch\nARG V\nRUN x\nCOPY a b\n").unwrap();
        let p = plan("C", &cf, &args(&[("V", "1")]), None).unwrap();
        let s = p.steps("C", 0, &[]).unwrap();
        let k = cache_key("p", &s[1], None);
        assert_eq!(k, cache_key("p", &s[1], None));
        assert_ne!(k, cache_key("q", &s[1], None));
        let p2 = plan("C", &cf, &args(&[("V", "2")]), None).unwrap();
        assert_ne!(k, cache_key("p", &p2.steps("C", 0, &[]).unwrap()[1], None));
        let e = |data: &str| Entry {
            path: "a".into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            data: data.into(),
        };
        let (h1, h2) = (content_hash(&[e("x")]), content_hash(&[e("y")]));
        assert_ne!(
            cache_key("p", &s[2], Some(&h1)),
            cache_key("p", &s[2], Some(&h2))
        );
    }
}
