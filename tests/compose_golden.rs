//! Golden tests of `berth compose convert`, through the real binary.
//!
//! Each directory in `tests/cases/compose/` is one case: `input/` holds the
//! compose file (`docker-compose.yml`, `compose.yaml`…), perhaps a `.env`,
//! an `env` file (`KEY=VALUE` lines: the whole environment the conversion
//! sees, so that a case does not depend on the test's) and an `args` file
//! (more arguments, e.g. `--group app`); `expected/` holds the files written
//! (`containers/`, `networks/`, `volumes/`), `notes` (what it printed on
//! stderr), `stdout`, and `check`: what `berth check` says of the result, as
//! the definitions root. The temporary output is `$OUT`, the input
//! directory `$PROJECT`. `BERTH_BLESS=1 cargo test --test compose_golden`
//! rewrites `expected/`; review the diff.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::golden;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/compose")
}

fn compose_file(input: &Path) -> String {
    for name in [
        "compose.yaml",
        "compose.yml",
        "docker-compose.yaml",
        "docker-compose.yml",
    ] {
        if input.join(name).is_file() {
            return name.to_string();
        }
    }
    panic!("no compose file in {}", input.display())
}

/// `berth compose convert` of a case into `out` (as `OUT/etc/berth`).
pub fn convert(input: &Path, out: &Path) -> Output {
    let mut cmd = Command::new(BERTH);
    cmd.current_dir(input)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    if let Ok(env) = std::fs::read_to_string(input.join("env")) {
        for line in env.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once('=').unwrap();
            cmd.env(k, v);
        }
    }
    cmd.args(["compose", "convert", &compose_file(input), "--out"]);
    cmd.arg(out.join("etc/berth"));
    if let Ok(args) = std::fs::read_to_string(input.join("args")) {
        cmd.args(args.split_whitespace());
    }
    cmd.output().unwrap()
}

/// `berth --root ROOT check`.
pub fn check(root: &Path) -> Output {
    Command::new(BERTH)
        .arg("--root")
        .arg(root)
        .arg("check")
        .output()
        .unwrap()
}

fn scrub(text: &str, out: &Path, input: &Path) -> String {
    text.replace(&out.display().to_string(), "$OUT")
        .replace(&input.display().to_string(), "$PROJECT")
}

fn run_case(case: &Path) -> Vec<String> {
    let input = case.join("input").canonicalize().unwrap();
    let t = tempfile::tempdir().unwrap();
    let out = t.path();
    let conv = convert(&input, out);
    let mut actual: BTreeMap<String, String> = golden::read_tree(&out.join("etc/berth"))
        .into_iter()
        .map(|(k, v)| (k, scrub(&v, out, &input)))
        .collect();
    let stderr = String::from_utf8_lossy(&conv.stderr);
    actual.insert("notes".into(), scrub(&stderr, out, &input));
    let mut stdout = scrub(&String::from_utf8_lossy(&conv.stdout), out, &input);
    if !conv.status.success() {
        stdout.push_str(&format!(
            "exit status {}\n",
            conv.status.code().unwrap_or(-1)
        ));
    } else {
        let c = check(out);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&c.stderr),
            String::from_utf8_lossy(&c.stdout)
        );
        actual.insert("check".into(), scrub(&text, out, &input));
    }
    actual.insert("stdout".into(), stdout);
    golden::check_tree(&case.join("expected"), &actual)
}

#[test]
fn compose_cases() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("input").is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 3, "only {} compose cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        for f in run_case(case) {
            failures.push(format!(
                "{}: {f}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The tutorial's app converts into definitions that `berth check` accepts
/// as they are (issue 15: "produces definitions that pass berth check").
#[test]
fn the_tutorial_app_passes_berth_check() {
    let input = cases_dir()
        .join("01-tutorial/input")
        .canonicalize()
        .unwrap();
    let t = tempfile::tempdir().unwrap();
    let conv = convert(&input, t.path());
    assert!(
        conv.status.success(),
        "{}",
        String::from_utf8_lossy(&conv.stderr)
    );
    let c = check(t.path());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&c.stderr),
        String::from_utf8_lossy(&c.stdout)
    );
    assert!(c.status.success(), "berth check failed:\n{said}");
    assert!(
        said.contains("2 definitions and 2 networks, all valid"),
        "{said}"
    );
}
