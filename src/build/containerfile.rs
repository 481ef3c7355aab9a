//! The Containerfile parser: text → instructions, each with its line and
//! column. Pure.
//!
//! Followed: `moby/buildkit: frontend/dockerfile/parser/parser.go` (parser
//! directives only at the top, a line ending in the escape character goes on,
//! comment and empty lines inside a continued line are skipped, the rest of
//! the next line is joined as written) and
//! `frontend/dockerfile/instructions/parse.go` (each instruction's flags and
//! argument forms). Variables are not expanded here: [`super::stages`] does
//! it per stage, as Docker does at dispatch.

use serde::Serialize;

use super::words::split_words;

/// One problem in a Containerfile, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Where an instruction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A parsed Containerfile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Containerfile {
    /// The escape character (`# escape=` directive; `\` by default).
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

/// One instruction: where, its text as one line (for the cache key and the
/// progress line), and what it says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instruction {
    pub pos: Pos,
    pub text: String,
    pub op: Op,
}

/// A command in shell form (run by the stage's SHELL) or exec form (a JSON
/// array, run as is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// ADD: a local tar archive is unpacked at the destination.
    pub add: bool,
    /// `--from=STAGE|IMAGE`.
    pub from: Option<String>,
    /// `--chown=USER[:GROUP]`.
    pub chown: Option<String>,
    /// `--chmod=OCTAL`.
    pub chmod: Option<String>,
    pub sources: Vec<String>,
    pub dest: String,
    /// `COPY <<EOF /path`: files written from the Containerfile itself.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heredocs: Vec<Heredoc>,
}

/// A here-document of RUN, COPY or ADD: `<<NAME` (or `<<-NAME`, leading
/// tabs stripped; `<<"NAME"`/`<<'NAME'`, not expanded) on the instruction's
/// line, its lines following up to one that is `NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    pub name: String,
    /// The lines as written, each ending with a newline.
    pub content: String,
    /// COPY/ADD expand variables in it (an unquoted NAME).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from its lines.
    pub chomp: bool,
    /// The word on the instruction's line (`<<-EOF`).
    #[serde(skip)]
    pub word: String,
}

impl Heredoc {
    /// The content, its lines' leading tabs stripped for `<<-`.
    pub fn text(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// HEALTHCHECK: its command and timings in nanoseconds (as the OCI image
/// config's `Healthcheck` holds them; 0: the runtime's default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub test: Command,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    pub retries: u32,
}

/// What an instruction says. Strings are as written (variables not yet
/// expanded) until [`super::stages`] resolves them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    From {
        image: String,
        name: Option<String>,
    },
    Run(Command),
    Copy(Copy),
    Env(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Workdir(String),
    User(String),
    Entrypoint(Command),
    Cmd(Command),
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    Volume(Vec<String>),
    /// `None`: `HEALTHCHECK NONE` (the base image's check is dropped).
    Healthcheck(Option<Health>),
    StopSignal(String),
    Shell(Vec<String>),
}

/// Parse a Containerfile; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Containerfile, ParseError> {
    let mut escape = '\\';
    let mut instructions = Vec::new();
    let mut lines = text.split('\n').enumerate().peekable();
    let mut directives = true;
    while let Some((n, raw)) = lines.next() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let err = |column: usize, message: String| ParseError {
            file: file.to_string(),
            line: n + 1,
            column,
            message,
        };
        if directives {
            match directive(raw) {
                Some((name, value)) if name == "escape" => {
                    escape = match value.as_str() {
                        "\\" => '\\',
                        "`" => '`',
                        _ => {
                            return Err(err(
                                1,
                                format!("escape directive {value:?}: must be \\ or `"),
                            ))
                        }
                    };
                    continue;
                }
                Some(_) => continue, // `syntax=`, `check=`: nothing for berth to do.
                None => directives = false,
            }
        }
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let column = raw.len() - trimmed.len() + 1;
        let (mut line, mut done) = continuation(trimmed, escape);
        while !done {
            let Some((_, next)) = lines.next() else { break };
            let next = next.strip_suffix('\r').unwrap_or(next);
            let t = next.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let (more, end) = continuation(next, escape);
            line.push_str(&more);
            done = end;
        }
        let pos = Pos {
            line: n + 1,
            column,
        };
        let mut docs = heredoc_words(&line);
        for d in &mut docs {
            loop {
                let Some((_, body)) = lines.next() else {
                    return Err(err(
                        column,
                        format!("{}: no line {:?} ends this here-document", d.word, d.name),
                    ));
                };
                let body = body.strip_suffix('\r').unwrap_or(body);
                let end = if d.chomp {
                    body.trim_start_matches('\t')
                } else {
                    body
                };
                if end == d.name {
                    break;
                }
                d.content.push_str(body);
                d.content.push('\n');
            }
        }
        let op = instruction(&line, escape, docs).map_err(|message| err(column, message))?;
        instructions.push(Instruction {
            pos,
            text: line.trim().to_string(),
            op,
        });
    }
    Ok(Containerfile {
        escape,
        instructions,
    })
}

