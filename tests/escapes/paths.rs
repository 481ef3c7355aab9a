//! Class 3 of issue 12: paths inside the root resolved by string
//! (CVE-2021-30465, runc's mount race; runc 1.1.5's `/dev` symlink follow).
//! Every bundle here points a path the runtime writes to (the `/dev` links
//! and nodes, a mount destination, a mount point it creates) at a directory
//! of the host, statically or by swapping it in while containers start, and
//! the test checks that the host directory stays empty and unmounted.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::require_root;
use crate::rt::{describe, sh_args, Sandbox};

/// `sb.bundle` without `linux.resources`: its device rules make crun 1.8.1
/// raise RLIMIT_MEMLOCK, which fails here without CAP_SYS_RESOURCE
/// (TESTING.md), and the peers should get as far as the attack.
pub fn bundle(sb: &Sandbox, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    sb.bundle(name, |c| {
        if let Some(l) = c["linux"].as_object_mut() {
            l.remove("resources");
        }
        edit(c)
    })
}

/// Names in `dir` (a host directory the attack aims at), sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A symlink target climbing out of any rootfs to the absolute `host`.
fn climbing(host: &Path) -> PathBuf {
    PathBuf::from(format!("../../../../../../../../..{}", host.display()))
}

/// Run `bundle` on the installed peers (crun, runc) in `sb` and print what
/// they did and what `host` holds afterwards; a peer is a reference, not a
/// proof, so nothing is asserted.
pub fn run_peers(sb: &Sandbox, what: &str, bundle: &Path, host: &Path) {
    for peer in ["crun", "runc"] {
        if !crate::support::have_program(peer) {
            println!("peer {peer}: not installed");
            continue;
        }
        clear(host);
        let o = sb.sh(&format!(
            "{peer} --root $STATE/{peer} run --bundle {} p-{peer} </dev/null; echo \"exit=$?\"; {peer} --root $STATE/{peer} delete -f p-{peer} 2>/dev/null; true",
            bundle.display()
        ));
        println!(
            "peer {peer} on {what}: {}; host dir afterwards: {:?}",
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .replace('\n', " | "),
            entries(host)
        );
        if !o.stderr.is_empty() {
            println!(
                "peer {peer} stderr: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }
    clear(host);
}

fn clear(dir: &Path) {
    for e in entries(dir) {
        let p = dir.join(e);
        let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
    }
}

/// (a) A rootfs whose `dev` is a symlink to a host directory: the runtime's
/// /dev tmpfs, nodes and links must land inside the root, never in the host
/// directory (runc 1.1.5 writes its /dev links there).
#[test]
fn dev_symlink_to_a_host_directory_stays_inside_the_root() {
    require_root!();
    let sb = Sandbox::new();
    let host = sb.path().join("host-dev");
    for (name, target) in [("absolute", host.clone()), ("climbing", climbing(&host))] {
        std::fs::create_dir_all(&host).unwrap();
        let b = bundle(&sb, &format!("dev-{name}"), |c| sh_args(c, "ls /dev"));
        std::fs::remove_dir(b.join("rootfs/dev")).unwrap();
        symlink(&target, b.join("rootfs/dev")).unwrap();
        let o = sb.sh(&format!("$RT run -b {} dev-{name}", b.display()));
        println!("berth on dev -> {}: {}", target.display(), describe(&o));
        assert_eq!(
            entries(&host),
            Vec::<String>::new(),
            "berth wrote into the host directory through rootfs/dev -> {}",
            target.display()
        );
        run_peers(&sb, &format!("dev -> {}", target.display()), &b, &host);
    }
}

/// (b) Mount destinations that are symlinks out of the root, absolute and
/// climbing with `..`, for a tmpfs and a bind: each must be mounted inside
/// the root; the host directory gets no mount point and no file.
#[test]
fn mount_destination_symlinks_stay_inside_the_root() {
    require_root!();
    let sb = Sandbox::new();
    let host = sb.path().join("host-dest");
    std::fs::create_dir_all(&host).unwrap();
    let src = sb.path().join("bind-src");
    std::fs::create_dir_all(&src).unwrap();
    let b = bundle(&sb, "dest", |c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/mnt/abs/t", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({"destination": "/mnt/rel/t", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({"destination": "/mnt/abs/b", "type": "bind", "source": src, "options": ["rbind"]}));
        mounts.push(json!({"destination": "/mnt/rel/b", "type": "bind", "source": src, "options": ["rbind"]}));
        sh_args(
            c,
            "for d in /mnt/abs/t /mnt/rel/t /mnt/abs/b /mnt/rel/b; do echo pwned > $d/f && echo wrote $d; done",
        );
    });
    std::fs::create_dir_all(b.join("rootfs/mnt")).unwrap();
    symlink(&host, b.join("rootfs/mnt/abs")).unwrap();
    symlink(climbing(&host), b.join("rootfs/mnt/rel")).unwrap();
    let o = sb.sh(&format!(
        "$RT run -b {} dest; echo \"exit=$?\"; grep -c ' {} ' /proc/self/mountinfo; true",
        b.display(),
        host.display()
    ));
    println!("berth: {}", describe(&o));
    assert_eq!(
        entries(&host),
        Vec::<String>::new(),
        "berth created or wrote into the host directory through a mount destination symlink"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("exit=0"),
        "the mounts inside the root work: {}",
        describe(&o)
    );
    run_peers(&sb, "mount destination symlinks", &b, &host);
}

const RENAME_EXCHANGE: libc::c_uint = 2;

/// Swap `a` and `b` (renameat2 RENAME_EXCHANGE) until `stop`.
fn swapper(a: PathBuf, b: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        use std::os::unix::ffi::OsStrExt;
        let ca = std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap();
        let cb = std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: renameat2 with two valid NUL-terminated paths.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    libc::AT_FDCWD,
                    ca.as_ptr(),
                    libc::AT_FDCWD,
                    cb.as_ptr(),
                    RENAME_EXCHANGE,
                )
            };
            if r == 0 {
                n += 1;
            }
        }
        n
    })
}

