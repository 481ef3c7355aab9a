//! The packages, as a distribution's user meets them: berth's .deb built from
//! this tree (packaging/build-deb) installs with `apt-get install ./berth_*.deb`
//! into a fresh real-systemd box and runs a declared container from the
//! installed files alone, and `apt-get purge` takes every installed file and
//! leaves the user's data. The appliance example (config/examples/appliance/)
//! installs offline before the first boot and its container is active after
//! it, with no registry; the admin masks it from /etc. The RPM builds from a
//! source tarball with rpmbuild, offline, and packages the same files as the
//! .deb.
//!
//! Cost: the .deb wraps the debug build cargo made for the tests (`--bin`);
//! it is built once per run of this file and gzip-compressed
//! (BERTH_DEB_COMPRESS) to save time. One box boot per test. The RPM is a
//! real release build from the tarball (about 20 minutes on 2 cores from
//! scratch): it compiles into target/rpmbuild/, which a later run reuses.
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
    // Asked to, purge takes the images, volumes and state too.
    b.sh_ok(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
         /root/debs/berth_*.deb && BERTH_PURGE_STATE=1 DEBIAN_FRONTEND=noninteractive \
         apt-get purge -y -q berth",
    );
    // (The box's /var/lib/berth is a mount point of its own, which stays.)
    b.sh_ok("test ! -e /run/berth && test -z \"$(ls -A /var/lib/berth 2>/dev/null)\"");

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
/// vendor-completions, Fedora site-functions); docs and lintian overrides are
/// each format's own.
fn normalized(files: BTreeSet<String>) -> BTreeSet<String> {
    files
        .into_iter()
        // Each format's own metadata: docs, and lintian's overrides.
        .filter(|f| !f.starts_with("/usr/share/doc/") && !f.starts_with("/usr/share/lintian/"))
        .map(|f| {
            f.trim_end_matches(".gz")
                .replace("/zsh/vendor-completions/", "/zsh/site-functions/")
        })
        .collect()
}

/// Where the RPM's release build goes: `rpmbuild/` in this run's cargo
/// target directory (above the tests' target/debug/berth), kept between
/// runs so that the next one reuses the crates built there.
fn rpm_target_dir() -> PathBuf {
    let bin = support::berth_bin();
    bin.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("no target dir above {}", bin.display()))
        .join("rpmbuild")
}

