//! `make install` (and packaging/install.sh, which wraps it) puts berth where
//! systemd and users look for it: the binary and its two other names, the
//! units (as systemd loads them), /etc/berth/berth.toml, the definition
//! directories, the man pages and the shell completions. Checked into a
//! DESTDIR on the host and for real inside a systemd box.
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use support::systemd_box::{BoxOptions, SystemdBox};

fn install_sh() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/install.sh")
}

fn run_install(args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .arg(install_sh())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn install_into_destdir_lays_out_binary_links_units_dirs_and_man_page() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let bin = support::berth_bin();
    for round in 0..2 {
        // The second round checks that installing over an install works.
        let out = run_install(&[
            "--destdir",
            d.to_str().unwrap(),
            "--bin",
            bin.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let installed = d.join("usr/bin/berth");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&bin).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    for link in [
        "usr/bin/berth-runtime",
        "usr/lib/systemd/system-generators/berth-generator",
    ] {
        assert_eq!(
            std::fs::read_link(d.join(link)).unwrap(),
            Path::new("/usr/bin/berth"),
            "{link}"
        );
    }
    for unit in ["berth@.service", "berth.slice"] {
        let installed = d.join("usr/lib/systemd/system").join(unit);
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("units")
            .join(unit);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(source).unwrap(),
            "{unit}"
        );
        assert_eq!(
            std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
    assert!(d.join("etc/berth/containers").is_dir());
    assert!(d.join("usr/lib/berth/containers").is_dir());
    assert_eq!(
        std::fs::read_dir(d.join("usr/lib/berth/containers"))
            .unwrap()
            .count(),
        0,
        "the vendor directory ships empty"
    );
    for page in [
        "man1/berth.1",
        "man5/berth.container.5",
        "man1/berth-run.1",
        "man1/berth-network-ls.1",
    ] {
        assert!(d.join("usr/share/man").join(page).is_file(), "{page}");
    }
    for completion in [
        "usr/share/bash-completion/completions/berth",
        "usr/share/zsh/site-functions/_berth",
        "usr/share/fish/vendor_completions.d/berth.fish",
    ] {
        let text = std::fs::read_to_string(d.join(completion)).unwrap();
        assert!(text.contains("BERTH_COMPLETE="), "{completion}: {text}");
    }
    // The global settings: every key commented out, so the file changes
    // nothing until the administrator says so (and a package can ship it as
    // a conffile).
    let toml = std::fs::read_to_string(d.join("etc/berth/berth.toml")).unwrap();
    let live: Vec<&str> = toml
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(live.is_empty(), "uncommented lines: {live:?}");
    assert!(toml.contains("# default_subnet = "), "{toml}");
    // No temporary file left behind by the atomic copies.
    let leftovers: Vec<_> = walk(d)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".berth-install."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn make_install_honours_prefix_and_keeps_an_edited_berth_toml() {
    require_program!("make");
    let dest = tempfile::tempdir().unwrap();
    let gen = tempfile::tempdir().unwrap();
    let d = dest.path();
    std::fs::create_dir_all(d.join("etc/berth")).unwrap();
    std::fs::write(d.join("etc/berth/berth.toml"), "# mine\n").unwrap();
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("install")
        .arg(format!("DESTDIR={}", d.display()))
        .arg("PREFIX=/usr/local")
        .arg(format!("BERTH={}", support::berth_bin().display()))
        .arg(format!("GEN={}", gen.path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.join("usr/local/bin/berth").is_file());
    assert_eq!(
        std::fs::read_link(d.join("usr/local/bin/berth-runtime")).unwrap(),
        Path::new("/usr/local/bin/berth")
    );
    assert!(d
        .join("usr/local/lib/systemd/system-generators/berth-generator")
        .is_symlink());
    assert!(d.join("usr/local/share/man/man1/berth-ps.1").is_file());
    assert_eq!(
        std::fs::read_to_string(d.join("etc/berth/berth.toml")).unwrap(),
        "# mine\n"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn install_refuses_a_missing_binary_and_unknown_arguments() {
    let dest = tempfile::tempdir().unwrap();
    let out = run_install(&[
        "--destdir",
        dest.path().to_str().unwrap(),
        "--bin",
        "/nonexistent/berth",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("'/nonexistent/berth' is not an executable file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.path().join("usr").exists(), "nothing installed");

    let out = run_install(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument '--frobnicate'"));
}

#[test]
fn installed_units_load_in_systemd_with_the_intended_properties() {
    require_root!();
    require_program!("nsenter");
    let b = SystemdBox::boot(BoxOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    b.install_berth();

    // The binary runs under its installed name.
    let version = b.sh_ok("berth version");
    assert!(version.starts_with("berth "), "{version}");

    // systemd finds the generator where the install put it.
    b.sh_ok("test -x /usr/lib/systemd/system-generators/berth-generator");

    let p = b.show(
        "berth@probe.service",
        "LoadState,Description,Documentation,Type,NotifyAccess,Delegate,Slice,KillMode,\
         ExecStart,ExecStopPost,TimeoutStartUSec,SyslogIdentifier,Restart,FragmentPath,\
         UnitFileState",
    );
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("<missing>");
    assert_eq!(get("LoadState"), "loaded");
    // On a merged-/usr system (Debian 12) systemd names it by its /lib path.
    assert!(
        [
            "/usr/lib/systemd/system/berth@.service",
            "/lib/systemd/system/berth@.service"
        ]
        .contains(&get("FragmentPath")),
        "{}",
        get("FragmentPath")
    );
    assert_eq!(get("Description"), "berth container probe");
    assert_eq!(get("Documentation"), "\"man:berth(1)\"");
    assert_eq!(get("Type"), "notify");
    assert_eq!(get("NotifyAccess"), "main");
    assert_eq!(get("Delegate"), "yes");
    assert_eq!(get("Slice"), "berth.slice");
    assert_eq!(get("KillMode"), "mixed");
    assert!(
        get("ExecStart").contains("argv[]=/usr/bin/berth run --systemd probe "),
        "{}",
        get("ExecStart")
    );
    assert!(
        get("ExecStopPost").contains("argv[]=/usr/bin/berth cleanup probe "),
        "{}",
        get("ExecStopPost")
    );
    assert_eq!(get("TimeoutStartUSec"), "5min");
    assert_eq!(get("SyslogIdentifier"), "probe");
    assert_eq!(get("Restart"), "no");
    assert_eq!(get("UnitFileState"), "disabled");

    let slice = b.show("berth.slice", "LoadState,Description,Documentation");
    assert_eq!(slice["LoadState"], "loaded");
    assert_eq!(slice["Description"], "berth containers");
    b.sh_ok("systemctl start berth.slice && systemctl is-active berth.slice");

    // systemd's own checker finds nothing wrong with the template.
    let verify = b.sh("systemd-analyze verify /usr/lib/systemd/system/berth@.service");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // The template's [Install] section lets `systemctl enable` work.
    b.sh_ok("systemctl enable berth@probe.service");
    assert_eq!(
        b.sh_ok("readlink -f /etc/systemd/system/multi-user.target.wants/berth@probe.service")
            .trim(),
        "/usr/lib/systemd/system/berth@.service"
    );

    // man finds the page.
    assert_eq!(
        b.sh_ok("man -w berth").trim(),
        "/usr/share/man/man1/berth.1"
    );

    assert_eq!(
        b.sh_ok("man -w berth-run").trim(),
        "/usr/share/man/man1/berth-run.1"
    );

    // The installed bash completion registers itself and completes the
    // declared containers' names (vendor and admin ones alike) by asking the
    // installed berth.
    b.write_file(
        "/etc/berth/containers/web.toml",
        b"image = \"oci:/srv/img\"\n",
    );
    b.write_file(
        "/usr/lib/berth/containers/appliance.toml",
        b"image = \"oci:/srv/img\"\n",
    );
    let completed = b.sh_ok(
        "bash -c 'source /usr/share/bash-completion/completions/berth && complete -p berth && \
         COMP_WORDS=(berth logs \"\"); COMP_CWORD=2; _clap_complete_berth berth \"\" logs; \
         printf \"%s\\n\" \"${COMPREPLY[@]}\"'",
    );
    assert!(
        completed.starts_with("complete ") && completed.contains("-F _clap_complete_berth berth"),
        "{completed}"
    );
    let names: Vec<&str> = completed.lines().skip(1).collect();
    assert!(
        names.contains(&"web") && names.contains(&"appliance"),
        "{completed}"
    );

    // Installing again over a running system changes nothing and fails nothing.
    b.install_berth();
    b.sh_ok("berth version");
}
