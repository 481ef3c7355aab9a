//! `berth completion SHELL` and the completions it registers: subcommands and
//! flags from the clap definitions, container names from the definitions on
//! disk (`BERTH_ROOT`), masked ones left out. Runs the real bash, zsh and
//! fish, each loading the script the way the packages install it; no root.
mod support;

use std::path::Path;
use std::process::Command;

/// A root with `web` declared in /etc, `db` and `gone` in /usr/lib, and
/// `gone` masked from /etc.
fn declared_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/berth/containers");
    let vendor = root.path().join("usr/lib/berth/containers");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&vendor).unwrap();
    std::fs::write(etc.join("web.toml"), "image = \"oci:/srv/x\"\n").unwrap();
    std::fs::write(vendor.join("db.toml"), "image = \"oci:/srv/x\"\n").unwrap();
    std::fs::write(vendor.join("gone.toml"), "image = \"oci:/srv/x\"\n").unwrap();
    std::os::unix::fs::symlink("/dev/null", etc.join("gone.toml")).unwrap();
    root
}

/// A directory holding `berth` (the tests' binary), for PATH: the scripts
/// call `berth` by name.
fn berth_on_path() -> tempfile::TempDir {
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(support::berth_bin(), bin_dir.path().join("berth")).unwrap();
    bin_dir
}

/// `berth completion SHELL` written to `dir/file`, as a package installs it.
fn install_script(shell: &str, dir: &Path, file: &str) {
    let out = Command::new(support::berth_bin())
        .args(["completion", shell])
        .output()
        .unwrap();
    assert!(out.status.success(), "berth completion {shell}");
    std::fs::write(dir.join(file), out.stdout).unwrap();
}

/// The candidates a shell run printed, one a line, up to a TAB (fish's
/// description), sorted.
fn lines_of(shell: &str, out: std::process::Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{shell} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// Complete `words` (the last one being completed) with bash, the way bash
/// calls the registered function at TAB, with `root` as BERTH_ROOT.
fn bash_complete(root: &std::path::Path, words: &[&str]) -> Vec<String> {
    let bin_dir = berth_on_path();
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
    let root = declared_root();

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

/// Complete `line` with fish, which loads berth.fish from a directory on its
/// `fish_complete_path` (the packages' vendor_completions.d) when it first
/// completes `berth`, as an interactive TAB does (`complete -C`).
fn fish_complete(root: &Path, line: &str) -> Vec<String> {
    let bin_dir = berth_on_path();
    let comp = tempfile::tempdir().unwrap();
    install_script("fish", comp.path(), "berth.fish");
    let out = Command::new("fish")
        .arg("--no-config")
        .arg("-c")
        .arg(format!(
            "set -p fish_complete_path {}; complete --do-complete={}",
            comp.path().display(),
            shell_words(line)
        ))
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", bin_dir.path().display()),
        )
        .env("BERTH_ROOT", root)
        .output()
        .unwrap();
    lines_of("fish", out)
}

/// `s` in single quotes, for fish and zsh.
fn shell_words(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn fish_completes_subcommands_flags_and_declared_container_names() {
    require_program!("fish");
    let root = declared_root();
    let subs = fish_complete(root.path(), "berth st");
    assert_eq!(subs, ["start", "stats", "stop"], "{subs:?}");
    let flags = fish_complete(root.path(), "berth ps --a");
    assert_eq!(flags, ["--all"], "{flags:?}");
    let names = fish_complete(root.path(), "berth logs ");
    assert!(names.contains(&"web".to_string()), "{names:?}");
    assert!(names.contains(&"db".to_string()), "{names:?}");
    assert!(!names.contains(&"gone".to_string()), "masked: {names:?}");
}

/// Drives an interactive zsh in a pseudo-terminal (zsh/zpty): compinit over
/// an fpath holding `_berth` (the packages' site-functions /
/// vendor-completions), then the line and one TAB. A `compadd` wrapper prints
/// each candidate that matched (the technique of zsh-capture-completion), and
/// `comppostfuncs=(exit)` ends the shell after that one completion. The
/// first TAB counts: that is when an fpath file is autoloaded.
const ZSH_DRIVER: &str = r#"
zmodload zsh/zpty || exit 3
zpty z zsh -f -i
zpty -w z "PS1=''; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z 'compadd() { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi; local -a __hits; builtin compadd -A __hits "$@"; (( $#__hits )) && print -rl -- "CAND""IDATE:"${^__hits}; builtin compadd "$@"; }'
zpty -w z 'comppostfuncs=(exit)'
zpty -w -n z "$2"$'\t'
while zpty -r z line; do print -rn -- "$line"; done
"#;

fn zsh_complete(root: &Path, line: &str) -> Vec<String> {
    let bin_dir = berth_on_path();
    let fpath = tempfile::tempdir().unwrap();
    install_script("zsh", fpath.path(), "_berth");
    let out = Command::new("timeout")
        .args(["30", "zsh", "-f", "-c", ZSH_DRIVER, "zsh"])
        .arg(fpath.path())
        .arg(line)
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", bin_dir.path().display()),
        )
        .env("BERTH_ROOT", root)
        .env("HOME", fpath.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "zsh failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The pty's output is the terminal's: escapes and \r around the lines.
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split("CANDIDATE:").nth(1))
        .map(|c| c.split(['\x1b', ' ']).next().unwrap_or("").to_string())
        .filter(|c| !c.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn zsh_completes_subcommands_flags_and_declared_container_names_from_fpath() {
    require_program!("zsh");
    let root = declared_root();
    let subs = zsh_complete(root.path(), "berth st");
    assert_eq!(subs, ["start", "stats", "stop"], "{subs:?}");
    let flags = zsh_complete(root.path(), "berth ps --a");
    assert_eq!(flags, ["--all"], "{flags:?}");
    let names = zsh_complete(root.path(), "berth logs ");
    assert!(names.contains(&"web".to_string()), "{names:?}");
    assert!(names.contains(&"db".to_string()), "{names:?}");
    assert!(!names.contains(&"gone".to_string()), "masked: {names:?}");
}