/// `rpm -qp --qf FORMAT RPM`, its lines.
fn rpm_query(rpm: &Path, format: &str) -> Vec<String> {
    run_ok(Command::new("rpm").args(["-qp", "--qf", format]).arg(rpm))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn rpm_builds_from_a_source_tarball_offline_and_packages_the_debs_files() {
    require_root!();
    if !require_deb_tools() {
        return;
    }
    require_program!("rpmbuild");
    require_program!("unshare");
    let out = tempfile::tempdir().unwrap();
    // The real build: a tarball of the tree with its crates vendored, and
    // `cargo build --release --offline` inside rpmbuild -ba, in a network
    // namespace of its own with no interface up: a build that reached for
    // the network fails. The release build stays in the target dir, so a
    // second run compiles only what changed.
    // An empty CARGO_HOME too: no crate from this host's cargo cache, only
    // the tarball's vendor/.
    let cargo_home = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let built = run_ok(
        Command::new(src().join("packaging/build-rpm"))
            .arg("--target-dir")
            .arg(rpm_target_dir())
            .arg("--out")
            .arg(out.path())
            .env(
                "RPMBUILD",
                format!(
                    "env CARGO_HOME={} unshare --net rpmbuild",
                    cargo_home.path().display()
                ),
            ),
    );
    eprintln!(
        "packaging/build-rpm (from source) took {:?}",
        started.elapsed()
    );
    let rpm = built
        .lines()
        .map(PathBuf::from)
        .find(|p| !p.to_string_lossy().ends_with(".src.rpm"))
        .unwrap_or_else(|| panic!("no binary rpm in {built:?}"));
    let srpm = built
        .lines()
        .map(PathBuf::from)
        .find(|p| p.to_string_lossy().ends_with(".src.rpm"))
        .unwrap_or_else(|| panic!("rpmbuild -ba made no source rpm: {built:?}"));

    // The source rpm: the spec and the tarball, which carries the crates.
    let sources = run_ok(Command::new("rpm").arg("-qlp").arg(&srpm));
    assert!(
        sources.lines().any(|l| l == "berth.spec")
            && sources
                .lines()
                .any(|l| l.starts_with("berth-") && l.ends_with(".tar.gz")),
        "{sources}"
    );

    // The install layout, as rpm lists it, with the two links. Man pages
    // are compressed where the distribution's rpm does (brp-compress).
    let files = run_ok(Command::new("rpm").arg("-qlp").arg(&rpm));
    for must in [
        "/usr/bin/berth",
        "/usr/bin/berth-runtime",
        "/usr/lib/systemd/system-generators/berth-generator",
        "/usr/lib/systemd/system/berth@.service",
        "/usr/lib/systemd/system/berth-dns.service",
        "/etc/berth/berth.toml",
        "/etc/berth/containers",
        "/usr/lib/berth/containers",
        "/usr/share/man/man1/berth.1",
        "/usr/share/man/man1/berth-run.1",
        "/usr/share/man/man5/berth.container.5",
        "/usr/share/man/man8/berth-runtime.8",
        "/usr/share/bash-completion/completions/berth",
        "/usr/share/zsh/site-functions/_berth",
        "/usr/share/fish/vendor_completions.d/berth.fish",
    ] {
        assert!(
            files
                .lines()
                .any(|l| l == must || l.strip_suffix(".gz") == Some(must)),
            "{must} not in:\n{files}"
        );
    }
    let links = rpm_query(&rpm, "[%{FILENAMES} -> %{FILELINKTOS}\\n]");
    for link in [
        "/usr/bin/berth-runtime -> /usr/bin/berth",
        "/usr/lib/systemd/system-generators/berth-generator -> /usr/bin/berth",
    ] {
        assert!(links.iter().any(|l| l == link), "{link} not in {links:?}");
    }

    // The binary in it is the release build made from the tarball: it runs,
    // and carries no debug info (Cargo.toml's release profile), unlike the
    // tests' own debug binary.
    let unpacked = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("sh")
            .current_dir(unpacked.path())
            .arg("-c")
            .arg(format!(
                "rpm2archive - < {} | tar -xzf -",
                shell_quote(&rpm.to_string_lossy())
            )),
    );
    let berth = unpacked.path().join("usr/bin/berth");
    let version = run_ok(Command::new(&berth).arg("--version"));
    assert!(version.starts_with("berth "), "{version}");
    let sections = run_ok(Command::new("readelf").arg("-S").arg(&berth));
    assert!(
        !sections.contains(".debug_info"),
        "a debug build was packaged"
    );

    // The same files as the .deb.
    let rpm_set = normalized(rpm_files(&rpm));
    let deb_set = normalized(deb_files(berth_deb()));
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
    rpm_scriptlets_are_sane(&rpm);
}

/// The systemd macros' scriptlets: preset on first install, disable --now on
/// erase only (both on the static units only, never the template, whose
/// instances are the containers), daemon-reload after any change; no
/// scriptlet starts or restarts anything.
fn rpm_scriptlets_are_sane(rpm: &Path) {
    let script = |tag: &str| rpm_query(rpm, &format!("%{{{tag}}}\\n")).join("\n");
    let (post, preun, postun) = (script("POSTIN"), script("PREUN"), script("POSTUN"));
    for s in [&post, &preun] {
        assert!(s.contains("berth-dns.service"), "{s}");
    }
    for s in [&post, &preun, &postun] {
        assert!(!s.contains("berth@"), "a scriptlet names the template: {s}");
        assert!(!s.contains(" start") && !s.contains(" restart"), "{s}");
    }
    assert!(post.contains("preset") && post.contains("-eq 1"), "{post}");
    assert!(
        preun.contains("disable --now") && preun.contains("-eq 0"),
        "{preun}"
    );
    assert!(postun.contains("daemon-reload"), "{postun}");
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