/// The here-documents a RUN, COPY or ADD line opens, in order, their
/// content still empty. BuildKit's rule (`frontend/dockerfile/parser`
/// `reHeredoc`): a word `<<NAME`, `<<-NAME`, with an optional fd number
/// before it and NAME optionally quoted; `<<<` is a here-string.
fn heredoc_words(line: &str) -> Vec<Heredoc> {
    let t = line.trim_start();
    let end = t.find(char::is_whitespace).unwrap_or(t.len());
    if !matches!(
        t[..end].to_ascii_uppercase().as_str(),
        "RUN" | "COPY" | "ADD"
    ) {
        return Vec::new();
    }
    let (_, rest) = flags(&t[end..]);
    if rest.trim_start().starts_with('[') {
        return Vec::new();
    }
    rest.split_whitespace()
        .filter_map(|w| {
            let after = w.trim_start_matches(|c: char| c.is_ascii_digit());
            let r = after.strip_prefix("<<")?;
            if r.starts_with('<') {
                return None;
            }
            let (chomp, r) = match r.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, r),
            };
            let quoted = r.len() >= 2
                && ((r.starts_with('"') && r.ends_with('"'))
                    || (r.starts_with('\'') && r.ends_with('\'')));
            let name = if quoted { &r[1..r.len() - 1] } else { r };
            (!name.is_empty()).then(|| Heredoc {
                name: name.to_string(),
                content: String::new(),
                expand: !quoted,
                chomp,
                word: w.to_string(),
            })
        })
        .collect()
}

/// `# name=value` at the top of the file.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.trim().to_string()))
}

/// The line without a trailing escape character (and the whitespace after
/// it), and whether the instruction ends here.
fn continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end();
    match t.strip_suffix(escape) {
        Some(rest) => (rest.to_string(), false),
        None => (line.to_string(), true),
    }
}

/// Leading `--name=value` flags of an instruction; the rest of its text.
fn flags(rest: &str) -> (Vec<(String, String)>, &str) {
    let mut out = Vec::new();
    let mut rest = rest.trim_start();
    while let Some(after) = rest.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let word = &after[..end];
        rest = after[end..].trim_start();
        if word.is_empty() {
            break; // `--` ends the flags.
        }
        let (name, value) = word.split_once('=').unwrap_or((word, ""));
        out.push((name.to_ascii_lowercase(), value.to_string()));
    }
    (out, rest)
}

fn no_flags(keyword: &str, flags: &[(String, String)]) -> Result<(), String> {
    match flags.first() {
        Some((name, _)) => Err(format!("{keyword} has no flag --{name}")),
        None => Ok(()),
    }
}

fn command(rest: &str) -> Command {
    let t = rest.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return Command::Exec(v);
        }
    }
    Command::Shell(t.to_string())
}

/// A JSON array or, if the text is not one, whitespace-separated words
/// (Docker's `parseMaybeJSONToList`: quotes are not special here).
fn list(rest: &str) -> Vec<String> {
    match command(rest) {
        Command::Exec(v) => v,
        Command::Shell(s) => s.split_whitespace().map(str::to_string).collect(),
    }
}

