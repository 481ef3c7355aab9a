//! Golden cases for definitions → generated units (STYLE.md §6).
//!
//! Each `tests/cases/generator/NN-what/` holds `input/` (a host tree used as
//! `--root`), a `README` saying what it pins, and
//! - `expected/`: the tree `berth-generator` writes (symlinks listed in
//!   `expected/links` as `PATH -> TARGET`); absent means nothing is written;
//! - `expected-error`: the exact output of `berth check` (stderr then stdout)
//!   when the case must fail; absent means `berth check` must pass silently.
//!
//! - `verify-fails`: what `systemd-analyze verify` must object to, for a case
//!   whose units systemd rejects on purpose (every other case must verify).
//!
//! Volatile parts are replaced first: the input path by `<ROOT>`, definition
//! hashes by `<HASH>`. `BERTH_BLESS=1 cargo test --test golden` rewrites the
//! expected files (`support::golden`, the switch every golden harness
//! shares); review the diff. Adding a case means adding files only.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::golden;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/generator")
}

/// Replace the root path and definition hashes with placeholders.
fn normalise(text: &str, root: &Path) -> String {
    let text = text.replace(&root.display().to_string(), "<ROOT>");
    let marker = "BERTH_DEFINITION_HASH=";
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(marker) {
        let (head, tail) = rest.split_at(i + marker.len());
        out.push_str(head);
        let hex_len = tail.bytes().take_while(|b| b.is_ascii_hexdigit()).count();
        assert_eq!(hex_len, 64, "hash is not 64 hex digits: {tail}");
        out.push_str("<HASH>");
        rest = &tail[hex_len..];
    }
    out.push_str(rest);
    out
}

/// Run `berth --root INPUT check`: (exit code, normalised stderr + stdout).
fn run_check(input: &Path) -> (i32, String) {
    let out = Command::new(BERTH)
        .arg("--root")
        .arg(input)
        .arg("check")
        .env_remove("BERTH_ROOT")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), normalise(&text, input))
}

/// Run the real `berth-generator` personality with BERTH_ROOT=INPUT into a
/// fresh directory; returns the normalised tree.
fn run_generator(input: &Path, tmp: &Path) -> BTreeMap<String, String> {
    let bin_dir = tmp.join("bin");
    fs::create_dir_all(&bin_dir).unwrap();
    let generator = bin_dir.join("berth-generator");
    if !generator.exists() {
        std::os::unix::fs::symlink(BERTH, &generator).unwrap();
    }
    let out_dir = tmp.join("out");
    let _ = fs::remove_dir_all(&out_dir);
    fs::create_dir_all(&out_dir).unwrap();
    let early = tmp.join("early");
    let late = tmp.join("late");
    let status = Command::new(&generator)
        .arg(&out_dir)
        .arg(&early)
        .arg(&late)
        .env("BERTH_ROOT", input)
        .env_remove("SYSTEMD_SCOPE")
        .output()
        .unwrap();
    assert!(status.status.success(), "the generator must always exit 0");
    assert!(
        !early.exists() && !late.exists(),
        "writes only the normal dir"
    );
    golden::read_tree(&out_dir)
        .into_iter()
        .map(|(k, v)| (k, normalise(&v, input)))
        .collect()
}

#[test]
fn generator_cases() {
    let mut dirs: Vec<PathBuf> = fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 40,
        "expected at least 40 cases, found {}",
        dirs.len()
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in &dirs {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let input = case
            .join("input")
            .canonicalize()
            .unwrap_or_else(|_| panic!("{name}: no input/"));
        assert!(case.join("README").is_file(), "{name}: no README");

        let (code, output) = run_check(&input);
        let generated = run_generator(&input, tmp.path());
        // `berth check` fails (exit 1) exactly when the case pins its output.
        if code != 0 && code != 1 {
            failures.push(format!(
                "{name}: berth check exited {code}, expected 0 or 1"
            ));
        }
        let pinned = (code != 0).then_some(output.as_str());
        if let Err(e) = golden::check_file(&case.join("expected-error"), pinned) {
            failures.push(format!("{name}: berth check: {e}"));
        }
        for f in golden::check_tree(&case.join("expected"), &generated) {
            failures.push(format!("{name}: {f}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden failure(s) ({}=1 rewrites expected files):\n\n{}",
        failures.len(),
        golden::BLESS_VAR,
        failures.join("\n\n")
    );
}

/// The documented examples in config/examples/ must pass `berth check` and
/// render, installed as they would be.
#[test]
fn examples_pass_check() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = root.join("etc/berth/containers");
    fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for e in fs::read_dir(&examples).unwrap() {
        let p = e.unwrap().path();
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        if file.ends_with(".toml") {
            fs::copy(&p, dir.join(&file)).unwrap();
            n += 1;
        }
    }
    assert!(
        n >= 2,
        "expected example definitions in {}",
        examples.display()
    );
    // site.toml's [build] context, where the example says it is.
    let site = root.join("srv/site");
    fs::create_dir_all(&site).unwrap();
    for e in fs::read_dir(examples.join("site")).unwrap() {
        let p = e.unwrap().path();
        fs::copy(&p, site.join(p.file_name().unwrap())).unwrap();
    }
    let (code, output) = run_check(root);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(&format!("{n} definitions")), "{output}");
    let out = Command::new(BERTH)
        .args(["generate", "--dry-run"])
        .env("BERTH_ROOT", root)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("# FILE berth@").count(), n, "{text}");
    // The examples' group, once.
    assert_eq!(
        text.matches("# FILE berth-app.target\n").count(),
        1,
        "{text}"
    );
}

