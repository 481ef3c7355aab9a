//! The Containerfile's word rules: splitting an instruction's arguments into
//! words and expanding `$VAR`, `${VAR}`, `${VAR:-x}`, `${VAR:+x}`… as Docker
//! does. Pure.
//!
//! Followed: `moby/buildkit: frontend/dockerfile/parser/line_parsers.go`
//! (`parseWords`: quotes and escapes are kept, the expansion removes them) and
//! `frontend/dockerfile/shell/lex.go` (`processStopOn`, `processDoubleQuote`,
//! `processDollar`: single quotes are literal, in double quotes the escape
//! only escapes `"`, `$` and itself, an unset variable is empty).

use std::collections::BTreeMap;

/// Split `rest` into words at unquoted whitespace, keeping quotes and escapes
/// (they are removed by [`expand`]). Docker's `parseWords`.
pub fn split_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        match phase {
            Phase::Spaces if ch.is_whitespace() => continue,
            Phase::Spaces | Phase::Word if ch.is_whitespace() => {
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                phase = Phase::Spaces;
            }
            Phase::Spaces | Phase::Word => {
                phase = Phase::Word;
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    // An unquoted escape keeps itself and the next character,
                    // even a quote; at the very end it is dropped.
                    if let Some(next) = chars.next() {
                        word.push(ch);
                        word.push(next);
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                } else if ch == escape && q != '\'' {
                    if let Some(next) = chars.next() {
                        word.push(ch);
                        word.push(next);
                        continue;
                    }
                    phase = Phase::Word;
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if blank_ok || !word.is_empty() {
        words.push(word);
    }
    words
}

/// The variables an expansion sees: the stage's ARGs and ENVs so far.
pub type Vars = BTreeMap<String, String>;

/// Expand one word: quotes removed, escapes applied, variables substituted.
/// The error says what is wrong (the caller adds the line).
pub fn expand(word: &str, vars: &Vars, escape: char) -> Result<String, String> {
    let chars: Vec<char> = word.chars().collect();
    let mut lex = Lexer {
        chars: &chars,
        pos: 0,
        vars,
        escape,
        heredoc: false,
    };
    let out = lex.until(None)?;
    Ok(out)
}

/// Expand a here-document's text as a shell expands an unquoted one:
/// variables substituted, quotes kept as they are, the escape character
/// escaping only `$` and itself.
pub fn expand_heredoc(text: &str, vars: &Vars, escape: char) -> Result<String, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut lex = Lexer {
        chars: &chars,
        pos: 0,
        vars,
        escape,
        heredoc: true,
    };
    lex.until(None)
}

struct Lexer<'a> {
    chars: &'a [char],
    pos: usize,
    vars: &'a Vars,
    escape: char,
    /// A here-document: quotes are plain characters.
    heredoc: bool,
}

