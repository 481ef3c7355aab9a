//! Variable interpolation as compose does it (compose-spec
//! `interpolation.md`, compose-go `template/template.go`): `$VAR`, `${VAR}`,
//! `${VAR:-default}` / `${VAR-default}` (unset or empty / unset only),
//! `${VAR:?error}` / `${VAR?error}`, `${VAR:+replacement}` /
//! `${VAR+replacement}`, and `$$` for a literal `$`. Defaults may hold
//! further `${…}`. And the project's `.env` file, which supplies values the
//! environment does not set.
//!
//! Pure: the caller hands in the environment and the `.env` text.

use std::collections::BTreeMap;

/// How deep `${A:-${B:-…}}` may nest.
const MAX_NESTING: usize = 16;

/// What an interpolation found besides its result.
#[derive(Debug, Default)]
pub struct Findings {
    /// Variables used without a value and without a default (compose
    /// warns and substitutes an empty string).
    pub unset: Vec<String>,
}

/// Expand the variables in `s`; `Err` is a `${VAR?message}` whose variable
/// is missing, or a malformed `${`.
pub fn interpolate(
    s: &str,
    env: &BTreeMap<String, String>,
    found: &mut Findings,
) -> Result<String, String> {
    expand(s, env, found, 0)
}

fn expand(
    s: &str,
    env: &BTreeMap<String, String>,
    found: &mut Findings,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_NESTING {
        return Err(format!(
            "\"${{\" nested more than {MAX_NESTING} levels deep"
        ));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body).ok_or_else(|| {
                format!("invalid interpolation \"{s}\": \"${{\" without its \"}}\"")
            })?;
            out.push_str(&braced(&body[..end], env, found, depth)?);
            rest = &body[end + 1..];
        } else {
            let n = name_len(after);
            if n == 0 {
                // A lone `$` stays as it is (compose-go does the same).
                out.push('$');
            } else {
                out.push_str(&lookup(&after[..n], env, found));
            }
            rest = &after[n..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn name_len(s: &str) -> usize {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        n = i + c.len_utf8();
    }
    n
}

/// Where the `}` that closes a `${` is, nested `${…}` skipped.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn lookup(name: &str, env: &BTreeMap<String, String>, found: &mut Findings) -> String {
    match env.get(name) {
        Some(v) => v.clone(),
        None => {
            if !found.unset.iter().any(|u| u == name) {
                found.unset.push(name.to_string());
            }
            String::new()
        }
    }
}

fn braced(
    body: &str,
    env: &BTreeMap<String, String>,
    found: &mut Findings,
    depth: usize,
) -> Result<String, String> {
    let n = name_len(body);
    let (name, op) = body.split_at(n);
    if name.is_empty() {
        return Err(format!(
            "invalid interpolation \"${{{body}}}\": expected a variable name"
        ));
    }
    let value = env.get(name);
    let set = value.is_some();
    let nonempty = value.is_some_and(|v| !v.is_empty());
    let arg = |skip: usize, found: &mut Findings| expand(&op[skip..], env, found, depth + 1);
    match op.as_bytes() {
        [] => Ok(lookup(name, env, found)),
        [b':', b'-', ..] => if nonempty { Ok(value.cloned().unwrap_or_default()) } else { arg(2, found) },
        [b'-', ..] => if set { Ok(value.cloned().unwrap_or_default()) } else { arg(1, found) },
        [b':', b'+', ..] => if nonempty { arg(2, found) } else { Ok(String::new()) },
        [b'+', ..] => if set { arg(1, found) } else { Ok(String::new()) },
        [b':', b'?', ..] if !nonempty => Err(required(name, &arg(2, found)?)),
        [b'?', ..] if !set => Err(required(name, &arg(1, found)?)),
        [b':', b'?', ..] | [b'?', ..] => Ok(value.cloned().unwrap_or_default()),
        _ => Err(format!(
            "invalid interpolation \"${{{body}}}\": expected ${{{name}}}, ${{{name}:-default}}, ${{{name}:?error}} or ${{{name}:+replacement}}"
        )),
    }
}

