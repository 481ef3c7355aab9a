//! The pure planning modules stay pure (STYLE.md §1): no syscalls, no
//! processes, no bus, and no arrow back into the modules that act
//! (`runtime`, `sys`, `supervise`, `store`, and `image`, which fetches). One scan for all of them, over
//! each file's code before its `#[cfg(test)]` module. A new pure module is one
//! line in `PURE`; an exception is one line in `ALLOWED`, with its reason.
//! `crate::cgroup` is half pure: a pure module names `crate::cgroup::plan` or
//! `crate::cgroup::limits`,
//! never the module's cgroupfs half (`fs`, or its re-exports at the top).

use std::path::{Path, PathBuf};

/// Files or directories (every `.rs` below) that must stay pure, and whether
/// they may read files (`config` reads definitions; nothing else may).
const PURE: &[(&str, bool)] = &[
    ("src/config", true),
    ("src/generator/render.rs", false),
    ("src/spec", false),
    ("src/distribution", false),
    ("src/systemd/gvariant.rs", false),
    ("src/systemd/unit.rs", false),
    // `src/cgroup/fs.rs` acts on cgroupfs; only the plan is pure.
    ("src/cgroup/plan.rs", false),
    ("src/cgroup/limits.rs", false),
    // `network::ipam` keeps leases in files: only the plans are pure.
    ("src/network/config.rs", false),
    ("src/network/plan.rs", false),
    // `berth dns`: the DNS codec and the name lookup; `server.rs` acts.
    ("src/network/dns/codec.rs", false),
    ("src/network/dns/names.rs", false),
    // `berth compose convert`: the CLI reads and writes, the conversion is pure.
    ("src/compose", false),
    // `berth build`: the parser, the word rules, the plan and the ignore
    // patterns are pure; the layer writer and the builder act.
    ("src/build/containerfile.rs", false),
    ("src/build/words.rs", false),
    ("src/build/plan.rs", false),
    ("src/build/config.rs", false),
    ("src/build/ignore.rs", false),
    // A RUN step's spec (`run.rs` runs it).
    ("src/build/run_plan.rs", false),
];

const BANNED: &[&str] = &[
    "nix::",
    "libc::",
    "std::process",
    "zbus",
    "crate::runtime",
    "crate::sys",
    "crate::supervise",
    "crate::store",
    "crate::image",
];

/// (file, text on the line) that may stay, each with why.
const ALLOWED: &[(&str, &str, &str)] = &[(
    "src/config/load.rs",
    "libc::O_NONBLOCK",
    "a definition that is a FIFO must not block the reader: opened non-blocking",
)];

fn rust_files(p: &Path) -> Vec<PathBuf> {
    if p.is_file() {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        out.extend(rust_files(&e.path()));
    }
    out.retain(|f| f.extension().is_some_and(|x| x == "rs"));
    out
}

/// `line` names `path` as a path of its own (`nix::`, not `unix::`).
fn mentions(line: &str, path: &str) -> bool {
    line.match_indices(path).any(|(i, _)| {
        !line[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn pure_modules_make_no_syscalls_and_import_nothing_that_acts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    let mut scanned = 0;
    for (entry, reads_files) in PURE {
        for file in rust_files(&root.join(entry)) {
            scanned += 1;
            let rel = file.strip_prefix(root).unwrap().display().to_string();
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in code.lines().enumerate() {
                let line = line.split("//").next().unwrap();
                let mut banned: Vec<&str> = BANNED.to_vec();
                if !reads_files {
                    banned.push("std::fs");
                }
                // `use crate::{runtime, …}` names the module without `crate::`.
                if line.contains("use crate::{") {
                    for m in ["runtime", "sys", "supervise", "store", "image", "cgroup"] {
                        if line.contains(&format!("{{{m}")) || line.contains(&format!(" {m},")) {
                            problems.push(format!("{rel}:{}: imports crate::{m}", n + 1));
                        }
                    }
                }
                if mentions(line, "crate::cgroup")
                    && !line.contains("crate::cgroup::plan")
                    && !line.contains("crate::cgroup::limits")
                {
                    problems.push(format!(
                        "{rel}:{}: names crate::cgroup, not crate::cgroup::plan or ::limits: {}",
                        n + 1,
                        line.trim()
                    ));
                }
                for b in banned {
                    let allowed = ALLOWED
                        .iter()
                        .any(|(f, text, _)| *f == rel && line.contains(text));
                    if mentions(line, b) && !allowed {
                        problems.push(format!("{rel}:{}: uses {b}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        scanned >= 15,
        "only {scanned} files scanned: is PURE right?"
    );
    assert!(
        problems.is_empty(),
        "pure modules that act:\n{}",
        problems.join("\n")
    );
}

/// The store sits below the image module (which fetches into it): it takes
/// references and manifests from `distribution`, never from `image`, so no
/// arrow points back up.
#[test]
fn the_store_does_not_import_the_image_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for file in rust_files(&root.join("src/store")) {
        let rel = file.strip_prefix(root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let line = line.split("//").next().unwrap();
            if mentions(line, "crate::image")
                || (line.contains("use crate::{") && line.contains("image"))
            {
                problems.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "store imports image:\n{}",
        problems.join("\n")
    );
}