impl Lexer<'_> {
    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// Read up to `stop` (consumed; `None`: the end), expanding on the way.
    fn until(&mut self, stop: Option<char>) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let Some(ch) = self.next() else {
                return match stop {
                    None => Ok(out),
                    Some(s) => Err(format!("missing '{s}' in {:?}", self.text())),
                };
            };
            if Some(ch) == stop {
                return Ok(out);
            }
            match ch {
                '\'' | '"' if self.heredoc => out.push(ch),
                '\'' => out.push_str(&self.single_quoted()?),
                '"' => out.push_str(&self.double_quoted()?),
                '$' => out.push_str(&self.dollar()?),
                c if c == self.escape && self.heredoc => match self.peek() {
                    Some(n) if n == '$' || n == c => {
                        self.pos += 1;
                        out.push(n);
                    }
                    _ => out.push(c),
                },
                c if c == self.escape => {
                    if let Some(n) = self.next() {
                        out.push(n);
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn text(&self) -> String {
        self.chars.iter().collect()
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match self.next() {
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
                None => return Err(format!("unterminated single quote in {:?}", self.text())),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match self.next() {
                Some('"') => return Ok(out),
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) if c == self.escape => match self.next() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => out.push(n),
                    Some(n) => {
                        out.push(c);
                        out.push(n);
                    }
                    None => return Err(format!("unterminated double quote in {:?}", self.text())),
                },
                Some(c) => out.push(c),
                None => return Err(format!("unterminated double quote in {:?}", self.text())),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    /// After a `$`: `NAME`, `{NAME}`, `{NAME:-word}` and the other forms.
    fn dollar(&mut self) -> Result<String, String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name();
                Ok(self.vars.get(&name).cloned().unwrap_or_default())
            }
            // `$` before anything else is itself (`$1`, `$$`, a trailing `$`).
            _ => Ok("$".to_string()),
        }
    }

    fn braced(&mut self) -> Result<String, String> {
        let name = self.name();
        if name.is_empty() {
            return Err(format!("bad substitution in {:?}", self.text()));
        }
        let value = self.vars.get(&name);
        let op = self.next();
        let colon = op == Some(':');
        let op = if colon { self.next() } else { op };
        let (set, nonempty) = (value.is_some(), value.is_some_and(|v| !v.is_empty()));
        let present = if colon { nonempty } else { set };
        let value = value.cloned().unwrap_or_default();
        match op {
            Some('}') if !colon => Ok(value),
            Some('-') => {
                let word = self.until(Some('}'))?;
                Ok(if present { value } else { word })
            }
            Some('+') => {
                let word = self.until(Some('}'))?;
                Ok(if present { word } else { String::new() })
            }
            Some('?') => {
                let word = self.until(Some('}'))?;
                if present {
                    Ok(value)
                } else if word.is_empty() {
                    Err(format!("{name}: is not allowed to be unset"))
                } else {
                    Err(format!("{name}: {word}"))
                }
            }
            Some(c) => Err(format!(
                "unsupported modifier '{}{c}' in substitution of {name} (berth knows ${{{name}}}, \
                 ${{{name}:-word}}, ${{{name}-word}}, ${{{name}:+word}}, ${{{name}+word}}, ${{{name}:?msg}})",
                if colon { ":" } else { "" }
            )),
            None => Err(format!("missing '}}' in {:?}", self.text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("A", "1"), ("E", ""), ("P", "/usr/bin")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ex(w: &str) -> String {
        expand(w, &vars(), '\\').unwrap()
    }

    #[test]
    fn substitution_forms_as_docker() {
        assert_eq!(ex("$A"), "1");
        assert_eq!(ex("${A}x"), "1x");
        assert_eq!(ex("$Ax"), "");
        assert_eq!(ex("${U:-def}"), "def");
        assert_eq!(ex("${E:-def}"), "def");
        assert_eq!(ex("${E-def}"), "");
        assert_eq!(ex("${A:-def}"), "1");
        assert_eq!(ex("${A:+alt}"), "alt");
        assert_eq!(ex("${E:+alt}"), "");
        assert_eq!(ex("${E+alt}"), "alt");
        assert_eq!(ex("${U:+alt}"), "");
        assert_eq!(ex("${U:-${P}/x}"), "/usr/bin/x");
        assert_eq!(ex("a$"), "a$");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(ex("'$A'"), "$A");
        assert_eq!(ex("\"$A b\""), "1 b");
        assert_eq!(ex("\\$A"), "$A");
        assert_eq!(ex("\"a\\\"b\\n\""), "a\"b\\n");
        assert_eq!(ex("x\\ y"), "x y");
        assert_eq!(expand("`$A", &vars(), '`').unwrap(), "$A");
    }

    #[test]
    fn heredoc_text_keeps_quotes() {
        let v = vars();
        assert_eq!(
            expand_heredoc("a = \"$A\" '${A}' \\$A \\n\n", &v, '\\').unwrap(),
            format!("a = \"{x}\" '{x}' $A \\n\n", x = v["A"])
        );
    }

    #[test]
    fn errors_say_what() {
        assert!(expand("${A", &vars(), '\\')
            .unwrap_err()
            .contains("missing '}'"));
        assert!(expand("'a", &vars(), '\\')
            .unwrap_err()
            .contains("single quote"));
        assert!(expand("${U:?need U}", &vars(), '\\')
            .unwrap_err()
            .contains("U: need U"));
        assert!(expand("${A#x}", &vars(), '\\')
            .unwrap_err()
            .contains("unsupported modifier"));
        assert!(expand("${}", &vars(), '\\')
            .unwrap_err()
            .contains("bad substitution"));
    }

    #[test]
    fn words_keep_quotes_for_the_expansion() {
        assert_eq!(
            split_words(r#"a=1 b="x y" c='z w' d=e\ f"#, '\\'),
            vec!["a=1", r#"b="x y""#, "c='z w'", r"d=e\ f"]
        );
        assert_eq!(split_words("  ''  x ", '\\'), vec!["''", "x"]);
    }
}
