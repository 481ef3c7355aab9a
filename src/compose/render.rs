//! The converted files as data, and their TOML text.
//!
//! A definition is built as ordered tables of keys (each key once), then
//! written in the order of DESIGN.md's example, so that a converted file reads
//! like a hand-written one. Pure.

use std::fmt::Write as _;

/// A TOML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Val>),
    /// An inline table, in order.
    Map(Vec<(String, Val)>),
}

impl Val {
    pub fn str(s: impl Into<String>) -> Val {
        Val::Str(s.into())
    }
    pub fn strs<S: AsRef<str>>(items: &[S]) -> Val {
        Val::List(items.iter().map(|s| Val::str(s.as_ref())).collect())
    }
}

/// Keys in the order they were set; setting a key again replaces it in place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table(pub Vec<(String, Val)>);

impl Table {
    pub fn set(&mut self, key: &str, v: Val) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.0.push((key.to_string(), v)),
        }
    }
    pub fn get(&self, key: &str) -> Option<&Val> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    /// Append to the list at `key` (made when missing), skipping duplicates.
    pub fn push(&mut self, key: &str, v: Val) {
        if let Some((_, Val::List(items))) = self.0.iter_mut().find(|(k, _)| k == key) {
            if !items.contains(&v) {
                items.push(v);
            }
        } else {
            self.set(key, Val::List(vec![v]));
        }
    }
    /// Set `key` in the inline table at `map` (made when missing).
    pub fn put(&mut self, map: &str, key: &str, v: Val) {
        if let Some((_, Val::Map(entries))) = self.0.iter_mut().find(|(k, _)| k == map) {
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = v,
                None => entries.push((key.to_string(), v)),
            }
        } else {
            self.set(map, Val::Map(vec![(key.to_string(), v)]));
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A file's text: header comment lines, top-level keys, `[tables]` and
/// `[[arrays]]`, in the order given.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    pub comments: Vec<String>,
    pub top: Table,
    pub tables: Vec<(&'static str, Table)>,
    pub arrays: Vec<(&'static str, Vec<Table>)>,
}

/// The order of DESIGN.md §1's example definition.
const TOP_ORDER: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "workdir",
    "user",
    "hostname",
    "environment",
    "environment_files",
    "read_only",
    "init",
    "timezone",
    "labels",
];

impl Doc {
    /// The text of the file.
    pub fn render(&self) -> String {
        let mut t = String::new();
        for c in &self.comments {
            for line in c.lines() {
                let _ = writeln!(t, "# {line}");
            }
        }
        let mut top = self.top.0.clone();
        top.sort_by_key(|(k, _)| {
            TOP_ORDER
                .iter()
                .position(|o| o == k)
                .unwrap_or(TOP_ORDER.len())
        });
        for (k, v) in &top {
            let _ = writeln!(t, "{} = {}", key(k), value(v));
        }
        let mut sections: Vec<(&str, Vec<&Table>, bool)> = Vec::new();
        for (name, table) in &self.tables {
            sections.push((name, vec![table], false));
        }
        for (name, items) in &self.arrays {
            sections.push((name, items.iter().collect(), true));
        }
        let rank = |n: &str| {
            SECTION_ORDER
                .iter()
                .position(|o| *o == n)
                .unwrap_or(SECTION_ORDER.len())
        };
        sections.sort_by_key(|(n, _, _)| rank(n));
        for (name, tables, array) in sections {
            for table in tables {
                if table.is_empty() && !array {
                    continue;
                }
                if !t.is_empty() {
                    t.push('\n');
                }
                let _ = if array {
                    writeln!(t, "[[{name}]]")
                } else {
                    writeln!(t, "[{name}]")
                };
                for (k, v) in &table.0 {
                    let _ = writeln!(t, "{} = {}", key(k), value(v));
                }
            }
        }
        t
    }
}

const SECTION_ORDER: &[&str] = &[
    "network",
    "volume",
    "tmpfs",
    "resources",
    "security",
    "health",
    "service",
    "secret",
];

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(q, "\\u{:04X}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn value(v: &Val) -> String {
    match v {
        Val::Str(s) => quote(s),
        Val::Int(i) => i.to_string(),
        Val::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.1}"),
        Val::Float(f) => f.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::List(items) => {
            let parts: Vec<String> = items.iter().map(value).collect();
            format!("[{}]", parts.join(", "))
        }
        Val::Map(entries) => {
            if entries.is_empty() {
                return "{}".into();
            }
            let parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), value(v)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_design_order_and_parses_back() {
        let mut d = Doc::default();
        d.comments.push("converted\nby berth".into());
        d.top.set("user", Val::str("1:1"));
        d.top.set("image", Val::str("nginx"));
        d.top.put("environment", "A B", Val::str("say \"hi\"\n"));
        let mut svc = Table::default();
        svc.push("requires", Val::str("db"));
        svc.push("requires", Val::str("db"));
        let mut res = Table::default();
        res.set("cpus", Val::Float(1.0));
        d.tables.push(("service", svc));
        d.tables.push(("resources", res));
        let mut v = Table::default();
        v.set("target", Val::str("/d"));
        d.arrays.push(("volume", vec![v]));
        let text = d.render();
        assert!(
            text.starts_with("# converted\n# by berth\nimage = \"nginx\"\nuser"),
            "{text}"
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["environment"]["A B"].as_str(), Some("say \"hi\"\n"));
        assert_eq!(parsed["service"]["requires"].as_array().unwrap().len(), 1);
        assert_eq!(parsed["resources"]["cpus"].as_float(), Some(1.0));
        assert!(text.find("[[volume]]").unwrap() < text.find("[resources]").unwrap());
        assert!(text.find("[resources]").unwrap() < text.find("[service]").unwrap());
        assert_eq!(quote("\u{1}"), "\"\\u0001\"");
    }
}
