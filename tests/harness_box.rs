//! Self-tests of the real-systemd box (tests/support/systemd_box.rs): it boots a
//! working systemd in its own namespaces, and tearing it down leaves nothing on
//! the host. Every end-to-end test relies on both.
mod support;

use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

fn boot() -> SystemdBox {
    match SystemdBox::boot(BoxOptions::default()) {
        Ok(b) => {
            eprintln!("box booted in {:?}", b.boot_time());
            b
        }
        Err(e) => panic!("box did not boot: {e}"),
    }
}

#[test]
fn box_runs_systemd_with_journal_transient_units_and_own_netns() {
    require_root!();
    require_program!("nsenter");
    let b = boot();

    let state = b.sh_ok("systemctl is-system-running");
    assert!(
        matches!(state.trim(), "running" | "degraded"),
        "is-system-running: {state:?}"
    );
    // PID 1 in the box is systemd, in its own PID namespace.
    assert_eq!(
        b.sh_ok("readlink /proc/1/exe").trim(),
        "/usr/lib/systemd/systemd"
    );
    assert!(b.sh_ok("ls /sys/fs/cgroup").contains("init.scope"));
    // Commands run inside the box's cgroup tree, not above its namespace root.
    let own = b.sh_ok("grep '^0::' /proc/self/cgroup");
    assert_eq!(own.trim(), "0::/berth-test-shell");
    // systemd can move them into a scope, as it does a login shell's children.
    let scoped = b.sh_ok("systemd-run --scope --quiet grep '^0::' /proc/self/cgroup");
    assert!(
        scoped.trim().starts_with("0::/system.slice/run-"),
        "{scoped}"
    );

    // A transient unit with a resource property runs and succeeds.
    b.sh_ok("systemd-run --quiet --wait -p MemoryMax=20M true");

    // A unit's output reaches the journal under that unit's name.
    b.sh_ok(
        "systemd-run --quiet --wait --unit=harness-hello.service \
         sh -c 'echo hello-from-a-unit'",
    );
    let journal = b.journal("harness-hello.service");
    assert!(
        journal.contains("hello-from-a-unit"),
        "journal of harness-hello.service:\n{journal}"
    );

    // The helpers later tests lean on: show, wait_until, the journal cursor.
    let cursor = b.journal_cursor();
    b.sh_ok("systemd-run --quiet --unit=harness-bg.service -p TasksMax=33 sh -c 'sleep 0.2; echo bg-ready; sleep 100'");
    b.wait_until(
        "journalctl -b -u harness-bg.service | grep -q bg-ready",
        Duration::from_secs(10),
    );
    let p = b.show("harness-bg.service", "ActiveState,TasksMax");
    assert_eq!(p["ActiveState"], "active");
    assert_eq!(p["TasksMax"], "33");
    let after = b.journal_after(&cursor);
    assert!(after.contains("bg-ready"), "{after}");
    assert!(
        !after.contains("hello-from-a-unit"),
        "entries before the cursor: {after}"
    );

    // Its own network namespace: only loopback.
    let links = b.sh_ok("ip -o link show");
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(names, ["lo"], "ip link in the box:\n{links}");

    // The box sees its own interfaces in /sys too, may set its own netns's
    // sysctls, but not kernel-wide ones (that would change the host).
    assert_eq!(b.sh_ok("ls /sys/class/net").trim(), "lo");
    b.sh_ok("echo 1 > /proc/sys/net/ipv4/ip_forward");
    let sysctl = b.sh("echo 0 > /proc/sys/kernel/randomize_va_space");
    assert!(
        !sysctl.status.success(),
        "a kernel-wide sysctl was writable"
    );
    // No host disks in the box's /dev.
    assert!(!b
        .sh_ok("ls /dev")
        .lines()
        .any(|l| l.starts_with("vd") || l.starts_with("sd")));

    // The host's enabled services are masked, so they do not run in the box.
    let masked = b.sh_ok("systemctl is-enabled postgresql.service docker-registry.service || true");
    assert!(
        masked.lines().all(|l| l.trim() == "masked"),
        "host services in the box: {masked}"
    );

    // /var/lib/berth is a real host directory, not the overlay.
    b.write_file("/var/lib/berth/marker", b"x");
    assert_eq!(
        std::fs::read(b.var_lib_berth().join("marker")).unwrap(),
        b"x"
    );
    let fstype = b.sh_ok("stat -f -c %T /var/lib/berth");
    assert_ne!(fstype.trim(), "overlayfs");
}

#[test]
fn box_teardown_leaves_no_mounts_cgroups_or_processes() {
    require_root!();
    require_program!("nsenter");
    let b = boot();
    let dir = b.host_dir().to_path_buf();
    let cgroup = b.cgroup().to_path_buf();
    let mut pids = b.host_pids();
    pids.push(b.pid());
    // A long-running process started the way tests start things in the box.
    b.sh_ok("systemd-run --quiet --unit=harness-sleeper.service sleep 1000");
    pids.extend(b.host_pids());
    assert!(
        pids.len() > 3,
        "expected several box processes, got {pids:?}"
    );
    assert!(cgroup.is_dir());

    b.close().expect("teardown reports no error");

    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir_s = dir.to_string_lossy();
    assert!(
        !mountinfo.lines().any(|l| l.contains(&*dir_s)),
        "host mountinfo still mentions {dir_s}"
    );
    assert!(!cgroup.exists(), "cgroup {cgroup:?} is still there");
    assert!(!dir.exists(), "box dir {dir:?} is still there");
    for pid in pids {
        // A PID may be reused by an unrelated process; one of the box's would
        // still be in the box cgroup, which no longer exists (checked above),
        // so check that any live PID now belongs elsewhere.
        if let Ok(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            let name = cgroup.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !cg.contains(&name),
                "process {pid} of the box lives on: {cg}"
            );
        }
    }
}

