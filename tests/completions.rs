//! `berth completion SHELL` and the completions it registers: subcommands and
//! flags from the clap definitions, container names from the definitions on
//! disk (`BERTH_ROOT`), masked ones left out. Runs the real bash; no root.
mod support;

use std::process::Command;

/// Complete `words` (the last one being completed) with bash, the way bash
/// calls the registered function at TAB, with `root` as BERTH_ROOT.
fn bash_complete(root: &std::path::Path, words: &[&str]) -> Vec<String> {
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(support::berth_bin(), bin_dir.path().join("berth")).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "source <(berth completion bash) && complete -p berth >/dev/null && \
         COMP_WORDS=({}); COMP_CWORD={}; _clap_complete_berth berth '{}' '{}'; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", bin_dir.path().display()),
        )
        .env("BERTH_ROOT", root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_flags_and_declared_container_names() {
    require_program!("bash");
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/berth/containers");
    let vendor = root.path().join("usr/lib/berth/containers");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&vendor).unwrap();
    std::fs::write(etc.join("web.toml"), "image = \"oci:/srv/x\"\n").unwrap();
    std::fs::write(vendor.join("db.toml"), "image = \"oci:/srv/x\"\n").unwrap();
    std::fs::write(vendor.join("gone.toml"), "image = \"oci:/srv/x\"\n").unwrap();
    std::os::unix::fs::symlink("/dev/null", etc.join("gone.toml")).unwrap();

    let subs = bash_complete(root.path(), &["berth", "st"]);
    assert_eq!(subs, ["start", "stop", "stats"], "{subs:?}");

    let names = bash_complete(root.path(), &["berth", "logs", ""]);
    assert!(names.contains(&"web".to_string()), "{names:?}");
    assert!(names.contains(&"db".to_string()), "{names:?}");
    assert!(!names.contains(&"gone".to_string()), "masked: {names:?}");

    let flags = bash_complete(root.path(), &["berth", "ps", "--a"]);
    assert_eq!(flags, ["--all"], "{flags:?}");

    // An image name is not a container name.
    let import = bash_complete(root.path(), &["berth", "import", "f.tar", ""]);
    assert!(!import.contains(&"web".to_string()), "{import:?}");
}

#[test]
fn every_shell_gets_a_script_that_calls_berth_back() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(support::berth_bin())
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("BERTH_COMPLETE"), "{shell}: {text}");
    }
    let bad = Command::new(support::berth_bin())
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
