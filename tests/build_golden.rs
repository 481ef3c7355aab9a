//! Golden cases of the Containerfile parser and the build plan (pure; no
//! root). Each `tests/cases/build/NN-what/` holds a `Containerfile`, maybe
//! an `args` file (lines `--build-arg K=V`, `--target STAGE`, `--base-env
//! K=V`: the environment of every stage's base image), and `expected`: the
//! stages, the order `--target` needs and each stage's steps with their
//! variables expanded (JSON), or the error. `BERTH_BLESS=1 cargo test --test
//! build_golden` rewrites `expected`; review the diff.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth::build::{containerfile, plan};
use support::golden;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/build")
}

fn render(case: &Path) -> String {
    let text = std::fs::read_to_string(case.join("Containerfile")).unwrap();
    let mut build_args = BTreeMap::new();
    let mut target = None;
    let mut base_env = Vec::new();
    if let Ok(args) = std::fs::read_to_string(case.join("args")) {
        for line in args.lines().filter(|l| !l.trim().is_empty()) {
            let (flag, value) = line.split_once(' ').unwrap();
            match flag {
                "--build-arg" => {
                    let (k, v) = value.split_once('=').unwrap();
                    build_args.insert(k.to_string(), v.to_string());
                }
                "--target" => target = Some(value.to_string()),
                "--base-env" => base_env.push(value.to_string()),
                other => panic!("{}: unknown args line {other}", case.display()),
            }
        }
    }
    let result = containerfile::parse("Containerfile", &text).and_then(|cf| {
        let p = plan::plan("Containerfile", &cf, &build_args, target.as_deref())?;
        let mut steps = BTreeMap::new();
        for &i in &p.order {
            steps.insert(i, p.steps("Containerfile", i, &base_env)?);
        }
        Ok(serde_json::json!({
            "stages": p.stages,
            "order": p.order,
            "meta_args": p.meta_args,
            "unused_args": p.unused_args(),
            "steps": steps,
        }))
    });
    match result {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap() + "\n",
        Err(e) => format!("error: {e}\n"),
    }
}

#[test]
fn build_cases() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Containerfile").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "only {} build cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let actual = render(case);
        if let Err(f) = golden::check_file(&case.join("expected"), Some(&actual)) {
            failures.push(format!(
                "{}: {f}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