fn non_empty(keyword: &str, rest: &str) -> Result<(), String> {
    if rest.trim().is_empty() {
        return Err(format!("{keyword} requires an argument"));
    }
    Ok(())
}

/// One logical line → its operation.
fn instruction(line: &str, escape: char, docs: Vec<Heredoc>) -> Result<Op, String> {
    let line = line.trim();
    let end = line.find(char::is_whitespace).unwrap_or(line.len());
    let keyword = line[..end].to_ascii_uppercase();
    let (flags, rest) = flags(&line[end..]);
    if !matches!(
        keyword.as_str(),
        "FROM" | "RUN" | "COPY" | "ADD" | "HEALTHCHECK"
    ) {
        no_flags(&keyword, &flags)?;
    }
    match keyword.as_str() {
        "FROM" => from(&flags, rest),
        "RUN" => {
            if let Some((name, _)) = flags.first() {
                return Err(format!(
                    "RUN --{name} is not supported by berth build (RUN takes no flags here)"
                ));
            }
            non_empty("RUN", rest)?;
            match docs.is_empty() {
                true => Ok(Op::Run(command(rest))),
                false => run_heredocs(rest, docs),
            }
        }
        "COPY" | "ADD" => copy(keyword == "ADD", &flags, rest, docs),
        "ENV" => Ok(Op::Env(name_values("ENV", rest, escape)?)),
        "LABEL" => Ok(Op::Label(name_values("LABEL", rest, escape)?)),
        "ARG" => arg(rest, escape),
        "WORKDIR" => non_empty("WORKDIR", rest).map(|()| Op::Workdir(rest.trim().to_string())),
        "USER" => non_empty("USER", rest).map(|()| Op::User(rest.trim().to_string())),
        "STOPSIGNAL" => {
            non_empty("STOPSIGNAL", rest).map(|()| Op::StopSignal(rest.trim().to_string()))
        }
        "ENTRYPOINT" => Ok(Op::Entrypoint(command(rest))),
        "CMD" => Ok(Op::Cmd(command(rest))),
        "EXPOSE" => non_empty("EXPOSE", rest).map(|()| Op::Expose(list(rest))),
        "VOLUME" => non_empty("VOLUME", rest).map(|()| Op::Volume(list(rest))),
        "SHELL" => match command(rest) {
            Command::Exec(v) if !v.is_empty() => Ok(Op::Shell(v)),
            _ => Err("SHELL requires a JSON array, e.g. SHELL [\"/bin/sh\", \"-c\"]".to_string()),
        },
        "HEALTHCHECK" => healthcheck(&flags, rest),
        "MAINTAINER" => Err("MAINTAINER is deprecated and not supported: use \
                             LABEL org.opencontainers.image.authors=\"…\""
            .to_string()),
        "ONBUILD" => Err("ONBUILD is not supported by berth build".to_string()),
        "" => Err("empty instruction".to_string()),
        other => Err(format!(
            "unknown instruction {other} (berth build knows FROM, RUN, COPY, ADD, ENV, ARG, \
             WORKDIR, USER, ENTRYPOINT, CMD, EXPOSE, LABEL, VOLUME, HEALTHCHECK, STOPSIGNAL, SHELL)"
        )),
    }
}

