//! The GVariant text format (`uint64 123`, `'str'`, `[1, 2]`, `@as []`), as
//! runc reads `org.systemd.property.*` annotations with godbus's
//! `ParseVariant`, parsed into plain values that carry their D-Bus type.
//!
//! Pure: no D-Bus crate, no I/O; `bus.rs` turns a [`GValue`] into a wire value.
//! Supported: booleans, every numeric type, strings, object paths,
//! signatures, arrays, tuples and variants, with GVariant's type keywords and
//! `@TYPE` annotations. Dictionaries and maybe types are refused by name.

use std::fmt;

/// A D-Bus type, as far as the text format can spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GType {
    Bool,
    Byte,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    Double,
    Str,
    ObjectPath,
    Signature,
    Variant,
    Array(Box<GType>),
    Tuple(Vec<GType>),
}

impl fmt::Display for GType {
    /// The D-Bus signature.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GType::Bool => f.write_str("b"),
            GType::Byte => f.write_str("y"),
            GType::I16 => f.write_str("n"),
            GType::U16 => f.write_str("q"),
            GType::I32 => f.write_str("i"),
            GType::U32 => f.write_str("u"),
            GType::I64 => f.write_str("x"),
            GType::U64 => f.write_str("t"),
            GType::Double => f.write_str("d"),
            GType::Str => f.write_str("s"),
            GType::ObjectPath => f.write_str("o"),
            GType::Signature => f.write_str("g"),
            GType::Variant => f.write_str("v"),
            GType::Array(t) => write!(f, "a{t}"),
            GType::Tuple(ts) => {
                f.write_str("(")?;
                for t in ts {
                    write!(f, "{t}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A typed value.
#[derive(Debug, Clone, PartialEq)]
pub enum GValue {
    Bool(bool),
    Byte(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Double(f64),
    Str(String),
    ObjectPath(String),
    Signature(String),
    Variant(Box<GValue>),
    Array { elem: GType, items: Vec<GValue> },
    Tuple(Vec<GValue>),
}

impl GValue {
    pub fn gtype(&self) -> GType {
        match self {
            GValue::Bool(_) => GType::Bool,
            GValue::Byte(_) => GType::Byte,
            GValue::I16(_) => GType::I16,
            GValue::U16(_) => GType::U16,
            GValue::I32(_) => GType::I32,
            GValue::U32(_) => GType::U32,
            GValue::I64(_) => GType::I64,
            GValue::U64(_) => GType::U64,
            GValue::Double(_) => GType::Double,
            GValue::Str(_) => GType::Str,
            GValue::ObjectPath(_) => GType::ObjectPath,
            GValue::Signature(_) => GType::Signature,
            GValue::Variant(_) => GType::Variant,
            GValue::Array { elem, .. } => GType::Array(Box::new(elem.clone())),
            GValue::Tuple(items) => GType::Tuple(items.iter().map(GValue::gtype).collect()),
        }
    }

    /// An array of `u32`, e.g. systemd's `PIDs`.
    pub fn u32_array(items: &[u32]) -> GValue {
        GValue::Array {
            elem: GType::U32,
            items: items.iter().map(|v| GValue::U32(*v)).collect(),
        }
    }

    /// An array of bytes, e.g. systemd's `AllowedCPUs` mask.
    pub fn bytes(items: &[u8]) -> GValue {
        GValue::Array {
            elem: GType::Byte,
            items: items.iter().map(|v| GValue::Byte(*v)).collect(),
        }
    }
}

/// What went wrong, and at which byte of the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at offset {offset}")]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

/// Parse one GVariant text value (the whole input).
pub fn parse(text: &str) -> Result<GValue, ParseError> {
    let mut p = Parser { s: text, pos: 0 };
    let node = p.value()?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.err(format!(
            "unexpected '{}' after the value",
            &text[p.pos..].chars().next().unwrap_or(' ')
        )));
    }
    resolve(&node, None).map_err(|message| ParseError {
        offset: node.offset,
        message,
    })
}

/// Parse a D-Bus signature of one complete type.
pub fn parse_signature(sig: &str) -> Result<GType, String> {
    let mut chars = sig.chars().peekable();
    let t = sig_one(&mut chars, sig)?;
    if chars.peek().is_some() {
        return Err(format!("signature '{sig}' holds more than one type"));
    }
    Ok(t)
}

fn sig_one(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    sig: &str,
) -> Result<GType, String> {
    let c = chars
        .next()
        .ok_or_else(|| format!("signature '{sig}' ends early"))?;
    Ok(match c {
        'b' => GType::Bool,
        'y' => GType::Byte,
        'n' => GType::I16,
        'q' => GType::U16,
        'i' => GType::I32,
        'u' => GType::U32,
        'x' => GType::I64,
        't' => GType::U64,
        'd' => GType::Double,
        's' => GType::Str,
        'o' => GType::ObjectPath,
        'g' => GType::Signature,
        'v' => GType::Variant,
        'a' => GType::Array(Box::new(sig_one(chars, sig)?)),
        '(' => {
            let mut ts = Vec::new();
            while chars.peek() != Some(&')') {
                ts.push(sig_one(chars, sig)?);
            }
            chars.next();
            GType::Tuple(ts)
        }
        c => {
            return Err(format!(
                "signature '{sig}': type '{c}' is not supported (expected one of bynqiuxtdsogv, a, ( ))"
            ))
        }
    })
}

/// The syntax tree, before types are decided: a number's type may come from
/// its neighbours in an array (`[uint64 1, 2]`).
#[derive(Debug, Clone)]
struct Node {
    offset: usize,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Typed(GType, Box<Node>),
    Bool(bool),
    Number(String),
    Str(String),
    Array(Vec<Node>),
    Tuple(Vec<Node>),
    Variant(Box<Node>),
}

const KEYWORDS: &[(&str, GType)] = &[
    ("boolean", GType::Bool),
    ("byte", GType::Byte),
    ("int16", GType::I16),
    ("uint16", GType::U16),
    ("int32", GType::I32),
    ("uint32", GType::U32),
    ("int64", GType::I64),
    ("uint64", GType::U64),
    ("double", GType::Double),
    ("string", GType::Str),
    ("objectpath", GType::ObjectPath),
    ("signature", GType::Signature),
];

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, message: String) -> ParseError {
        ParseError {
            offset: self.pos,
            message,
        }
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn word(&mut self) -> &str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !(c.is_ascii_alphanumeric() || c == '_') {
                break;
            }
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn value(&mut self) -> Result<Node, ParseError> {
        self.skip_ws();
        let offset = self.pos;
        let kind = match self.peek() {
            None => return Err(self.err("expected a value, found the end".into())),
            Some('@') => {
                self.pos += 1;
                let start = self.pos;
                // Signature characters are letters and parentheses; a
                // value then starts (usually after a space).
                while let Some(c) = self.peek() {
                    if !(c.is_ascii_alphabetic() || c == '(' || c == ')') {
                        break;
                    }
                    self.pos += 1;
                }
                let sig = &self.s[start..self.pos];
                let t = parse_signature(sig).map_err(|m| ParseError { offset, message: m })?;
                Kind::Typed(t, Box::new(self.value()?))
            }
            Some('\'') | Some('"') => Kind::Str(self.string()?),
            Some('[') => Kind::Array(self.list('[', ']')?),
            Some('(') => Kind::Tuple(self.list('(', ')')?),
            Some('<') => {
                self.pos += 1;
                let inner = self.value()?;
                self.skip_ws();
                if self.peek() != Some('>') {
                    return Err(self.err("expected '>' to close the variant".into()));
                }
                self.pos += 1;
                Kind::Variant(Box::new(inner))
            }
            Some('{') => {
                return Err(self.err(
                    "dictionaries are not supported (expected a boolean, number, string, array, tuple or variant)"
                        .into(),
                ))
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if !(c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.')) {
                        break;
                    }
                    self.pos += 1;
                }
                Kind::Number(self.s[start..self.pos].to_string())
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let w = self.word().to_string();
                match w.as_str() {
                    "true" => Kind::Bool(true),
                    "false" => Kind::Bool(false),
                    "inf" | "nan" => Kind::Number(w),
                    _ => match KEYWORDS.iter().find(|(k, _)| *k == w) {
                        Some((_, t)) => Kind::Typed(t.clone(), Box::new(self.value()?)),
                        None => {
                            return Err(ParseError {
                                offset,
                                message: format!(
                                    "unknown word '{w}' (expected true, false, a number, a quoted string, or a type such as uint64, int32, string)"
                                ),
                            })
                        }
                    },
                }
            }
            Some(c) => return Err(self.err(format!("unexpected '{c}' (expected a value)"))),
        };
        Ok(Node { offset, kind })
    }

    fn list(&mut self, open: char, close: char) -> Result<Vec<Node>, ParseError> {
        debug_assert_eq!(self.peek(), Some(open));
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(items);
            }
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(c) if c == close => {}
                _ => return Err(self.err(format!("expected ',' or '{close}'"))),
            }
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let quote = self.peek().unwrap_or('\'');
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(ParseError {
                    offset: start,
                    message: format!("string is not closed with {quote}"),
                });
            };
            self.pos += c.len_utf8();
            match c {
                c if c == quote => return Ok(out),
                '\\' => {
                    let Some(e) = self.peek() else { continue };
                    self.pos += e.len_utf8();
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\u{7}'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'v' => out.push('\u{b}'),
                        'u' | 'U' => {
                            let n = if e == 'u' { 4 } else { 8 };
                            let hex = self.s.get(self.pos..self.pos + n).unwrap_or("");
                            let ch = u32::from_str_radix(hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| {
                                    self.err(format!("'\\{e}' needs {n} hex digits of a character"))
                                })?;
                            self.pos += n;
                            out.push(ch);
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

fn is_float_literal(s: &str) -> bool {
    !s.starts_with("0x")
        && !s.starts_with("-0x")
        && (s.contains('.') || s.contains('e') || s.contains('E') || s == "inf" || s == "nan")
}

/// The type a node has on its own, when it has one (a bare number has not).
fn definite_type(n: &Node) -> Option<GType> {
    match &n.kind {
        Kind::Typed(t, _) => Some(t.clone()),
        Kind::Bool(_) => Some(GType::Bool),
        Kind::Str(_) => Some(GType::Str),
        Kind::Variant(_) => Some(GType::Variant),
        Kind::Number(_) => None,
        Kind::Array(items) => element_type(items).ok().map(|t| GType::Array(Box::new(t))),
        Kind::Tuple(items) => items
            .iter()
            .map(|i| definite_type(i).or_else(|| default_type(i)))
            .collect::<Option<Vec<_>>>()
            .map(GType::Tuple),
    }
}

/// A bare number's type when nothing else decides it: int32, or double
/// when written with a point or exponent (GVariant's rule).
fn default_type(n: &Node) -> Option<GType> {
    match &n.kind {
        Kind::Number(s) if is_float_literal(s) => Some(GType::Double),
        Kind::Number(_) => Some(GType::I32),
        _ => None,
    }
}

fn element_type(items: &[Node]) -> Result<GType, String> {
    if let Some(t) = items.iter().find_map(definite_type) {
        return Ok(t);
    }
    if items.is_empty() {
        return Err("cannot tell the element type of an empty array (write it with its type, e.g. @as [] or @au [])".into());
    }
    let all_numbers = items.iter().all(|i| matches!(i.kind, Kind::Number(_)));
    if all_numbers {
        let float = items
            .iter()
            .any(|i| matches!(&i.kind, Kind::Number(s) if is_float_literal(s)));
        return Ok(if float { GType::Double } else { GType::I32 });
    }
    Err("cannot tell the element type of this array (annotate it, e.g. @aas [[]])".into())
}

fn type_name(t: &GType) -> String {
    match t {
        GType::Bool => "boolean".into(),
        GType::Byte => "byte".into(),
        GType::I16 => "int16".into(),
        GType::U16 => "uint16".into(),
        GType::I32 => "int32".into(),
        GType::U32 => "uint32".into(),
        GType::I64 => "int64".into(),
        GType::U64 => "uint64".into(),
        GType::Double => "double".into(),
        GType::Str => "string".into(),
        GType::ObjectPath => "objectpath".into(),
        GType::Signature => "signature".into(),
        GType::Variant => "variant".into(),
        t => format!("'{t}'"),
    }
}

fn parse_int<T: TryFrom<i128>>(s: &str, t: &GType) -> Result<T, String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i128::from_str_radix(hex, 16),
        None => digits.parse::<i128>(),
    }
    .map_err(|_| format!("'{s}' is not a whole number, expected {}", type_name(t)))?;
    let v = if neg { -magnitude } else { magnitude };
    T::try_from(v).map_err(|_| format!("{s} is out of range for {}", type_name(t)))
}

fn resolve(n: &Node, want: Option<&GType>) -> Result<GValue, String> {
    let mismatch = |got: &str, w: &GType| format!("expected {}, got {got}", type_name(w));
    match &n.kind {
        Kind::Typed(t, inner) => {
            if let Some(w) = want {
                if w != t && *w != GType::Variant {
                    return Err(mismatch(&type_name(t), w));
                }
            }
            resolve(inner, Some(t))
        }
        Kind::Bool(b) => match want {
            None | Some(GType::Bool) => Ok(GValue::Bool(*b)),
            Some(w) => Err(mismatch("a boolean", w)),
        },
        Kind::Number(s) => {
            let t = match want {
                Some(w) => w.clone(),
                None => default_type(n).unwrap_or(GType::I32),
            };
            Ok(match &t {
                GType::Byte => GValue::Byte(parse_int(s, &t)?),
                GType::I16 => GValue::I16(parse_int(s, &t)?),
                GType::U16 => GValue::U16(parse_int(s, &t)?),
                GType::I32 => GValue::I32(parse_int(s, &t)?),
                GType::U32 => GValue::U32(parse_int(s, &t)?),
                GType::I64 => GValue::I64(parse_int(s, &t)?),
                GType::U64 => GValue::U64(parse_int(s, &t)?),
                GType::Double => GValue::Double(
                    s.parse::<f64>()
                        .map_err(|_| format!("'{s}' is not a number, expected double"))?,
                ),
                w => return Err(mismatch(&format!("the number {s}"), w)),
            })
        }
        Kind::Str(s) => match want {
            None | Some(GType::Str) => Ok(GValue::Str(s.clone())),
            Some(GType::ObjectPath) => {
                let ok = s == "/"
                    || (s.starts_with('/')
                        && !s.ends_with('/')
                        && s[1..].split('/').all(|c| {
                            !c.is_empty()
                                && c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        }));
                if ok {
                    Ok(GValue::ObjectPath(s.clone()))
                } else {
                    Err(format!("'{s}' is not an object path (expected /a/b)"))
                }
            }
            Some(GType::Signature) => {
                parse_signature(s)?;
                Ok(GValue::Signature(s.clone()))
            }
            Some(w) => Err(mismatch("a string", w)),
        },
        Kind::Array(items) => {
            let elem = match want {
                Some(GType::Array(e)) => (**e).clone(),
                None => element_type(items)?,
                Some(w) => return Err(mismatch("an array", w)),
            };
            let items = items
                .iter()
                .map(|i| resolve(i, Some(&elem)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(GValue::Array { elem, items })
        }
        Kind::Tuple(items) => match want {
            None => Ok(GValue::Tuple(
                items
                    .iter()
                    .map(|i| resolve(i, None))
                    .collect::<Result<_, _>>()?,
            )),
            Some(GType::Tuple(ts)) if ts.len() == items.len() => Ok(GValue::Tuple(
                items
                    .iter()
                    .zip(ts)
                    .map(|(i, t)| resolve(i, Some(t)))
                    .collect::<Result<_, _>>()?,
            )),
            Some(w) => Err(mismatch(&format!("a tuple of {}", items.len()), w)),
        },
        Kind::Variant(inner) => match want {
            None | Some(GType::Variant) => Ok(GValue::Variant(Box::new(resolve(inner, None)?))),
            Some(w) => Err(mismatch("a variant", w)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> GValue {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn scalars_as_runc_annotations_write_them() {
        assert_eq!(ok("uint64 123"), GValue::U64(123));
        assert_eq!(ok("true"), GValue::Bool(true));
        assert_eq!(ok(" false "), GValue::Bool(false));
        assert_eq!(
            ok("'inactive-or-failed'"),
            GValue::Str("inactive-or-failed".into())
        );
        assert_eq!(ok("\"str\""), GValue::Str("str".into()));
        assert_eq!(ok("int32 -1"), GValue::I32(-1));
        assert_eq!(ok("5"), GValue::I32(5));
        assert_eq!(ok("1.5"), GValue::Double(1.5));
        assert_eq!(ok("byte 0x10"), GValue::Byte(16));
        assert_eq!(ok("@t 7"), GValue::U64(7));
        assert_eq!(ok("objectpath '/a/b'"), GValue::ObjectPath("/a/b".into()));
        assert_eq!(ok(r#"'it\'s \u00e9'"#), GValue::Str("it's é".into()));
    }

    #[test]
    fn arrays_take_their_type_from_elements_or_annotation() {
        assert_eq!(
            ok("[1, 2]"),
            GValue::Array {
                elem: GType::I32,
                items: vec![GValue::I32(1), GValue::I32(2)]
            }
        );
        assert_eq!(
            ok("@as []"),
            GValue::Array {
                elem: GType::Str,
                items: vec![]
            }
        );
        assert_eq!(
            ok("['a', 'b']"),
            GValue::Array {
                elem: GType::Str,
                items: vec![GValue::Str("a".into()), GValue::Str("b".into())]
            }
        );
        assert_eq!(
            ok("[2, uint64 1]").gtype(),
            GType::Array(Box::new(GType::U64))
        );
        assert_eq!(ok("[1, 2.5]").gtype().to_string(), "ad");
        assert_eq!(ok("@au [1, 2]"), GValue::u32_array(&[1, 2]));
        assert_eq!(ok("[('/dev/null', 'rw')]").gtype().to_string(), "a(ss)");
        assert_eq!(ok("<uint32 1>"), GValue::Variant(Box::new(GValue::U32(1))));
    }

    #[test]
    fn errors_say_what_was_expected() {
        let e = |s: &str| parse(s).unwrap_err().to_string();
        assert!(e("[]").contains("empty array"), "{}", e("[]"));
        assert!(e("uint64 -1").contains("out of range for uint64"));
        assert!(e("uint64 'x'").contains("expected uint64, got a string"));
        assert!(e("bogus").contains("unknown word 'bogus'"));
        assert!(e("'open").contains("not closed"));
        assert!(e("[1, 'a']").contains("expected string, got the number 1"));
        assert!(e("{'a': 1}").contains("dictionaries are not supported"));
        assert!(e("1 2").contains("after the value"));
        assert!(e("@z 1").contains("not supported"));
        assert!(e("int32 99999999999").contains("out of range"));
    }

    #[test]
    fn signatures_round_trip() {
        for s in [
            "b", "y", "n", "q", "i", "u", "x", "t", "d", "s", "o", "g", "v", "as", "a(sst)", "aay",
        ] {
            assert_eq!(parse_signature(s).unwrap().to_string(), s);
        }
        assert!(parse_signature("a").is_err());
        assert!(parse_signature("ss").is_err());
    }
}
