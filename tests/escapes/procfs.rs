//! Class 4 of issue 12: procfs and sysfs (CVE-2019-16884,
//! CVE-2025-31133/-52565/-52881). Each bundle shadows or fakes what the
//! runtime writes through or binds from — /proc/sys, /dev/null, the
//! submounts of a read-only path or of the host's /sys — and the test
//! checks that the write lands in the real procfs only, the masking uses a
//! real 1:3 device (or the start is refused), and nothing stays writable.

use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::{json, Value};

use crate::paths::{bundle, entries};
use crate::require_root;
use crate::rt::{describe, sh_args, stdout, Sandbox};

/// Print what the installed peers do with `bundle` (`script_for(peer)` is
/// the sandbox shell text running it); nothing is asserted.
fn peers(sb: &Sandbox, what: &str, script_for: impl Fn(&str) -> String) {
    for peer in ["crun", "runc"] {
        if !crate::support::have_program(peer) {
            println!("peer {peer}: not installed");
            continue;
        }
        let o = sb.sh(&script_for(peer));
        println!(
            "peer {peer} on {what}: {} / stderr: {}",
            stdout(&o).trim().replace('\n', " | "),
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .replace('\n', " | ")
        );
    }
}

fn run_script(rt: &str, b: &Path, id: &str) -> String {
    format!(
        "{rt} run -b {} {id} </dev/null; echo \"exit=$?\"; {rt} delete -f {id} 2>/dev/null; true",
        b.display()
    )
}

fn peer_rt(peer: &str) -> String {
    format!("{peer} --root $STATE/{peer}")
}

/// A bind of a host directory over /proc/sys with a fake
/// `net/ipv4/ip_forward`: a sysctl written by path after the mounts would
/// land in that host file. It must go to the container's own netns through
/// the real procfs, and the host file must stay as it was.
#[test]
fn sysctl_writes_go_to_the_real_procfs() {
    require_root!();
    let sb = Sandbox::new();
    let fake = sb.path().join("fake-sys");
    std::fs::create_dir_all(fake.join("net/ipv4")).unwrap();
    std::fs::write(fake.join("net/ipv4/ip_forward"), "0\n").unwrap();
    let b = bundle(&sb, "sysctl", |c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/proc/sys", "type": "bind", "source": fake, "options": ["rbind"]}),
        );
        sh_args(c, "sleep 30");
    });
    let o = sb.sh(&format!(
        "$RT create -b {} s </dev/null >/dev/null; echo \"create=$?\"\n\
         pid=$($RT state s | grep -o '\"pid\": *[0-9]*' | grep -o '[0-9]*$')\n\
         echo \"real=$(nsenter -t $pid -n cat /proc/sys/net/ipv4/ip_forward)\"\n\
         $RT delete -f s",
        b.display()
    ));
    let out = stdout(&o);
    println!("berth: {}", describe(&o));
    assert_eq!(
        std::fs::read_to_string(fake.join("net/ipv4/ip_forward")).unwrap(),
        "0\n",
        "the sysctl was written into the host file bound over /proc/sys"
    );
    assert!(out.contains("create=0"), "{}", describe(&o));
    assert!(
        out.contains("real=1"),
        "the container's netns got the sysctl: {}",
        describe(&o)
    );
    peers(&sb, "a bind over /proc/sys", |p| {
        std::fs::write(fake.join("net/ipv4/ip_forward"), "0\n").unwrap();
        let s = run_script(&peer_rt(p), &b, "s");
        format!(
            "{s}; echo \"host file: $(cat {})\"",
            fake.join("net/ipv4/ip_forward").display()
        )
    });
}

