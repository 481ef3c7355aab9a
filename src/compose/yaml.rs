//! A compose file's YAML as a small tree whose every node knows its line and
//! column, so that each note and warning can name the line it is about.
//!
//! Built on `saphyr-parser`'s events (a pure-Rust YAML 1.2 parser): scalars
//! keep their text and whether they were plain, because compose interpolates
//! `${VAR}` in the text first and types the result after (compose-go
//! `loader.go`: interpolation runs on the raw document). YAML 1.2 also keeps
//! `no` and `8080:80` strings, as compose-go's yaml.v3 reads them.
//!
//! Pure: no I/O. Aliases are expanded under a node budget and nesting is
//! bounded, so a hostile file can neither exhaust memory ("billion laughs")
//! nor the stack of the recursive code that walks the tree.

use std::borrow::Cow;
use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// One YAML node and where it starts (line 1-based, column 1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub col: usize,
    pub kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar's text; `plain` when it was written unquoted (only a plain
    /// `null`, `~` or nothing is null, only a plain `true` a boolean).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in the file's order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A plain `null`, `~` or empty value (`key:` with nothing after it).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }
    /// The text of a scalar, as written.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
    /// The entries of a mapping.
    pub fn map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }
    /// The items of a sequence.
    pub fn seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(s) => Some(s),
            _ => None,
        }
    }
    /// What a message calls this node's type.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "null",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
    fn count(&self) -> usize {
        match &self.kind {
            Kind::Scalar { .. } => 1,
            Kind::Seq(s) => 1 + s.iter().map(Node::count).sum::<usize>(),
            Kind::Map(m) => 1 + m.iter().map(|(k, v)| k.count() + v.count()).sum::<usize>(),
        }
    }
}

/// Invalid YAML, at line:col (1-based).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// How many nodes aliases may add in all (saphyr's own loader's default).
pub const ALIAS_BUDGET: usize = 100_000;
/// How deep sequences and mappings may nest; a compose file needs about 6.
pub const MAX_DEPTH: usize = 64;

enum Frame {
    Seq(Node, usize, Vec<Node>),
    Map(Node, usize, Vec<(Node, Node)>, Option<Node>),
}

struct Builder {
    stack: Vec<Frame>,
    anchors: BTreeMap<usize, Node>,
    budget: usize,
    root: Option<Node>,
    documents: usize,
}

fn at(span: &Span) -> (usize, usize) {
    (span.start.line(), span.start.col() + 1)
}

fn err(span: &Span, message: impl Into<String>) -> YamlError {
    let (line, col) = at(span);
    YamlError {
        line,
        col,
        message: message.into(),
    }
}

/// Parse the one document of a compose file; `None` when it is empty.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: BTreeMap::new(),
        budget: ALIAS_BUDGET,
        root: None,
        documents: 0,
    };
    for event in Parser::new_from_str(text) {
        let (ev, span) = event.map_err(|e: ScanError| YamlError {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        b.event(ev, &span)?;
    }
    Ok(b.root)
}

impl Builder {
    fn event(&mut self, ev: Event<'_>, span: &Span) -> Result<(), YamlError> {
        let (line, col) = at(span);
        let blank = |kind| Node { line, col, kind };
        match ev {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(err(
                        span,
                        "a compose file holds one YAML document, this is a second one",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain && tag.is_none();
                let node = blank(Kind::Scalar {
                    text: Cow::into_owned(text),
                    plain,
                });
                self.complete(node, anchor, span)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.depth_check(span)?;
                self.stack
                    .push(Frame::Seq(blank(Kind::Seq(Vec::new())), anchor, Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                self.depth_check(span)?;
                self.stack.push(Frame::Map(
                    blank(Kind::Map(Vec::new())),
                    anchor,
                    Vec::new(),
                    None,
                ));
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(mut n, anchor, items)) => {
                    n.kind = Kind::Seq(items);
                    self.complete(n, anchor, span)?;
                }
                Some(Frame::Map(mut n, anchor, entries, _)) => {
                    check_duplicates(&entries)?;
                    n.kind = Kind::Map(entries);
                    self.complete(n, anchor, span)?;
                }
                None => return Err(err(span, "unbalanced end of a collection")),
            },
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err(err(span, "an alias to an unknown anchor"));
                };
                let n = node.count();
                if n > self.budget {
                    return Err(err(
                        span,
                        format!("aliases expand to more than {ALIAS_BUDGET} nodes"),
                    ));
                }
                self.budget -= n;
                self.complete(node, 0, span)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn depth_check(&self, span: &Span) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(err(
                span,
                format!("lists or mappings nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    /// A finished node: remember it under its anchor, hand it to its parent.
    fn complete(&mut self, node: Node, anchor: usize, span: &Span) -> Result<(), YamlError> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
            None if self.root.is_none() => self.root = Some(node),
            None => return Err(err(span, "more than one root node")),
        }
        Ok(())
    }
}

/// YAML forbids a key twice in one mapping; compose-go (yaml.v3) refuses
/// such a file, and so do we, naming both lines.
fn check_duplicates(entries: &[(Node, Node)]) -> Result<(), YamlError> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, _) in entries {
        if let Some(text) = k.scalar() {
            if text == "<<" {
                continue;
            }
            if let Some(first) = seen.insert(text, k.line) {
                return Err(YamlError {
                    line: k.line,
                    col: k.col,
                    message: format!("mapping key \"{text}\" already defined at line {first}"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: &Node) -> &str {
        n.scalar().unwrap()
    }

    #[test]
    fn keeps_lines_text_and_plainness() {
        let doc = parse(
            "services:\n  web:\n    image: \"nginx\"\n    ports: [8080:80]\n    restart: no\n",
        )
        .unwrap()
        .unwrap();
        let top = doc.map().unwrap();
        assert_eq!(s(&top[0].0), "services");
        let web = &top[0].1.map().unwrap()[0];
        assert_eq!((web.0.line, web.0.col), (2, 3));
        let keys = web.1.map().unwrap();
        assert_eq!(
            keys[0].1.kind,
            Kind::Scalar {
                text: "nginx".into(),
                plain: false
            }
        );
        assert_eq!(keys[0].1.line, 3);
        assert_eq!(s(&keys[1].1.seq().unwrap()[0]), "8080:80");
        assert_eq!(s(&keys[2].1), "no");
    }

    #[test]
    fn aliases_expand_and_nulls_are_plain_only() {
        let doc = parse("a: &x {k: v}\nb: *x\nc:\nd: 'null'\n")
            .unwrap()
            .unwrap();
        let m = doc.map().unwrap();
        assert_eq!(m[0].1, m[1].1);
        assert!(m[2].1.is_null());
        assert!(!m[3].1.is_null());
        assert!(parse("").unwrap().is_none());
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = parse("services:\n  web:\n    image: [a\n").unwrap_err();
        assert!(e.line >= 3, "{e}");
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((e.line, e.col), (3, 1));
        assert!(e.message.contains("line 1"), "{e}");
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn hostile_files_are_refused() {
        let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
        // saphyr-parser refuses this depth itself; ours stops at MAX_DEPTH.
        assert!(parse(&deep).is_err());
        let ours = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(parse(&ours).unwrap_err().message.contains("nested"));
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, c) in "bcdefghij".chars().enumerate() {
            let p = (b'a' + i as u8) as char;
            laughs.push_str(&format!(
                "{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            ));
        }
        assert!(parse(&laughs).unwrap_err().message.contains("aliases"));
    }
}