fn from(flags: &[(String, String)], rest: &str) -> Result<Op, String> {
    if let Some((name, _)) = flags.first() {
        return Err(if name == "platform" {
            "FROM --platform is not supported: berth builds for the host's platform only; \
             remove the flag"
                .to_string()
        } else {
            format!("FROM has no flag --{name}")
        });
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    match words.as_slice() {
        [image] => Ok(Op::From {
            image: image.to_string(),
            name: None,
        }),
        [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid {
                return Err(format!(
                    "FROM … AS {name}: a stage name starts with a letter and holds letters, \
                     digits, '_', '.' and '-'"
                ));
            }
            Ok(Op::From {
                image: image.to_string(),
                name: Some(name.to_ascii_lowercase()),
            })
        }
        _ => Err("FROM takes IMAGE or IMAGE AS NAME".to_string()),
    }
}

/// RUN with here-documents, as BuildKit's `dispatchRun`: `RUN <<EOF`
/// alone runs the document's text through the shell; otherwise the line
/// and its documents go to the shell whole, which reads them itself.
fn run_heredocs(rest: &str, docs: Vec<Heredoc>) -> Result<Op, String> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    if let ([only], [doc]) = (words.as_slice(), docs.as_slice()) {
        if *only == doc.word {
            if doc.content.starts_with("#!") {
                return Err(format!(
                    "RUN {}: a here-document starting with #! is not supported by berth \
                     build (write it with COPY <<{} and RUN the file)",
                    doc.word, doc.name
                ));
            }
            return Ok(Op::Run(Command::Shell(doc.text())));
        }
    }
    let mut full = rest.trim().to_string();
    for d in &docs {
        full.push('\n');
        full.push_str(&d.content);
        full.push_str(&d.name);
    }
    Ok(Op::Run(Command::Shell(full)))
}

fn copy(
    add: bool,
    flags: &[(String, String)],
    rest: &str,
    docs: Vec<Heredoc>,
) -> Result<Op, String> {
    let keyword = if add { "ADD" } else { "COPY" };
    let mut c = Copy {
        add,
        from: None,
        chown: None,
        chmod: None,
        sources: Vec::new(),
        dest: String::new(),
        heredocs: Vec::new(),
    };
    for (name, value) in flags {
        let slot = match name.as_str() {
            "from" if !add => &mut c.from,
            "chown" => &mut c.chown,
            "chmod" => &mut c.chmod,
            _ => {
                return Err(format!(
                    "{keyword} has no flag --{name} (berth knows {})",
                    if add {
                        "--chown, --chmod"
                    } else {
                        "--from, --chown, --chmod"
                    }
                ))
            }
        };
        if value.is_empty() {
            return Err(format!("{keyword} --{name} requires a value (--{name}=…)"));
        }
        *slot = Some(value.clone());
    }
    let mut words = list(rest);
    if words.len() < 2 {
        return Err(format!(
            "{keyword} requires at least one source and a destination"
        ));
    }
    c.dest = words.pop().unwrap_or_default();
    words.retain(|w| !docs.iter().any(|d| &d.word == w));
    c.sources = words;
    c.heredocs = docs;
    if c.from.is_some() && !c.heredocs.is_empty() {
        return Err("COPY --from takes no here-document".to_string());
    }
    Ok(Op::Copy(c))
}

