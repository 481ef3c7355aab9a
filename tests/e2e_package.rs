//! The packages, as a distribution's user meets them: berth's .deb built from
//! this tree (packaging/build-deb) installs with `apt-get install ./berth_*.deb`
//! into a fresh real-systemd box and runs a declared container from the
//! installed files alone, and `apt-get purge` takes every installed file and
//! leaves the user's data. The appliance example (config/examples/appliance/)
//! installs offline before the first boot and its container is active after
//! it, with no registry; the admin masks it from /etc. The RPM spec builds with
//! rpmbuild and packages the same files as the .deb.
//!
//! Cost: the packages wrap the debug build cargo made for the tests
//! (`--bin`), never a second cargo build; the .deb is built once per run of
//! this file and gzip-compressed (BERTH_DEB_COMPRESS) to save time. One box
//! boot per test.
#[path = "support/registry.rs"]
mod registry;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::systemd_box::{shell_quote, BoxOptions, SystemdBox};

fn src() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// berth's .deb, built once for this test binary from the tests' own berth.
/// Its directory lives as long as the process (a static).
fn berth_deb() -> &'static Path {
    static DEB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DEB.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("berth-deb-")
            .tempdir()
            .unwrap();
        let out = run_ok(
            Command::new(src().join("packaging/build-deb"))
                .arg("--bin")
                .arg(support::berth_bin())
                .arg("--out")
                .arg(dir.path())
                .env("BERTH_DEB_COMPRESS", "gzip"),
        );
        let deb = PathBuf::from(out.trim().lines().last().unwrap_or_default());
        assert!(deb.is_file(), "build-deb printed {out:?}");
        (dir, deb)
    })
    .1
}

fn require_deb_tools() -> bool {
    for prog in ["dpkg-buildpackage", "dh", "apt-get", "nsenter"] {
        if !support::have_program(prog) {
            support::skip(&format!(
                "'{prog}' is not installed (scripts/install-deps installs it)"
            ));
            return false;
        }
    }
    true
}

const WEB_TOML: &str = r#"# A container a user declared before installing berth.
image = "oci:/srv/web-image:1"
command = ["sh", "-c", "echo web-says-hello; echo kept > /data/user-file; echo page-from-package > /tmp/index.html; exec httpd -f -v -p 8080 -h /tmp"]
init = true

[network]
mode = "host"

[[volume]]
source = "webdata"
target = "/data"

[service]
wanted_by = ["multi-user.target"]
stop_timeout = "5s"
"#;

/// Every path the package owns, from `dpkg -L` (directories included).
fn owned_paths(b: &SystemdBox, package: &str) -> Vec<String> {
    b.sh_ok(&format!("dpkg -L {package}"))
        .lines()
        .filter(|l| l.starts_with('/') && *l != "/.")
        .map(str::to_string)
        .collect()
}