/// A bundle whose /dev is a host directory where `null` is a regular file,
/// or a symlink to a procfs file (CVE-2025-31133): masking must still use
/// a real 1:3 char device, or the start must be refused.
#[test]
fn masking_needs_a_real_dev_null() {
    require_root!();
    let sb = Sandbox::new();
    for (name, make) in [
        ("file", None),
        ("symlink", Some("/proc/sys/kernel/core_pattern")),
    ] {
        let dev = sb.path().join(format!("dev-{name}"));
        std::fs::create_dir_all(&dev).unwrap();
        match make {
            None => std::fs::write(dev.join("null"), "").unwrap(),
            Some(t) => symlink(t, dev.join("null")).unwrap(),
        }
        let b = bundle(&sb, &format!("null-{name}"), |c: &mut Value| {
            let mounts = c["mounts"].as_array_mut().unwrap();
            mounts.retain(|m| m["destination"] != "/dev");
            mounts.insert(
                1,
                json!({"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]}),
            );
            sh_args(c, "stat -L -c 'kcore=%F %t:%T' /proc/kcore");
        });
        let o = sb.sh(&run_script("$RT", &b, "n"));
        let out = stdout(&o);
        println!("berth with /dev/null a {name}: {}", describe(&o));
        let refused = !out.contains("exit=0") && String::from_utf8_lossy(&o.stderr).contains("1:3");
        let real = out.contains("kcore=character special file 1:3");
        assert!(
            refused || real,
            "masking used a /dev/null that is a {name}: {}",
            describe(&o)
        );
        peers(&sb, &format!("/dev/null a {name}"), |p| {
            run_script(&peer_rt(p), &b, "n")
        });
    }
}

/// A read-only path whose directory has a submount: the submount must be
/// read-only too (mount_setattr AT_RECURSIVE), not only the top mount.
#[test]
fn readonly_paths_are_readonly_in_their_submounts() {
    require_root!();
    let sb = Sandbox::new();
    let data = sb.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    let b = bundle(&sb, "ro", |c| {
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind"]}),
        );
        c["linux"]["readonlyPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/data"));
        sh_args(
            c,
            "touch /data/top 2>/dev/null; echo \"top=$?\"; touch /data/sub/escaped 2>/dev/null; echo \"sub=$?\"",
        );
    });
    let mount_sub = format!(
        "mount -t tmpfs tmpfs {} || exit 97\n",
        data.join("sub").display()
    );
    let o = sb.sh(&format!(
        "{mount_sub}{}\necho \"sub has: $(ls {})\"",
        run_script("$RT", &b, "ro"),
        data.join("sub").display()
    ));
    let out = stdout(&o);
    println!("berth: {}", describe(&o));
    assert!(out.contains("exit=0"), "{}", describe(&o));
    assert!(out.contains("top=1"), "top is read-only: {}", describe(&o));
    assert!(
        out.contains("sub=1") && out.contains("sub has: \n"),
        "the submount of a read-only path stayed writable: {}",
        describe(&o)
    );
    assert!(entries(&data).iter().all(|e| e == "sub"));
    peers(&sb, "a read-only path with a submount", |p| {
        format!(
            "{mount_sub}{}\necho \"sub has: $(ls {})\"",
            run_script(&peer_rt(p), &b, "ro"),
            data.join("sub").display()
        )
    });
}

/// An `rbind,ro` volume whose source has a submount: the submount must be
/// read-only in the container too, not only the volume's top mount.
#[test]
fn readonly_rbind_volumes_are_readonly_in_their_submounts() {
    require_root!();
    let sb = Sandbox::new();
    let vol = sb.path().join("vol");
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    let b = bundle(&sb, "rorbind", |c| {
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "ro"]}),
        );
        sh_args(
            c,
            "touch /vol/top 2>/dev/null; echo \"top=$?\"; touch /vol/sub/escaped 2>/dev/null; echo \"sub=$?\"",
        );
    });
    let mount_sub = format!(
        "mount -t tmpfs tmpfs {} || exit 97\n",
        vol.join("sub").display()
    );
    let script = |rt: &str| {
        format!(
            "{mount_sub}{}\necho \"sub has: $(ls {})\"",
            run_script(rt, &b, "rb"),
            vol.join("sub").display()
        )
    };
    let o = sb.sh(&script("$RT"));
    let out = stdout(&o);
    println!("berth: {}", describe(&o));
    assert!(out.contains("exit=0"), "{}", describe(&o));
    assert!(out.contains("top=1"), "top is read-only: {}", describe(&o));
    assert!(
        out.contains("sub=1") && out.contains("sub has: \n"),
        "the submount of an rbind,ro volume stayed writable: {}",
        describe(&o)
    );
    peers(&sb, "an rbind,ro volume with a submount", |p| {
        script(&peer_rt(p))
    });
}

/// A container sharing the host's network namespace: its /sys is a fresh
/// read-only sysfs (or, in a user namespace, where the kernel refuses one,
/// the host's with every submount read-only), never the host's /sys with
/// writable debugfs, tracefs, securityfs, bpffs, cgroup hierarchies.
#[test]
fn host_network_sys_has_no_writable_submount() {
    require_root!();
    let sb = Sandbox::new();
    for userns in [false, true] {
        let name = if userns { "hostnet-userns" } else { "hostnet" };
        let b = bundle(&sb, name, |c| {
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "network");
            if userns {
                ns.push(json!({"type": "user"}));
                c["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                c["linux"]["gidMappings"] =
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            }
            // Mount points under /sys with their per-mount options.
            sh_args(
                c,
                "awk '$5 ~ \"^/sys\" {print \"mnt\", $5, $6}' /proc/self/mountinfo",
            );
        });
        // The box's /sys carries the host's submounts, as a real host's does.
        let o = sb.sh(&run_script("$RT", &b, "h"));
        let out = stdout(&o);
        println!("berth ({name}): {}", describe(&o));
        assert!(out.contains("exit=0"), "{}", describe(&o));
        let writable: Vec<&str> = out
            .lines()
            .filter(|l| {
                l.starts_with("mnt ") && !l.split(' ').nth(2).unwrap_or("").starts_with("ro")
            })
            .collect();
        assert!(
            writable.is_empty(),
            "writable mounts under /sys of a {name} container: {writable:?}"
        );
        peers(&sb, &format!("{name} /sys"), |p| {
            format!(
                "{} | grep -c ' rw' ; true",
                run_script(&peer_rt(p), &b, "h")
            )
        });
    }
}