#[test]
fn box_teardown_runs_when_the_test_panics() {
    require_root!();
    require_program!("nsenter");
    let (tx, rx) = std::sync::mpsc::channel();
    let res = std::thread::spawn(move || {
        let b = boot();
        tx.send((b.host_dir().to_path_buf(), b.cgroup().to_path_buf()))
            .unwrap();
        panic!("a failing test");
    })
    .join();
    assert!(res.is_err());
    let (dir, cgroup) = rx.recv_timeout(Duration::from_secs(1)).unwrap();
    assert!(!cgroup.exists(), "cgroup {cgroup:?} survived a panic");
    assert!(!dir.exists(), "box dir {dir:?} survived a panic");
}

#[test]
fn boxes_boot_in_parallel_and_are_isolated() {
    require_root!();
    require_program!("nsenter");
    let a = std::thread::spawn(boot);
    let b = boot();
    let a = a.join().unwrap();
    assert_ne!(a.cgroup(), b.cgroup());
    a.write_file("/etc/which-box", b"a");
    b.write_file("/etc/which-box", b"b");
    assert_eq!(a.read_file("/etc/which-box"), b"a");
    assert_eq!(b.read_file("/etc/which-box"), b"b");
    // Nothing a box writes reaches the host's root.
    assert!(!std::path::Path::new("/etc/which-box").exists());
    // root() is the box's root as the host sees it.
    assert_eq!(std::fs::read(a.root().join("etc/which-box")).unwrap(), b"a");
}

#[test]
fn copy_in_brings_a_tree_with_symlinks_into_the_box() {
    require_root!();
    require_program!("nsenter");
    if !std::path::Path::new(support::BUSYBOX).exists() {
        support::skip("busybox-static is not installed (tests/run installs it)");
        return;
    }
    let host = tempfile::tempdir().unwrap();
    support::busybox_rootfs(host.path());
    let b = boot();
    b.copy_in(host.path(), "/srv/bb");
    assert_eq!(b.sh_ok("readlink /srv/bb/bin/sh").trim(), "/bin/busybox");
    assert_eq!(
        b.sh_ok("chroot /srv/bb /bin/sh -c 'echo hello from busybox'")
            .trim(),
        "hello from busybox"
    );
}

#[test]
fn files_and_berth_can_be_put_in_place_before_boot() {
    require_root!();
    require_program!("nsenter");
    let opts = BoxOptions::default()
        .with_berth()
        .file("/etc/berth/containers/seeded.toml", "image = \"x:1\"\n")
        .file("/var/run/seeded-through-a-symlink", "in the box's /run");
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.read_file("/etc/berth/containers/seeded.toml"),
        b"image = \"x:1\"\n"
    );
    // /var/run -> /run resolved inside the box, not on the host.
    assert_eq!(
        b.read_file("/run/seeded-through-a-symlink"),
        b"in the box's /run"
    );
    assert!(!std::path::Path::new("/run/seeded-through-a-symlink").exists());
    b.sh_ok("test -x /usr/bin/berth && systemctl cat berth@x.service >/dev/null");
}

/// Run by `box_is_cleaned_up_when_the_test_process_dies` in a child process:
/// boots a box and aborts, so no destructor runs. A no-op otherwise.
#[test]
fn helper_boot_then_abort() {
    if std::env::var_os("BERTH_BOX_ABORT_HELPER").is_none() {
        return;
    }
    let b = boot();
    println!("BOX {} {}", b.host_dir().display(), b.cgroup().display());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::process::abort();
}

#[test]
fn box_is_cleaned_up_when_the_test_process_dies() {
    require_root!();
    require_program!("nsenter");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_boot_then_abort", "--nocapture"])
        .env("BERTH_BOX_ABORT_HELPER", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the helper should have aborted");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BOX "))
        .unwrap_or_else(|| {
            panic!(
                "helper printed no box: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let (dir, cgroup) = line.split_once(' ').unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(cgroup).exists() || std::path::Path::new(dir).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "watchdog did not remove {cgroup} and {dir}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run by `a_failed_boot_says_why_and_leaves_nothing` in a child process.
#[test]
fn helper_failed_boot() {
    if std::env::var_os("BERTH_BOX_FAIL_HELPER").is_none() {
        return;
    }
    let opts = BoxOptions {
        binds: vec![("/nonexistent/berth-box-test".into(), "/mnt/x".into())],
        ..BoxOptions::default()
    };
    match SystemdBox::boot(opts) {
        Ok(_) => println!("BOOTED"),
        Err(e) => println!("ERROR {e}"),
    }
}

#[test]
fn a_failed_boot_says_why_and_leaves_nothing() {
    require_root!();
    require_program!("nsenter");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_failed_boot", "--nocapture"])
        .env("BERTH_BOX_FAIL_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("the box's boot script exited")
            && stdout.contains("/nonexistent/berth-box-test"),
        "expected a boot error naming the bad bind:\n{stdout}"
    );
    let leftover: Vec<_> = std::fs::read_dir("/sys/fs/cgroup/unified")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("berth-box-{pid}-")))
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
    // The error names the box dir.
    let dir = stdout
        .split_once("ERROR box ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .map(|(dir, _)| dir.to_string())
        .expect("a box dir in the error");
    assert!(dir.contains("/berth-box-"), "{dir}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is left over");
}