/// systemd itself accepts every generated drop-in: `systemd-analyze verify`
/// loads each `berth@NAME.service` from the template plus the drop-in and warns
/// about any setting it does not understand or cannot parse. The template is
/// the repository's `units/berth@.service` when present, else a stand-in with
/// the settings the generator must not contradict.
#[test]
fn generated_units_pass_systemd_analyze_verify() {
    require_program!("systemd-analyze");
    let repo_template = Path::new(env!("CARGO_MANIFEST_DIR")).join("units/berth@.service");
    let template = fs::read_to_string(&repo_template).unwrap_or_else(|_| {
        "[Unit]\nDescription=berth container %i\n[Service]\nType=notify\nNotifyAccess=main\n\
         Delegate=yes\nSlice=berth.slice\nKillMode=mixed\nExecStart=/usr/bin/berth run --systemd %i\n\
         ExecStopPost=/usr/bin/berth cleanup %i\n[Install]\nWantedBy=multi-user.target\n"
            .to_string()
    });
    // The units must verify cleanly, exit code included: point them at the
    // binary under test (not installed here) and leave out Documentation=,
    // whose man page is not installed either.
    let template: String = template
        .replace("/usr/bin/berth", BERTH)
        .lines()
        .filter(|l| !l.starts_with("Documentation="))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut checked = 0;
    let mut dirs: Vec<PathBuf> = fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected").is_dir())
        .collect();
    dirs.sort();
    for case in dirs {
        let tmp = tempfile::tempdir().unwrap();
        let units = tmp.path();
        fs::write(units.join("berth@.service"), &template).unwrap();
        let gen = Command::new(BERTH)
            .arg("--root")
            .arg(case.join("input"))
            .arg("generate")
            .arg(units)
            .output()
            .unwrap();
        // A case that pins an error still generates its valid definitions.
        assert!(
            gen.status.success() || case.join("expected-error").exists(),
            "{}: berth generate failed: {}",
            case.display(),
            String::from_utf8_lossy(&gen.stderr)
        );
        let names: Vec<String> = fs::read_dir(units)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".d").map(str::to_string))
            .filter(|n| n.starts_with("berth@"))
            .collect();
        // A drop-in may run berth too (ExecReload= of reload_command).
        for n in &names {
            let dropin = units.join(format!("{n}.d/50-berth-generated.conf"));
            let text = fs::read_to_string(&dropin).unwrap();
            fs::write(&dropin, text.replace("/usr/bin/berth", BERTH)).unwrap();
        }
        assert!(!names.is_empty(), "{}: nothing generated", case.display());
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .args(&names)
            // The trailing ":" keeps the built-in search path after ours.
            .env("SYSTEMD_UNIT_PATH", format!("{}:", units.display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let complaints: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("50-berth-generated.conf"))
            .collect();
        assert!(
            complaints.is_empty(),
            "{}: systemd rejects generated settings:\n{}",
            case.display(),
            complaints.join("\n")
        );
        // `verify-fails` names what systemd must object to (a case that
        // pins a cycle); every other case verifies with exit code 0.
        match fs::read_to_string(case.join("verify-fails")) {
            Ok(why) => assert!(
                !out.status.success() && stderr.contains(why.trim()),
                "{}: systemd-analyze verify should fail with {:?}, exited {:?}:\n{stderr}",
                case.display(),
                why.trim(),
                out.status.code()
            ),
            Err(_) => assert!(
                out.status.success(),
                "{}: systemd-analyze verify exited {:?}:\n{stderr}",
                case.display(),
                out.status.code()
            ),
        }
        checked += names.len();
    }
    assert!(checked >= 30, "only {checked} units verified");
}