/// ENV and LABEL: `NAME=VALUE…`, or the old `NAME VALUE` form (one pair).
fn name_values(keyword: &str, rest: &str, escape: char) -> Result<Vec<(String, String)>, String> {
    let rest = rest.trim();
    non_empty(keyword, rest)?;
    let words = split_words(rest, escape);
    let first = words.first().map(String::as_str).unwrap_or_default();
    if !first.contains('=') {
        // `ENV NAME some value`: the value is the rest of the line.
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let value = rest[end..].trim();
        if value.is_empty() && keyword == "ENV" {
            return Err(format!("ENV {first} requires a value (ENV {first}=VALUE)"));
        }
        return Ok(vec![(rest[..end].to_string(), value.to_string())]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((name, value)) = w.split_once('=') else {
            return Err(format!("{keyword}: {w:?} is not NAME=VALUE"));
        };
        if name.is_empty() {
            return Err(format!("{keyword}: a name cannot be empty ({w:?})"));
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

fn arg(rest: &str, escape: char) -> Result<Op, String> {
    non_empty("ARG", rest)?;
    let mut out = Vec::new();
    for w in split_words(rest.trim(), escape) {
        let (name, value) = match w.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (w.clone(), None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("ARG: {name:?} is not a valid name"));
        }
        out.push((name, value));
    }
    Ok(Op::Arg(out))
}

fn healthcheck(flags: &[(String, String)], rest: &str) -> Result<Op, String> {
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let kind = rest[..end].to_ascii_uppercase();
    let args = rest[end..].trim();
    if kind == "NONE" {
        if !flags.is_empty() || !args.is_empty() {
            return Err("HEALTHCHECK NONE takes no flags or arguments".to_string());
        }
        return Ok(Op::Healthcheck(None));
    }
    if kind != "CMD" {
        return Err("HEALTHCHECK takes [flags] CMD command, or NONE".to_string());
    }
    non_empty("HEALTHCHECK CMD", args)?;
    let mut h = Health {
        test: command(args),
        interval: 0,
        timeout: 0,
        start_period: 0,
        start_interval: 0,
        retries: 0,
    };
    for (name, value) in flags {
        let slot = match name.as_str() {
            "interval" => &mut h.interval,
            "timeout" => &mut h.timeout,
            "start-period" => &mut h.start_period,
            "start-interval" => &mut h.start_interval,
            "retries" => {
                h.retries = value
                    .parse()
                    .map_err(|_| format!("HEALTHCHECK --retries={value:?}: not a number"))?;
                continue;
            }
            _ => {
                return Err(format!(
                    "HEALTHCHECK has no flag --{name} (berth knows --interval, --timeout, \
                     --start-period, --start-interval, --retries)"
                ))
            }
        };
        *slot = duration(value).ok_or_else(|| {
            format!("HEALTHCHECK --{name}={value:?}: not a duration like 30s or 1m30s")
        })?;
    }
    Ok(Op::Healthcheck(Some(h)))
}

/// A Go duration (`1m30s`, `500ms`, `2h`) in nanoseconds.
pub fn duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult: u64 = match &rest[..unit_end] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
        rest = &rest[unit_end..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(text: &str) -> Vec<Op> {
        parse("Containerfile", text)
            .unwrap()
            .instructions
            .into_iter()
            .map(|i| i.op)
            .collect()
    }

    fn error(text: &str) -> String {
        parse("Containerfile", text).unwrap_err().to_string()
    }

    #[test]
    fn continuation_comments_and_positions() {
        let f = parse(
            "C",
            "# a comment\nFROM scratch\n\n  RUN echo a \\\n# inside\n\n   b\nCMD [\"x\"]\n",
        )
        .unwrap();
        assert_eq!(f.instructions.len(), 3);
        assert_eq!(f.instructions[1].pos, Pos { line: 4, column: 3 });
        assert_eq!(
            f.instructions[1].op,
            Op::Run(Command::Shell("echo a    b".into()))
        );
        assert_eq!(
            f.instructions[2].op,
            Op::Cmd(Command::Exec(vec!["x".into()]))
        );
    }

    #[test]
    fn escape_directive() {
        let f = parse("C", "# escape=`\nFROM scratch\nRUN a `\n b\n").unwrap();
        assert_eq!(f.escape, '`');
        assert_eq!(f.instructions[1].op, Op::Run(Command::Shell("a  b".into())));
        // After the first instruction a directive is a comment.
        let f = parse("C", "FROM scratch\n# escape=`\nRUN a \\\n b\n").unwrap();
        assert_eq!(f.escape, '\\');
        assert!(error("# escape=x\nFROM scratch\n").starts_with("Containerfile:1:1: escape"));
    }

    #[test]
    fn forms_of_each_instruction() {
        let o = ops(concat!(
            "FROM alpine:3 AS Build\n",
            "COPY --from=build --chown=1:2 a b* /dst/\n",
            "ADD [\"x y\", \"/z\"]\n",
            "ENV A=1 B=\"two words\"\n",
            "ENV OLD some value\n",
            "ARG X Y=2\n",
            "EXPOSE 80 53/udp\n",
            "HEALTHCHECK --interval=1m30s --retries=3 CMD [\"true\"]\n",
            "HEALTHCHECK NONE\n",
        ));
        assert_eq!(
            o[0],
            Op::From {
                image: "alpine:3".into(),
                name: Some("build".into())
            }
        );
        let Op::Copy(c) = &o[1] else { panic!() };
        assert_eq!(
            (c.from.as_deref(), c.chown.as_deref()),
            (Some("build"), Some("1:2"))
        );
        assert_eq!(
            (c.sources.clone(), c.dest.as_str()),
            (vec!["a".into(), "b*".into()], "/dst/")
        );
        let Op::Copy(c) = &o[2] else { panic!() };
        assert!(c.add && c.sources == ["x y"] && c.dest == "/z");
        assert_eq!(
            o[3],
            Op::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into())
            ])
        );
        assert_eq!(o[4], Op::Env(vec![("OLD".into(), "some value".into())]));
        assert_eq!(
            o[5],
            Op::Arg(vec![("X".into(), None), ("Y".into(), Some("2".into()))])
        );
        assert_eq!(o[6], Op::Expose(vec!["80".into(), "53/udp".into()]));
        let Op::Healthcheck(Some(h)) = &o[7] else {
            panic!()
        };
        assert_eq!((h.interval, h.retries), (90_000_000_000, 3));
        assert_eq!(o[8], Op::Healthcheck(None));
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(
            error("FROM scratch\n  FETCH x\n"),
            "Containerfile:2:3: unknown instruction FETCH (berth build knows FROM, RUN, COPY, \
             ADD, ENV, ARG, WORKDIR, USER, ENTRYPOINT, CMD, EXPOSE, LABEL, VOLUME, HEALTHCHECK, \
             STOPSIGNAL, SHELL)"
        );
        assert!(error("FROM --platform=linux/arm64 x\n").contains("1:1: FROM --platform"));
        assert!(error("FROM a\nCOPY x\n").contains("2:1: COPY requires"));
        assert!(error("FROM a\nSHELL sh -c\n").contains("SHELL requires a JSON array"));
        assert!(error("FROM a\nCOPY --link a b\n").contains("COPY has no flag --link"));
        assert!(error("FROM a\nHEALTHCHECK --interval=5 CMD x\n").contains("not a duration"));
        assert!(error("FROM a\nENV =x\n").contains("name cannot be empty"));
        assert!(error("FROM a\nRUN --mount=type=cache x\n").contains("RUN --mount"));
    }

    #[test]
    fn heredocs() {
        let f = parse(
            "C",
            "FROM a\nRUN <<EOF\necho one\n  echo two\nEOF\nRUN <<-'X' cat > /f && 3<<Y cat\n\tkeep $V\n\tX\ny\nY\n\
             COPY <<A <<\"B\" /dir/\n$V\nA\nb\nB\nRUN cat <<<word\n",
        )
        .unwrap();
        let o: Vec<Op> = f.instructions.iter().map(|i| i.op.clone()).collect();
        assert_eq!(
            o[1],
            Op::Run(Command::Shell("echo one\n  echo two\n".into()))
        );
        assert_eq!(
            o[2],
            Op::Run(Command::Shell(
                "<<-'X' cat > /f && 3<<Y cat\n\tkeep $V\nX\ny\nY".into()
            ))
        );
        let Op::Copy(c) = &o[3] else {
            panic!("{:?}", o[3])
        };
        assert_eq!((c.sources.len(), c.dest.as_str()), (0, "/dir/"));
        assert_eq!(
            c.heredocs
                .iter()
                .map(|h| (h.name.as_str(), h.content.as_str(), h.expand))
                .collect::<Vec<_>>(),
            [("A", "$V\n", true), ("B", "b\n", false)]
        );
        assert_eq!(o[4], Op::Run(Command::Shell("cat <<<word".into())));
        assert_eq!(f.instructions[4].pos.line, 16);
        let chomped = Heredoc {
            name: "X".into(),
            content: "\t\ta\n\tb\n".into(),
            expand: false,
            chomp: true,
            word: "<<-X".into(),
        };
        assert_eq!(chomped.text(), "a\nb\n");
        assert!(error("FROM a\nRUN <<EOF\necho\n").contains("2:1: <<EOF: no line \"EOF\""));
        assert!(error("FROM a\nRUN <<EOF\n#!/usr/bin/python3\nEOF\n").contains("#!"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(duration("1m30s"), Some(90_000_000_000));
        assert_eq!(duration("500ms"), Some(500_000_000));
        assert_eq!(duration("0"), Some(0));
        assert_eq!(duration("5"), None);
        assert_eq!(duration(""), None);
    }
}
