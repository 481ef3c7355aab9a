//! `.containerignore` / `.dockerignore`: which context paths a build does not
//! see, and the glob matcher COPY sources use too. Pure.
//!
//! Followed: `moby/patternmatcher: patternmatcher.go` and
//! `ignorefile/ignorefile.go` — a line starting with `#` is a comment, each
//! pattern is cleaned and its leading `/` dropped, `!` re-includes, the last
//! pattern that matches decides, a pattern that matches a parent directory
//! matches everything under it; `*` and `?` stop at `/`, `**` crosses it,
//! `[…]` is a class and `\` escapes.

/// One pattern of an ignore file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub glob: String,
    pub exclude: bool,
}

/// The parsed ignore file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    pub patterns: Vec<Pattern>,
}

/// `path` cleaned as Go's `filepath.Clean` does, for a relative path:
/// no `.`, no empty components, `..` folded (a leading one stays).
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

impl Ignore {
    /// Parse an ignore file's text.
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclude, p) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let glob = clean(p.trim_start_matches('/'));
            patterns.push(Pattern { glob, exclude });
        }
        Ignore { patterns }
    }

    /// Whether the context path `path` (relative, `/`-separated) is ignored.
    pub fn ignored(&self, path: &str) -> bool {
        let path = clean(path);
        let mut ignored = false;
        for p in &self.patterns {
            let hit = glob_match(&p.glob, &path)
                || parents(&path).any(|parent| glob_match(&p.glob, parent));
            if hit {
                ignored = !p.exclude;
            }
        }
        ignored
    }

    /// Whether some `!` pattern might re-include something under `dir`: the
    /// walk must then enter an ignored directory (Docker's `Exclusions`).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclude)
    }
}

/// `a/b/c` → `a`, `a/b`.
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Whether `path` matches `glob` as a whole.
pub fn glob_match(glob: &str, path: &str) -> bool {
    let p: Vec<char> = glob.chars().collect();
    let s: Vec<char> = path.chars().collect();
    matches(&p, &s)
}

fn matches(p: &[char], s: &[char]) -> bool {
    let Some(&c) = p.first() else {
        return s.is_empty();
    };
    match c {
        '*' if p.get(1) == Some(&'*') => {
            let rest = &p[2..];
            if let Some(after) = rest.strip_prefix(&['/']) {
                // `**/` is zero or more whole directories.
                (0..=s.len())
                    .filter(|&i| i == 0 || s[i - 1] == '/')
                    .any(|i| matches(after, &s[i..]))
            } else {
                (0..=s.len()).any(|i| matches(rest, &s[i..]))
            }
        }
        '*' => {
            let mut i = 0;
            loop {
                if matches(&p[1..], &s[i..]) {
                    return true;
                }
                if i == s.len() || s[i] == '/' {
                    return false;
                }
                i += 1;
            }
        }
        '?' => s.first().is_some_and(|&x| x != '/') && matches(&p[1..], &s[1..]),
        '[' => match class(&p[1..]) {
            Some((set, negate, len)) => s.first().is_some_and(|&x| {
                x != '/' && (in_class(&set, x) != negate) && matches(&p[1 + len..], &s[1..])
            }),
            None => s.first() == Some(&'[') && matches(&p[1..], &s[1..]),
        },
        '\\' if p.len() > 1 => s.first() == Some(&p[1]) && matches(&p[2..], &s[1..]),
        c => s.first() == Some(&c) && matches(&p[1..], &s[1..]),
    }
}

/// A class's (low, high) ranges, whether negated, and its length.
type Class = (Vec<(char, char)>, bool, usize);

/// A `[…]` class after its `[`: its (low, high) ranges, whether negated,
/// and how many pattern characters it used (`]` included).
fn class(p: &[char]) -> Option<Class> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut set = Vec::new();
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((set, negate, i + 1));
        }
        first = false;
        let mut lo = p[i];
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
            hi = p[i + 1];
            i += 2;
        }
        set.push((lo, hi));
    }
    None
}

fn in_class(set: &[(char, char)], c: char) -> bool {
    set.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.go", "a.go"));
        assert!(!glob_match("*.go", "d/a.go"));
        assert!(glob_match("**/*.go", "d/e/a.go"));
        assert!(glob_match("**/*.go", "a.go"));
        assert!(glob_match("d/**", "d/e/f"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "a/c"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[^a-c]x", "bx"));
        assert!(glob_match("\\*", "*"));
    }

    #[test]
    fn last_match_wins_and_parents_match() {
        let i = Ignore::parse("# comment\n/node_modules\n*.md\n!README.md\n**/*.tmp\ntarget/\n");
        assert!(i.ignored("node_modules/x/y.js"));
        assert!(i.ignored("NOTES.md"));
        assert!(!i.ignored("README.md"));
        assert!(i.ignored("a/b/c.tmp"));
        assert!(i.ignored("target/debug/x"));
        assert!(!i.ignored("src/main.rs"));
        assert!(!i.ignored("docs/x.md"), "`*.md` is only the top directory");
        assert!(i.has_exclusions());
    }

    #[test]
    fn clean_as_go() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean(""), ".");
    }
}