/// AppArmor and SELinux keys berth cannot apply are refused, naming the key.
#[test]
fn unenforceable_lsm_keys_are_refused() {
    require_root!();
    let sb = Sandbox::new();
    for (key, edit) in [
        (
            "process.apparmorProfile",
            json!({"process": {"apparmorProfile": "berth-test-profile"}}),
        ),
        (
            "process.selinuxLabel",
            json!({"process": {"selinuxLabel": "system_u:system_r:container_t:s0"}}),
        ),
        (
            "linux.mountLabel",
            json!({"linux": {"mountLabel": "system_u:object_r:container_file_t:s0"}}),
        ),
    ] {
        let name = key.replace('.', "-");
        let b = bundle(&sb, &name, |c| {
            for (section, v) in edit.as_object().unwrap() {
                for (k, val) in v.as_object().unwrap() {
                    c[section][k] = val.clone();
                }
            }
            sh_args(c, "echo ran-unconfined");
        });
        let o = sb.sh(&run_script("$RT", &b, "l"));
        println!("berth with {key}: {}", describe(&o));
        assert!(
            !stdout(&o).contains("ran-unconfined"),
            "berth ran the container without the asked {key}"
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(key),
            "the error names {key}: {}",
            describe(&o)
        );
        peers(&sb, key, |p| run_script(&peer_rt(p), &b, "l"));
    }
}

/// Receive the pty master on `listener` and read the container's terminal
/// output until it closes (or give up after 30 s).
fn read_console(listener: std::os::unix::net::UnixListener) -> std::thread::JoinHandle<String> {
    use std::io::{IoSliceMut, Read};
    use std::os::fd::{AsRawFd, FromRawFd};
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => return format!("no connection: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 256];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let Ok(msg) = nix::sys::socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::empty(),
        ) else {
            return "no message".into();
        };
        let Some(fd) = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|c| match c {
                nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
        }) else {
            return "no fd".into();
        };
        // SAFETY: the fd just arrived over the socket and is ours alone.
        let mut master = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = master.read(&mut chunk) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&out).replace('\r', "")
    })
}

/// A /dev (bound from a shared directory) whose `console` is a symlink to a
/// procfs file (CVE-2025-52565): the pty must be bound only onto a verified
/// /dev/console, never through the link over the procfs file.
#[test]
fn console_is_bound_only_onto_a_verified_target() {
    require_root!();
    let sb = Sandbox::new();
    let dev = sb.path().join("dev-console");
    std::fs::create_dir_all(dev.join("pts")).unwrap();
    for (name, minor) in [("null", 3), ("zero", 5)] {
        nix::sys::stat::mknod(
            &dev.join(name),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, minor),
        )
        .unwrap();
    }
    symlink("pts/ptmx", dev.join("ptmx")).unwrap();
    symlink("/proc/sys/kernel/core_pattern", dev.join("console")).unwrap();
    let b = bundle(&sb, "console", |c: &mut Value| {
        c["process"]["terminal"] = json!(true);
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/dev");
        mounts.insert(
            1,
            json!({"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]}),
        );
        sh_args(
            c,
            "echo \"core_pattern=$(stat -L -c %t /proc/sys/kernel/core_pattern)\"",
        );
    });
    // runc takes a console socket only with -d (detached).
    let run = |rt: &str, id: &str| {
        let detach = if rt.starts_with("runc") { "-d " } else { "" };
        let sock = sb.path().join(format!("console-{id}.sock"));
        let _ = std::fs::remove_file(&sock);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let reader = read_console(listener);
        let o = sb.sh(&format!(
            "{rt} run {detach}--console-socket {} -b {} {id}; echo \"exit=$?\"; for i in $(seq 100); do {rt} state {id} 2>/dev/null | grep -q running || break; sleep 0.02; done; {rt} delete -f {id} 2>/dev/null; true",
            sock.display(),
            b.display()
        ));
        // Unblock the reader when the runtime refused before connecting.
        let _ = std::os::unix::net::UnixStream::connect(&sock);
        (o, reader.join().unwrap_or_default())
    };
    let (o, tty) = run("$RT", "con");
    println!("berth: {}\n--- terminal\n{tty}", describe(&o));
    // A pty is major 136 (0x88): the pty bound over the procfs file.
    assert!(
        !tty.contains("core_pattern=88"),
        "the pty was bound over /proc/sys/kernel/core_pattern: {tty}"
    );
    let refused = !stdout(&o).contains("exit=0")
        && String::from_utf8_lossy(&o.stderr).contains("/dev/console");
    assert!(
        refused || tty.contains("core_pattern=0"),
        "refused naming /dev/console, or core_pattern untouched: {}\n{tty}",
        describe(&o)
    );
    for peer in ["crun", "runc"] {
        if crate::support::have_program(peer) {
            let (o, tty) = run(&peer_rt(peer), &format!("p{peer}"));
            println!(
                "peer {peer} on a /dev/console symlink: {} / terminal: {} / stderr: {}",
                stdout(&o).trim(),
                tty.trim(),
                String::from_utf8_lossy(&o.stderr)
                    .trim()
                    .replace('\n', " | ")
            );
        }
    }
}