fn required(name: &str, message: &str) -> String {
    if message.is_empty() {
        format!("required variable {name} is missing a value")
    } else {
        format!("required variable {name} is missing a value: {message}")
    }
}

/// The variables of a `.env` file (compose-go `dotenv/parser.go`): `KEY=VALUE`
/// lines, `export ` allowed, `#` comments; single quotes literal, double
/// quotes with `\n`-style escapes; unquoted and double-quoted values
/// interpolated with what is known so far. Returns the variables and
/// (line, message) for each line it cannot read.
pub fn parse_dotenv(
    text: &str,
    env: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<(usize, String)>) {
    let mut vars = BTreeMap::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            bad.push((i + 1, format!("expected KEY=VALUE, found \"{line}\"")));
            continue;
        };
        let k = k.trim();
        if k.is_empty() || name_len(k) != k.len() {
            bad.push((i + 1, format!("invalid variable name \"{k}\"")));
            continue;
        }
        let v = v.trim();
        // Earlier lines of this file count, but the environment wins.
        let mut known = vars.clone();
        known.extend(env.iter().map(|(a, b)| (a.clone(), b.clone())));
        let value = if let Some(q) = v.strip_prefix('\'') {
            q.split_once('\'').map_or(q, |(a, _)| a).to_string()
        } else if let Some(q) = v.strip_prefix('"') {
            let inner = q.rsplit_once('"').map_or(q, |(a, _)| a);
            let unescaped = inner
                .replace("\\n", "\n")
                .replace("\\t", "\t")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\");
            interpolate(&unescaped, &known, &mut Findings::default()).unwrap_or(unescaped)
        } else {
            let bare = v.split_once(" #").map_or(v, |(a, _)| a).trim_end();
            interpolate(bare, &known, &mut Findings::default()).unwrap_or_else(|_| bare.to_string())
        };
        vars.insert(k.to_string(), value);
    }
    (vars, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("A", "1"), ("E", ""), ("P", "8080")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn i(s: &str) -> Result<String, String> {
        interpolate(s, &env(), &mut Findings::default())
    }

    #[test]
    fn forms() {
        assert_eq!(i("x$A-${A}y").unwrap(), "x1-1y");
        assert_eq!(i("${P:-80}:80").unwrap(), "8080:80");
        assert_eq!(i("${E:-d} ${E-d} ${N-d} ${N:-d}").unwrap(), "d  d d");
        assert_eq!(i("${A:+r} ${E:+r} ${E+r} ${N+r}").unwrap(), "r  r ");
        assert_eq!(i("$$A $").unwrap(), "$A $");
        assert_eq!(i("${N:-${A}-${M:-z}}").unwrap(), "1-z");
        assert!(i("${N:?set N}").unwrap_err().contains("set N"));
        assert!(i("${E:?}").is_err());
        assert_eq!(i("${E?}").unwrap(), "");
        assert!(i("${A").is_err());
        assert!(i("${A#x}").is_err());
        let mut f = Findings::default();
        assert_eq!(interpolate("$N ${N}", &env(), &mut f).unwrap(), " ");
        assert_eq!(f.unset, vec!["N".to_string()]);
    }

    #[test]
    fn dotenv() {
        let text = "# c\nexport TAG=7\nIMG=redis:${TAG}\nQ='a $TAG'\nD=\"x\\ny\"\nU=v # note\nA=from-file\nbad line\n";
        let (vars, bad) = parse_dotenv(text, &env());
        assert_eq!(vars["TAG"], "7");
        assert_eq!(vars["IMG"], "redis:7");
        assert_eq!(vars["Q"], "a $TAG");
        assert_eq!(vars["D"], "x\ny");
        assert_eq!(vars["U"], "v");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 8);
    }
}