/// A bundle for the race: the shared directory `vol` bound at /vol, a tmpfs
/// at /vol/sub/d and a file bind at /vol/sub/f, whose parent `sub` the
/// swapper keeps exchanging with a symlink to the host directory.
fn race_bundle(sb: &Sandbox, vol: &Path, file: &Path) -> PathBuf {
    bundle(sb, "race", |c: &mut Value| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind"]}),
        );
        mounts.push(json!({"destination": "/vol/sub/d", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({"destination": "/vol/sub/f", "type": "bind", "source": file, "options": ["bind"]}));
        sh_args(c, "true");
    })
}

/// Start containers in a loop with `runtime_cmd` (shell text; `$i` numbers
/// the container) while the swapper runs; returns (starts that exited 0,
/// starts, swaps, the sandbox's mountinfo lines naming `host`).
fn race(sb: &Sandbox, runtime_cmd: &str, vol: &Path, host: &Path) -> (String, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let t = swapper(vol.join("sub"), vol.join("link"), stop.clone());
    let o = sb.sh(&format!(
        "ok=0; n=0; end=$(( $(date +%s) + 25 ))\n\
         while [ $n -lt 200 ] && [ $(date +%s) -lt $end ]; do n=$((n+1)); i=$n\n\
           if {runtime_cmd} >/dev/null 2>&1 </dev/null; then ok=$((ok+1)); fi\n\
         done\n\
         echo \"ok=$ok starts=$n\"; echo \"host mounts: $(grep -c ' {} ' /proc/self/mountinfo)\"",
        host.display()
    ));
    stop.store(true, Ordering::Relaxed);
    let swaps = t.join().unwrap();
    // Leave `sub` a directory again for the next runtime.
    if std::fs::symlink_metadata(vol.join("sub"))
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
    {
        let _ = std::fs::rename(vol.join("sub"), vol.join("tmp"));
        let _ = std::fs::rename(vol.join("link"), vol.join("sub"));
        let _ = std::fs::rename(vol.join("tmp"), vol.join("link"));
    }
    (describe(&o), swaps)
}

