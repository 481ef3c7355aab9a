//! Diagnostics: one error about one place in one definition file, rendered like a
//! compiler message (`error: FILE:LINE:COLUMN: KEY: MESSAGE`).
//!
//! Pure: formatting and offset→line/column arithmetic only.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in (the root prefix included, as opened).
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file (unreadable,
    /// too large, a required key that is missing).
    pub line: usize,
    /// 1-based column in characters; 0 when `line` is 0.
    pub column: usize,
    /// The key as written in TOML, with its table (`[resources] memory`,
    /// `[[volume]] target`, `image`); empty when no key applies.
    pub key: String,
    /// What was found and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about the whole file.
    pub fn file(file: &Path, key: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// A diagnostic at byte offset `span.start` of `text`.
    pub fn at(
        file: &Path,
        text: &str,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = line_column(text, span.start);
        Diagnostic {
            file: file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one definition (never empty when returned as an error).
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
    /// Sort by file, then position, so output reads top to bottom.
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// 1-based line and character column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    // A span may start inside a multi-byte character only if the parser says
    // so; step back to a boundary rather than panic.
    let mut start = offset;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The closest candidate to `word`, when it is close enough to be a likely typo
/// (edit distance at most a third of the word, and at most 3).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: edits plus adjacent transpositions, the
/// commonest typo in a key name ("imgae").
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_a_compiler() {
        let text = "image = \"x\"\n[resources]\nmemory = \"256Q\"\n";
        let off = text.find("\"256Q\"").unwrap();
        let d = Diagnostic::at(
            Path::new("/etc/berth/containers/web.toml"),
            text,
            off..off + 6,
            "[resources] memory",
            "invalid size \"256Q\"",
        );
        assert_eq!(
            d.to_string(),
            "error: /etc/berth/containers/web.toml:3:10: [resources] memory: invalid size \"256Q\""
        );
        let d = Diagnostic::file(Path::new("/x.toml"), "", "file is too large");
        assert_eq!(d.to_string(), "error: /x.toml: file is too large");
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("é = 1", 3), (1, 3));
        assert_eq!(line_column("é = 1", 2), (1, 2));
        assert_eq!(line_column("a\nbc", 3), (2, 2));
        assert_eq!(line_column("abc", 99), (1, 4));
    }

    #[test]
    fn suggestions() {
        let keys = ["image", "rootfs", "command"];
        assert_eq!(did_you_mean("imgae", keys), Some("image"));
        assert_eq!(did_you_mean("comand", keys), Some("command"));
        assert_eq!(did_you_mean("zzzzzz", keys), None);
    }
}
