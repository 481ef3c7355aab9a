//! `berth compose convert` as a user runs it: an existing file is never
//! overwritten without `--force` (and nothing is written then), `--force`
//! replaces, the compose file is found in the current directory, an unknown
//! key and invalid YAML name the file and line.

use std::path::Path;
use std::process::{Command, Output};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

const APP: &str =
    "services:\n  web:\n    image: nginx\n    ports: [\"8080:80\"]\n    restart: always\n";

fn convert(dir: &Path, args: &[&str]) -> Output {
    Command::new(BERTH)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .args(["compose", "convert"])
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn refuses_to_overwrite_without_force() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("compose.yaml"), APP).unwrap();
    let out = t.path().join("out");
    let web = out.join("containers/web.toml");
    std::fs::create_dir_all(web.parent().unwrap()).unwrap();
    std::fs::write(&web, "image = \"mine\"\n").unwrap();
    let o = convert(
        t.path(),
        &["--group", "app", "--out", out.to_str().unwrap()],
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("not overwriting")
            && err.contains("containers/web.toml")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&web).unwrap(), "image = \"mine\"\n");
    assert!(
        !out.join("networks/app_default.toml").exists(),
        "a refused conversion wrote files"
    );

    // No FILE: compose.yaml in the current directory, as compose finds it.
    let o = convert(
        t.path(),
        &["--group", "app", "--out", out.to_str().unwrap(), "--force"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let body = std::fs::read_to_string(&web).unwrap();
    assert!(
        body.contains("image = \"nginx\"") && body.contains("group = \"app\""),
        "{body}"
    );
    assert!(out.join("networks/app_default.toml").exists());
    assert!(text(&o.stdout).contains("systemctl start berth-app.target"));
}

#[test]
fn unknown_keys_and_invalid_yaml_name_file_and_line() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("docker-compose.yml");
    std::fs::write(
        &f,
        "services:\n  web:\n    image: nginx\n    restrat: always\n",
    )
    .unwrap();
    let o = convert(
        t.path(),
        &["docker-compose.yml", "--group", "g", "--out", "out"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("docker-compose.yml:4: warning: service \"web\": unknown compose key \"restrat\" (did you mean \"restart\"?)"),
        "{err}"
    );

    std::fs::write(&f, "services:\n  web:\n    image: \"nginx\n").unwrap();
    let o = convert(
        t.path(),
        &["docker-compose.yml", "--group", "g", "--out", "out2"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.starts_with("berth: error: docker-compose.yml:"),
        "{err}"
    );
    assert!(err.contains("invalid YAML"), "{err}");
    assert!(!t.path().join("out2").exists());

    std::fs::write(&f, "services:\n  web:\n    image: \"${TAG:?set TAG}\"\n").unwrap();
    let o = convert(
        t.path(),
        &["docker-compose.yml", "--group", "g", "--out", "out3"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(
            "docker-compose.yml:3: image: required variable TAG is missing a value: set TAG"
        ),
        "{err}"
    );
}
