//! The manual: one page per subcommand, made by `berth __man` from the clap
//! definitions; the hand-written pages in packaging/; every page renders with
//! no warning (`man --warnings -l`, `groff -ww`); and every flag a
//! subcommand's `--help` lists is on its page, so a flag added later without
//! docs fails here. No root needed.
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn berth(args: &[&str]) -> String {
    let out = Command::new(support::berth_bin())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Visible subcommands as `["network", "ls"]` paths, from `--help` itself.
fn subcommand_paths(prefix: &[String]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
    args.push("--help");
    let help = berth(&args);
    let mut paths = Vec::new();
    let Some(section) = help.split("\nCommands:\n").nth(1) else {
        return paths;
    };
    for line in section.lines() {
        // "  name   about": two spaces, then the name; the section ends at the
        // first line that is not indented like that.
        let Some(rest) = line.strip_prefix("  ") else {
            break;
        };
        if rest.starts_with(' ') {
            continue; // a wrapped about line
        }
        let name = rest.split_whitespace().next().unwrap_or("");
        if name.is_empty() || name == "help" {
            continue;
        }
        let mut p = prefix.to_vec();
        p.push(name.to_string());
        paths.extend(subcommand_paths(&p));
        paths.push(p);
    }
    paths
}

/// Long flags (`--name`) a help text lists in its option lines.
fn long_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| {
            l.split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '<' || c == '[')
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn render(page: &Path) -> (String, String) {
    let out = Command::new("man")
        .arg("--warnings")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "80")
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    assert!(out.status.success(), "man -l {page:?} failed");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn groff_warnings(page: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("preconv \"$1\" | groff -ww -man -Tutf8 -z")
        .arg("sh")
        .arg(page)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn generated_pages() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    berth(&["__man", dir.path().to_str().unwrap()]);
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    (dir, pages)
}

#[test]
fn every_subcommand_has_a_page_listing_each_of_its_help_flags() {
    require_program!("man");
    let (dir, _) = generated_pages();
    let paths = subcommand_paths(&[]);
    assert!(paths.len() > 20, "too few subcommands found: {paths:?}");
    for p in &paths {
        let page = dir.path().join(format!("berth-{}.1", p.join("-")));
        assert!(
            page.is_file(),
            "no page {page:?} for `berth {}`",
            p.join(" ")
        );
        let (text, _) = render(&page);
        let mut args: Vec<&str> = p.iter().map(String::as_str).collect();
        args.push("--help");
        let help = berth(&args);
        let flags = long_flags(&help);
        assert!(flags.contains("--help"), "{help}");
        for flag in flags {
            assert!(
                text.contains(&flag),
                "`berth {}` lists {flag} but its page does not:\n{text}",
                p.join(" ")
            );
        }
    }
}

#[test]
fn every_page_renders_without_warnings() {
    require_program!("man");
    require_program!("groff");
    require_program!("preconv");
    let (_dir, mut pages) = generated_pages();
    let handwritten: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e.len() == 1 && ("1"..="8").contains(&e))
            })
            .collect();
    for name in [
        "berth.1",
        "berth.container.5",
        "berth.network.5",
        "berth.toml.5",
        "berth-generator.8",
        "berth-runtime.8",
    ] {
        assert!(
            handwritten.iter().any(|p| p.ends_with(name)),
            "packaging/{name} is missing"
        );
    }
    pages.extend(handwritten);
    for page in &pages {
        let (text, warnings) = render(page);
        assert!(
            warnings.is_empty(),
            "man --warnings -l {page:?}:\n{warnings}"
        );
        assert!(text.contains("NAME"), "{page:?} rendered no NAME:\n{text}");
        let warnings = groff_warnings(page);
        assert!(warnings.is_empty(), "groff -ww {page:?}:\n{warnings}");
    }
}

#[test]
fn the_flag_scan_sees_a_flag_missing_from_a_page() {
    // The check above would pass vacuously if `long_flags` found nothing.
    let help = "Options:\n  -a, --all              Show all\n      --format <FORMAT>  Output\n";
    let flags: Vec<String> = long_flags(help).into_iter().collect();
    assert_eq!(flags, ["--all", "--format"]);
}