/// (d) The race of CVE-2021-30465: a writer sharing the bound directory
/// keeps exchanging a checked mount-point parent with a symlink to a host
/// directory while containers start; nothing may be created in, or mounted
/// on, the host directory.
#[test]
fn mount_point_swap_race_never_reaches_the_host() {
    require_root!();
    let sb = Sandbox::new();
    let host = sb.path().join("host-race");
    std::fs::create_dir_all(&host).unwrap();
    let vol = sb.path().join("vol");
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    symlink(&host, vol.join("link")).unwrap();
    let file = sb.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let b = race_bundle(&sb, &vol, &file);
    let started = Instant::now();
    let (out, swaps) = race(
        &sb,
        &format!(
            "$RT run -b {b} r$i; r=$?; $RT delete -f r$i; [ $r = 0 ]",
            b = b.display()
        ),
        &vol,
        &host,
    );
    println!("berth: {out}\nswaps: {swaps} in {:?}", started.elapsed());
    assert!(swaps > 0, "the swapper ran");
    assert!(out.contains("host mounts: 0"), "no host mount: {out}");
    assert_eq!(
        entries(&host),
        Vec::<String>::new(),
        "berth created a mount point in the host directory during the race"
    );
    for peer in ["crun", "runc"] {
        if !crate::support::have_program(peer) {
            continue;
        }
        let (out, swaps) = race(
            &sb,
            &format!(
                "{peer} --root $STATE/{peer} run --bundle {b} r$i; r=$?; {peer} --root $STATE/{peer} delete -f r$i 2>/dev/null; [ $r = 0 ]",
                b = b.display()
            ),
            &vol,
            &host,
        );
        println!(
            "peer {peer} race: {} swaps {swaps}; host dir afterwards: {:?}",
            out.lines().find(|l| l.starts_with("ok=")).unwrap_or(""),
            entries(&host)
        );
        clear(&host);
    }
}

/// (c) Service mode: an image whose /etc/hosts, /etc/resolv.conf and
/// /etc/hostname are symlinks to files of the host (absolute, and climbing
/// with `..`). berth binds its own copies over them; the binds must land
/// inside the root, and writes in the container must not reach the host's
/// files.
#[test]
fn etc_file_symlinks_to_host_files_in_service_mode() {
    use crate::support::systemd_box::{BoxOptions, SystemdBox};
    require_root!();
    crate::require_program!("nsenter");
    const ORIGINAL: &str = "host original\n";
    let script =
        "cat /etc/hostname; for f in hosts resolv.conf hostname; do echo pwned >> /etc/$f; done; \
                  echo report-done; exec sleep 1000";
    let opts = BoxOptions::default()
        .with_berth()
        .file("/srv/host-files/hosts", ORIGINAL)
        .file("/srv/host-files/resolv.conf", ORIGINAL)
        .file("/srv/host-files/hostname", ORIGINAL)
        .file(
            "/etc/berth/containers/etclinks.toml",
            format!(
                "rootfs = \"/srv/root\"\ncommand = [\"sh\", \"-c\", \"{script}\"]\n\
                 [service]\nstop_timeout = \"1s\"\nrestart = \"no\"\n"
            ),
        );
    let b = SystemdBox::boot(opts).unwrap_or_else(|e| panic!("box did not boot: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    crate::support::busybox_rootfs(rootfs.path());
    let etc = rootfs.path().join("etc");
    for f in ["hosts", "resolv.conf", "hostname"] {
        let _ = std::fs::remove_file(etc.join(f));
    }
    symlink("/srv/host-files/hosts", etc.join("hosts")).unwrap();
    symlink(
        "../../../../../../srv/host-files/resolv.conf",
        etc.join("resolv.conf"),
    )
    .unwrap();
    symlink("/srv/host-files/hostname", etc.join("hostname")).unwrap();
    b.copy_in(rootfs.path(), "/srv/root");
    let _ = b.sh("systemctl start berth@etclinks");
    let log = b.wait_for(
        "journalctl --no-pager -o cat -u berth@etclinks",
        |t| t.contains("report-done") || t.contains("berth@etclinks.service: Failed"),
        std::time::Duration::from_secs(20),
    );
    println!("berth@etclinks: {log}");
    for f in ["hosts", "resolv.conf", "hostname"] {
        assert_eq!(
            String::from_utf8_lossy(&b.read_file(&format!("/srv/host-files/{f}"))),
            ORIGINAL,
            "the box's /srv/host-files/{f} changed through the image's /etc/{f} symlink"
        );
    }
    assert!(log.contains("report-done"), "the container ran: {log}");
    assert!(
        !log.contains("host original"),
        "the container saw the host's hostname file: {log}"
    );
}
