//! Golden files: the one bless switch and the one comparison that every
//! golden harness (`tests/golden.rs`, `tests/spec_golden.rs`) uses.
//!
//! `BERTH_BLESS=1 cargo test --test golden --test spec_golden` rewrites the
//! expected files (and removes those the code no longer produces) from what
//! the code does now; the diff is what a reviewer reads. Without it, a
//! harness reports every difference, naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The bless switch, the same for every harness.
pub const BLESS_VAR: &str = "BERTH_BLESS";

/// Whether this run rewrites expected files (`BERTH_BLESS=1`).
pub fn blessing() -> bool {
    std::env::var_os(BLESS_VAR).is_some_and(|v| v == "1")
}

/// A line diff good enough to read in a test failure.
pub fn diff(expected: &str, actual: &str) -> String {
    let mut s = String::new();
    let (e, a): (Vec<_>, Vec<_>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i).copied(), a.get(i).copied());
        if x != y {
            s.push_str(&format!(
                "line {}:\n  - {}\n  + {}\n",
                i + 1,
                x.unwrap_or("<none>"),
                y.unwrap_or("<none>")
            ));
        }
    }
    s
}

/// One expected file at `path`: `actual` is what the code produces now
/// (`None`: the case must have no such file). Blessing writes or removes
/// the file; otherwise says how it differs.
pub fn check_file(path: &Path, actual: Option<&str>) -> Result<(), String> {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if blessing() {
        match actual {
            Some(text) => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).unwrap();
                }
                fs::write(path, text).unwrap();
            }
            None => {
                let _ = fs::remove_file(path);
            }
        }
        return Ok(());
    }
    match (fs::read_to_string(path).ok(), actual) {
        (None, None) => Ok(()),
        (Some(want), Some(got)) if want == got => Ok(()),
        (Some(want), Some(got)) => Err(format!("{name} differs:\n{}", diff(&want, got))),
        (None, Some(got)) => Err(format!("there is no {name}, but the code produces:\n{got}")),
        (Some(want), None) => Err(format!(
            "{name} expects:\n{want}\nbut the code produces no such thing"
        )),
    }
}

/// A tree as relative path → content, with symlinks gathered into one
/// `links` entry (`PATH -> TARGET` lines); empty when `dir` is missing.
pub fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>, links: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        let mut entries: Vec<_> = rd.map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                links.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
            } else if ft.is_dir() {
                walk(base, &p, out, links);
            } else {
                out.insert(rel, fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    let mut links = Vec::new();
    walk(dir, dir, &mut out, &mut links);
    if !links.is_empty() {
        links.sort();
        out.insert("links".into(), links.join("\n") + "\n");
    }
    out
}

/// An expected tree at `dir` against `actual` (as [`read_tree`] reads one;
/// empty: no directory at all). Blessing replaces the tree; otherwise returns
/// one message per file that differs, is missing or is unexpected.
pub fn check_tree(dir: &Path, actual: &BTreeMap<String, String>) -> Vec<String> {
    if blessing() {
        let _ = fs::remove_dir_all(dir);
        for (rel, content) in actual {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        return Vec::new();
    }
    let expected = read_tree(dir);
    let keys: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    let mut failures = Vec::new();
    for k in keys {
        match (expected.get(k), actual.get(k)) {
            (Some(e), Some(g)) if e == g => {}
            (Some(e), Some(g)) => failures.push(format!("{k} differs:\n{}", diff(e, g))),
            (Some(_), None) => failures.push(format!("{k} was not generated")),
            (None, Some(g)) => failures.push(format!("unexpected {k}:\n{g}")),
            (None, None) => {}
        }
    }
    failures
}