#[test]
fn deb_installs_runs_a_declared_container_from_installed_files_and_purges_cleanly() {
    require_root!();
    if !require_deb_tools() {
        return;
    }
    let deb = berth_deb();
    // lintian takes half a minute: it runs while the box works.
    let lintian = support::have_program("lintian").then(|| {
        Command::new("lintian")
            .args(["--tag-display-limit", "0"])
            .arg(deb)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    });

    let work = tempfile::tempdir().unwrap();
    let layout = registry::busybox_image_layout(work.path());
    let b = SystemdBox::boot(BoxOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    b.copy_in(&layout, "/srv/web-image");
    b.copy_in(deb.parent().unwrap(), "/root/debs");
    b.write_file("/etc/berth/containers/web.toml", WEB_TOML.as_bytes());
    // No berth installed before the package: only its files can run the
    // container (the unit's ExecStart is /usr/bin/berth).
    b.sh_ok("! command -v berth");

    // man-db's trigger would rebuild the whole man index (seconds): off.
    b.sh_ok(
        "rm -f /var/lib/man-db/auto-update && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q --no-install-recommends /root/debs/berth_*.deb",
    );
    assert_eq!(b.sh_ok("command -v berth").trim(), "/usr/bin/berth");
    // postinst ran daemon-reload (the generator wrote the declared
    // container's drop-in) and started nothing, wanted_by or not.
    b.sh_ok("test -f /run/systemd/generator/berth@web.service.d/50-berth-generated.conf");
    assert_eq!(
        b.show("berth@web.service", "ActiveState")["ActiveState"],
        "inactive"
    );
    let etc = b.sh_ok("cat /etc/berth/berth.toml");
    assert!(etc.contains("# [storage]"), "{etc}");
    assert!(b
        .sh_ok("dpkg-query -W -f='${Conffiles}' berth")
        .contains("/etc/berth/berth.toml"));

    b.sh_ok("systemctl start berth@web");
    b.wait_for(
        "systemctl is-active berth@web",
        |s| s == "active",
        Duration::from_secs(30),
    );
    b.wait_until(
        "curl -fsS http://127.0.0.1:8080/index.html | grep -qx page-from-package",
        Duration::from_secs(20),
    );
    b.wait_until(
        "journalctl --no-pager -b -u berth@web | grep -q web-says-hello",
        Duration::from_secs(10),
    );
    b.sh_ok("systemctl stop berth@web");

    let owned = owned_paths(&b, "berth");
    for must in [
        "/usr/bin/berth",
        "/usr/bin/berth-runtime",
        "/usr/lib/systemd/system-generators/berth-generator",
        "/usr/lib/systemd/system/berth@.service",
        "/usr/lib/berth/containers",
        "/usr/share/man/man1/berth-run.1.gz",
        "/usr/share/man/man8/berth-runtime.8.gz",
        "/usr/share/bash-completion/completions/berth",
        "/usr/share/zsh/vendor-completions/_berth",
        "/usr/share/fish/vendor_completions.d/berth.fish",
    ] {
        assert!(owned.iter().any(|p| p == must), "{must} not in {owned:?}");
    }

    // remove keeps definitions, images and volumes; purge also the conffile.
    b.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q berth");
    let mut left = Vec::new();
    for p in &owned {
        let exists = b.sh(&format!("test -e {0} || test -L {0}", shell_quote(p)));
        if !exists.status.success() {
            continue;
        }
        // dpkg removes a directory only when it is empty: /usr/bin and the
        // generator directory hold other packages' files, /etc/berth/containers
        // the user's definition. A file, or an empty directory, is a leftover.
        let nonempty_dir = b
            .sh(&format!(
                "test -d {0} && test -n \"$(ls -A {0})\"",
                shell_quote(p)
            ))
            .status
            .success();
        if nonempty_dir {
            continue;
        }
        left.push(p.clone());
    }
    assert!(left.is_empty(), "purge left these behind: {left:?}");
    b.sh_ok("test ! -e /etc/berth/berth.toml && test ! -e /usr/lib/berth");
    // The user's data: the definition, the image store and the volume.
    b.sh_ok("test -f /etc/berth/containers/web.toml");
    assert_eq!(
        b.sh_ok("cat /var/lib/berth/volumes/webdata/_data/user-file")
            .trim(),
        "kept"
    );
    // postrm's daemon-reload: systemd no longer knows the template.
    assert_eq!(
        b.show("berth@web.service", "LoadState")["LoadState"],
        "not-found"
    );

    if let Some(l) = lintian {
        let out = l.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
        assert!(errors.is_empty(), "lintian errors:\n{text}");
    } else {
        support::skip("lintian is not installed (scripts/install-deps installs it)");
    }
}

/// Files (not directories) a .deb installs, from its data archive.
fn deb_files(deb: &Path) -> BTreeSet<String> {
    run_ok(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

/// Files (not directories) an .rpm installs.
fn rpm_files(rpm: &Path) -> BTreeSet<String> {
    run_ok(
        Command::new("rpm")
            .args(["-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\\n]"])
            .arg(rpm),
    )
    .lines()
    .filter(|l| !l.starts_with('d'))
    .filter_map(|l| l.split_whitespace().nth(1))
    .map(str::to_string)
    .collect()
}

/// One spelling for both: man pages with or without .gz (each distribution's
/// tooling compresses its own way), zsh's directory (Debian reads
/// vendor-completions, Fedora site-functions); Debian's doc files are its own.
fn normalized(files: BTreeSet<String>) -> BTreeSet<String> {
    files
        .into_iter()
        .filter(|f| !f.starts_with("/usr/share/doc/"))
        .map(|f| {
            f.trim_end_matches(".gz")
                .replace("/zsh/vendor-completions/", "/zsh/site-functions/")
        })
        .collect()
}

#[test]
fn rpm_spec_builds_with_rpmbuild_and_packages_the_debs_files() {
    require_root!();
    if !require_deb_tools() {
        return;
    }
    require_program!("rpmbuild");
    let out = tempfile::tempdir().unwrap();
    // --bin: the tests' own berth, no cargo build inside rpmbuild (a full
    // vendored release build takes many minutes; `packaging/build-rpm`
    // without --bin does that).
    let built = run_ok(
        Command::new(src().join("packaging/build-rpm"))
            .arg("--bin")
            .arg(support::berth_bin())
            .arg("--out")
            .arg(out.path()),
    );
    let rpm = built
        .lines()
        .map(PathBuf::from)
        .find(|p| !p.to_string_lossy().ends_with(".src.rpm"))
        .unwrap_or_else(|| panic!("no binary rpm in {built:?}"));
    assert!(
        built.lines().any(|l| l.ends_with(".src.rpm")),
        "rpmbuild -ba made no source rpm: {built:?}"
    );
    let rpm_set = normalized(rpm_files(&rpm));
    let deb_set = normalized(deb_files(berth_deb()));
    assert!(rpm_set.contains("/usr/bin/berth"), "{rpm_set:?}");
    let only_rpm: Vec<_> = rpm_set.difference(&deb_set).collect();
    let only_deb: Vec<_> = deb_set.difference(&rpm_set).collect();
    assert!(
        only_rpm.is_empty() && only_deb.is_empty(),
        "only in the rpm: {only_rpm:?}\nonly in the deb: {only_deb:?}"
    );
    // The conffile and the dependencies, as the .deb has them.
    assert_eq!(
        run_ok(Command::new("rpm").arg("-qpc").arg(&rpm)).trim(),
        "/etc/berth/berth.toml"
    );
    let requires = run_ok(Command::new("rpm").arg("-qpR").arg(&rpm));
    for dep in ["libseccomp", "nftables", "systemd"] {
        assert!(requires.lines().any(|l| l.trim() == dep), "{requires}");
    }
    // Scriptlets name the static units only: never the template, whose
    // instances are the containers.
    let scripts = run_ok(Command::new("rpm").arg("-qp").arg("--scripts").arg(&rpm));
    assert!(scripts.contains("berth-dns.service"), "{scripts}");
    assert!(!scripts.contains("berth@"), "{scripts}");
}

#[test]
fn appliance_package_installs_offline_starts_at_first_boot_and_the_admin_overrides_and_masks_it() {
    require_root!();
    if !require_deb_tools() {
        return;
    }
    require_program!("umoci");
    let berth = berth_deb();
    let out = tempfile::tempdir().unwrap();
    let made = run_ok(
        Command::new(src().join("config/examples/appliance/make-package"))
            .arg("--out")
            .arg(out.path()),
    );
    let appliance = PathBuf::from(made.trim());
    assert!(appliance.is_file(), "make-package printed {made:?}");

    // Both packages go in before the first boot, as on an image a vendor
    // prepares: no systemd runs, no network, no registry.
    let install = "rm -f /var/lib/man-db/auto-update && DEBIAN_FRONTEND=noninteractive \
                   apt-get install -y -q --no-install-recommends \
                   /root/debs/berth_*.deb /root/debs/berth-appliance-hello_*.deb";
    let opts = BoxOptions::default()
        .file(
            &format!(
                "/root/debs/{}",
                berth.file_name().unwrap().to_string_lossy()
            ),
            std::fs::read(berth).unwrap(),
        )
        .file(
            &format!(
                "/root/debs/{}",
                appliance.file_name().unwrap().to_string_lossy()
            ),
            std::fs::read(&appliance).unwrap(),
        )
        .before_boot(install);
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("{e}"));

    // Active after the boot, serving the page from the archive's image.
    b.wait_for(
        "systemctl is-active berth@hello",
        |s| s == "active",
        Duration::from_secs(30),
    );
    b.wait_until(
        "curl -fsS http://127.0.0.1:8081/ | grep -q 'hello from an appliance'",
        Duration::from_secs(20),
    );
    b.sh_ok("berth check hello");
    b.sh_ok("test -z \"$(ls /etc/berth/containers)\"");

    // Overridden from /etc: a drop-in moves it to another port.
    b.write_file(
        "/etc/berth/containers/hello.toml.d/port.conf.toml",
        br#"command = ["httpd", "-f", "-v", "-p", "8082", "-h", "/www"]
"#,
    );
    b.sh_ok("systemctl daemon-reload && systemctl restart berth@hello");
    b.wait_until(
        "curl -fsS http://127.0.0.1:8082/ | grep -q 'hello from an appliance'",
        Duration::from_secs(20),
    );

    // Masked from /etc: the generator drops it (no drop-in, no boot link),
    // and it no longer starts.
    b.sh_ok(
        "systemctl stop berth@hello && ln -s /dev/null /etc/berth/containers/hello.toml \
         && systemctl daemon-reload",
    );
    b.sh_ok(
        "test ! -e /run/systemd/generator/berth@hello.service.d \
         && test ! -e /run/systemd/generator/multi-user.target.wants/berth@hello.service",
    );
    let wants = b.show("multi-user.target", "Wants")["Wants"].clone();
    assert!(!wants.contains("berth@hello"), "{wants}");
    let start = b.sh("systemctl start berth@hello");
    assert!(
        !start.status.success(),
        "a masked container started: {}",
        String::from_utf8_lossy(&start.stdout)
    );
    // The vendor's files are untouched.
    b.sh_ok("test -s /usr/lib/berth/containers/hello.toml");
}

#[test]
fn appliance_definition_passes_check_as_a_vendor_file() {
    // Where its package puts it, and nothing in /etc: `berth check` and the
    // generator accept it (no root, no box).
    let root = tempfile::tempdir().unwrap();
    let vendor = root.path().join("usr/lib/berth/containers");
    std::fs::create_dir_all(&vendor).unwrap();
    std::fs::copy(
        src().join("config/examples/appliance/hello.toml"),
        vendor.join("hello.toml"),
    )
    .unwrap();
    let out = run_ok(
        Command::new(support::berth_bin())
            .arg("--root")
            .arg(root.path())
            .arg("check"),
    );
    assert!(out.contains("1 definition"), "{out}");
    let generated = run_ok(
        Command::new(support::berth_bin())
            .arg("--root")
            .arg(root.path())
            .args(["generate", "--dry-run"]),
    );
    assert!(
        generated.contains("LINK multi-user.target.wants/berth@hello.service"),
        "{generated}"
    );
    // A local archive never pulls: no dependency on the network.
    assert!(!generated.contains("network-online"), "{generated}");
}
