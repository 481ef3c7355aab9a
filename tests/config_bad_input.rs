//! Hostile and broken definition files, through the real binary: each gets a
//! clear error naming the file, nothing panics or hangs, and the generator
//! still writes the valid definitions beside it and exits 0.
//!
//! Running as root (as CI does), mode bits do not stop reads, so "unreadable"
//! is covered by what root cannot read either: a dangling symlink, a directory
//! named like a file, a FIFO (which would block a naive reader forever) and a
//! symlink to an endless device. chmod 000 is tested as the unprivileged
//! user `nobody` (root drops to it with setpriv).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// A root with a valid `ok.toml` beside whatever the test adds.
struct Root {
    dir: tempfile::TempDir,
    /// Run berth as this uid (and gid) instead of the test's own.
    as_uid: Option<u32>,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let r = Root { dir, as_uid: None };
        r.write(
            "ok.toml",
            b"image = \"nginx\"\n[service]\npull = \"never\"\n",
        );
        r
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn containers(&self) -> PathBuf {
        self.path().join("etc/berth/containers")
    }
    /// `program`, as `as_uid` when set (setpriv, util-linux).
    fn command(&self, program: &Path) -> Command {
        match self.as_uid {
            None => Command::new(program),
            Some(id) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={id}"))
                    .arg(format!("--regid={id}"))
                    .arg("--clear-groups")
                    .arg(program);
                c
            }
        }
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.containers().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        p
    }
}

/// Run a command with a deadline so a hang fails the test instead of the suite.
fn run_with_deadline(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command hung: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `berth check` fails with an error line naming `bad` and containing `what`.
fn check_reports(root: &Root, bad: &Path, what: &str) {
    let mut cmd = root.command(Path::new(BERTH));
    cmd.arg("--root").arg(root.path()).arg("check");
    let out = run_with_deadline(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("error: {}", bad.display())))
        .unwrap_or_else(|| panic!("no error naming {}:\n{stderr}", bad.display()));
    assert!(line.contains(what), "expected {what:?} in {line:?}");
}

/// The generator exits 0, writes ok's drop-in and nothing for `bad_name`.
fn generator_skips(root: &Root, bad_name: &str) {
    let bin = tempfile::tempdir().unwrap();
    let generator = bin.path().join("berth-generator");
    std::os::unix::fs::symlink(BERTH, &generator).unwrap();
    let out_dir = bin.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    if let Some(id) = root.as_uid {
        std::os::unix::fs::chown(&out_dir, Some(id), Some(id)).unwrap();
        make_traversable(bin.path());
    }
    let mut cmd = root.command(&generator);
    cmd.arg(&out_dir)
        .env("BERTH_ROOT", root.path())
        .env_remove("SYSTEMD_SCOPE");
    let out = run_with_deadline(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&format!("definition \"{bad_name}\" has errors, skipping")),
        "{stderr}"
    );
    assert!(out_dir
        .join("berth@ok.service.d/50-berth-generated.conf")
        .is_file());
    assert!(!out_dir.join(format!("berth@{bad_name}.service.d")).exists());
}

#[test]
fn unreadable_files() {
    // Dangling symlink.
    let root = Root::new();
    let bad = root.containers().join("web.toml");
    std::os::unix::fs::symlink("/nonexistent/web.toml", &bad).unwrap();
    check_reports(&root, &bad, "symlink to a file that does not exist");
    generator_skips(&root, "web");

    // A directory named like a definition.
    let root = Root::new();
    let bad = root.containers().join("web.toml");
    fs::create_dir_all(&bad).unwrap();
    check_reports(&root, &bad, "it is a directory");
    generator_skips(&root, "web");

    // A FIFO: opening it for reading would block until a writer comes.
    let root = Root::new();
    let bad = root.containers().join("web.toml");
    let status = Command::new("mkfifo").arg(&bad).status().unwrap();
    assert!(status.success());
    check_reports(&root, &bad, "not a regular file");
    generator_skips(&root, "web");

    // A symlink to a device that never ends.
    let root = Root::new();
    let bad = root.containers().join("web.toml");
    std::os::unix::fs::symlink("/dev/zero", &bad).unwrap();
    check_reports(&root, &bad, "not a regular file");
    generator_skips(&root, "web");

    // Mode 000: root reads any file, so as root the check runs as `nobody`.
    use std::os::unix::fs::PermissionsExt;
    let mut root = Root::new();
    let bad = root.write("web.toml", b"image = \"nginx\"\n");
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o000)).unwrap();
    if support::is_root() {
        require_program!("setpriv");
        root.as_uid = Some(65534);
        make_traversable(root.path());
    }
    check_reports(&root, &bad, "permission denied");
    generator_skips(&root, "web");
}

/// Let another user reach `dir` and everything but the files made 000:
/// tempdirs are 0700.
fn make_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for d in std::iter::successors(Some(dir), |d| d.parent()) {
        let mode = fs::metadata(d).unwrap().permissions().mode();
        if mode & 0o005 != 0o005 {
            fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o005)).unwrap();
        }
        if d == Path::new("/tmp") {
            break;
        }
    }
    for e in walk(dir) {
        let mode = fs::symlink_metadata(&e).unwrap().permissions().mode();
        let file_type = fs::symlink_metadata(&e).unwrap().file_type();
        if file_type.is_dir() {
            fs::set_permissions(&e, fs::Permissions::from_mode(mode | 0o005)).unwrap();
        } else if file_type.is_file() && mode & 0o777 != 0 {
            fs::set_permissions(&e, fs::Permissions::from_mode(mode | 0o004)).unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn non_utf8_bytes() {
    let root = Root::new();
    let bad = root.write("web.toml", b"image = \"nginx\"\n# \xff\xfe\n");
    check_reports(&root, &bad, "2:3: invalid UTF-8 (byte 0xff)");
    generator_skips(&root, "web");
}

#[test]
fn oversized_file_is_refused_unread() {
    let root = Root::new();
    let mut big = b"image = \"nginx\"\n".to_vec();
    big.resize(10 << 20, b'#');
    let bad = root.write("web.toml", &big);
    let start = Instant::now();
    check_reports(&root, &bad, "file is too large (10485760 bytes)");
    generator_skips(&root, "web");
    assert!(start.elapsed() < Duration::from_secs(10));
    // A drop-in may not be huge either.
    let root = Root::new();
    root.write("web.toml", b"image = \"nginx\"\n");
    let bad = root.write("web.toml.d/10-big.conf.toml", &big);
    check_reports(&root, &bad, "too large");
    generator_skips(&root, "web");
}

#[test]
fn deep_nesting_does_not_overflow() {
    let depth = 100_000; // as deep as fits under the 1 MiB limit
    for text in [
        format!(
            "image = \"nginx\"\nx = {}1{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        format!(
            "image = \"nginx\"\nx = {}1{}\n",
            "{ a = ".repeat(depth),
            " }".repeat(depth)
        ),
    ] {
        let root = Root::new();
        let bad = root.write("web.toml", text.as_bytes());
        check_reports(&root, &bad, "nested more than 32 levels deep");
        generator_skips(&root, "web");
    }
    // Dotted keys build nesting without brackets.
    let root = Root::new();
    let text = format!(
        "image = \"nginx\"\n[network{}]\nx = 1\n",
        ".a".repeat(100_000)
    );
    let bad = root.write("web.toml", text.as_bytes());
    check_reports(&root, &bad, "invalid TOML: recursion limit");
    generator_skips(&root, "web");
}

#[test]
fn unknown_and_duplicate_keys() {
    let root = Root::new();
    let bad = root.write("web.toml", b"image = \"nginx\"\nimgae = \"x\"\n");
    check_reports(
        &root,
        &bad,
        "2:1: imgae: unknown key \"imgae\" at the top level (did you mean \"image\"?)",
    );
    generator_skips(&root, "web");

    let root = Root::new();
    let bad = root.write(
        "web.toml",
        b"image = \"nginx\"\n[service]\nrestart = \"no\"\nrestart = \"always\"\n",
    );
    check_reports(&root, &bad, "4:1: invalid TOML: duplicate key \"restart\"");
    generator_skips(&root, "web");

    // A table defined twice is a duplicate too.
    let root = Root::new();
    let bad = root.write("web.toml", b"image = \"nginx\"\n[service]\n[service]\n");
    check_reports(&root, &bad, "invalid TOML");
    generator_skips(&root, "web");
}

#[test]
fn check_named_and_missing_definitions() {
    let root = Root::new();
    root.write("bad.toml", b"image = 1\n");
    let run = |args: &[&str]| {
        let out = Command::new(BERTH)
            .arg("--root")
            .arg(root.path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, _, stdout) = run(&["check", "ok"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, "berth check: 1 definition, all valid\n");
    let (code, stderr, _) = run(&["check", "ok", "bad", "ghost"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("bad.toml:1:9: image: invalid type"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: no definition \"ghost\""),
        "{stderr}"
    );
    // BERTH_ROOT works like --root.
    let out = Command::new(BERTH)
        .args(["generate", "--dry-run", "ok"])
        .env("BERTH_ROOT", root.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("# FILE berth@ok.service.d/50-berth-generated.conf\n# generated by berth-generator from "), "{stdout}");
    // generate DIR writes, and fails (1) because "bad" is skipped.
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr, _) = run(&["generate", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("\"bad\" has errors, skipped"), "{stderr}");
    assert!(dir
        .path()
        .join("berth@ok.service.d/50-berth-generated.conf")
        .is_file());
}

#[test]
fn bad_network_name_keys() {
    // Each of [network] ip/aliases/dns/dns_search/extra_hosts: the key and
    // what was expected, at the value; the generator skips the definition.
    for (text, what) in [
        (
            "[network]\nip = { default = \"10.89.0.999\" }\n",
            "3:18: [network] ip: invalid IP address \"10.89.0.999\"",
        ),
        (
            "[network]\nip = { app = \"10.89.0.9\" }\n",
            "3:8: [network] ip: \"app\" is not a network this container joins",
        ),
        (
            "[network]\naliases = [\"-www\"]\n",
            "3:12: [network] aliases: invalid name \"-www\"",
        ),
        (
            "[network]\ndns = [\"ns.example\"]\n",
            "3:8: [network] dns: invalid IP address \"ns.example\"",
        ),
        (
            "[network]\ndns_search = [\"a..b\"]\n",
            "3:15: [network] dns_search: invalid domain name \"a..b\"",
        ),
        (
            "[network]\nextra_hosts = [\"gw=192.0.2.1\"]\n",
            "3:16: [network] extra_hosts: invalid host entry \"gw=192.0.2.1\": expected \"NAME:ADDRESS\"",
        ),
        (
            "[network]\nmode = \"host\"\naliases = [\"www\"]\n",
            "4:11: [network] aliases: only allowed with mode = \"bridge\"",
        ),
    ] {
        let root = Root::new();
        let bad = root.write("web.toml", format!("image = \"nginx\"\n{text}").as_bytes());
        check_reports(&root, &bad, what);
        generator_skips(&root, "web");
    }

    // A fixed address outside its network's subnet is found where the
    // networks are resolved: `berth check` names the file and position.
    let root = Root::new();
    let bad = root.write(
        "web.toml",
        b"image = \"nginx\"\n[network]\nip = { default = \"192.0.2.7\" }\n",
    );
    check_reports(
        &root,
        &bad,
        "3:18: [network] ip: 192.0.2.7 is not a host address in network \"default\" (10.89.0.0/24)",
    );
}

#[test]
fn bad_container_side_keys() {
    // Issue 15's container-side keys: each bad value named with its key, at
    // its line and column; the generator skips the definition.
    for (text, what) in [
        (
            "[security]\ndevices = [\"/dev/fuse:rwx\"]\n",
            "3:12: [security] devices: invalid device permissions \"rwx\"",
        ),
        (
            "[security]\ndevices = [\"/dev/fuse\", \"/etc/passwd\"]\n",
            "3:25: [security] devices: device \"/etc/passwd\" is not under /dev",
        ),
        (
            "[security]\nuserns = \"auto\"\ndevices = [\"/dev/sda:/dev/xvda\"]\n",
            "4:12: [security] devices: device \"/dev/sda:/dev/xvda\": with userns = \"auto\" a device keeps its host path",
        ),
        (
            "[security]\nsysctls = { \"kernel.pid_max\" = \"99999\" }\n",
            "3:13: [security] sysctls: sysctl \"kernel.pid_max\" is not namespaced",
        ),
        (
            "[network]\nmode = \"host\"\n[security]\nsysctls = { \"net.ipv4.ip_forward\" = \"1\" }\n",
            "5:13: [security] sysctls: sysctl \"net.ipv4.ip_forward\" would change the host's network",
        ),
        (
            "[security]\nsysctls = { \"kernel.shmmax\" = \"1\\n2\" }\n",
            "3:31: [security] sysctls: invalid value \"1\\n2\" for sysctl \"kernel.shmmax\"",
        ),
        (
            "[resources]\nulimits = { nofile = \"65536:1024\" }\n",
            "3:22: [resources] ulimits nofile: nofile = \"65536:1024\": soft limit 65536 is above the hard limit 1024",
        ),
        (
            "[resources]\nulimits = { files = 1024 }\n",
            "3:13: [resources] ulimits files: unknown ulimit \"files\"",
        ),
        (
            "[resources]\nshm_size = \"lots\"\n",
            "3:12: [resources] shm_size: invalid size \"lots\"",
        ),
        (
            "[[tmpfs]]\ntarget = \"/tmp\"\noptions = [\"noexec\", \"size=1m\"]\n",
            "4:22: [[tmpfs]] options: tmpfs option \"size=1m\": set it with the \"size\" key",
        ),
        (
            "[[tmpfs]]\ntarget = \"/tmp\"\noptions = [\"nosymfollow\"]\n",
            "4:12: [[tmpfs]] options: unknown tmpfs option \"nosymfollow\"",
        ),
        (
            "[security]\nunmask = [\"proc/kcore\"]\n",
            "3:11: [security] unmask: relative path \"proc/kcore\"",
        ),
        (
            "[security]\nunmask = [\"/proc/kcore\", \"/etc/passwd\"]\n",
            "3:26: [security] unmask: \"/etc/passwd\" is not masked or read-only by default",
        ),
        (
            "[security]\ngroup_add = [\"a b\"]\n",
            "3:14: [security] group_add: invalid group \"a b\"",
        ),
    ] {
        let root = Root::new();
        let bad = root.write("web.toml", format!("image = \"nginx\"\n{text}").as_bytes());
        check_reports(&root, &bad, what);
        generator_skips(&root, "web");
    }
}

#[test]
fn bad_identity_keys() {
    // labels/annotations, timezone, volume options and ID maps: the key and
    // what was expected, at the value; the generator skips the definition.
    for (text, what) in [
        (
            "labels = { \"a=b\" = \"x\" }\n",
            "2:12: labels: invalid name \"a=b\": expected a non-empty name without \"=\"",
        ),
        (
            "annotations = { x = \"a\\u0000b\" }\n",
            "2:21: annotations: value of \"x\" contains a NUL byte",
        ),
        (
            "timezone = \"../../etc/shadow\"\n",
            "2:12: timezone: invalid time zone \"../../etc/shadow\": expected \"local\" or a zone name",
        ),
        (
            "timezone = \"Mars/Olympus_Mons\"\n",
            "2:12: timezone: unknown time zone \"Mars/Olympus_Mons\": no file /usr/share/zoneinfo/Mars/Olympus_Mons",
        ),
        (
            "[[volume]]\ntarget = \"/data\"\npropagation = \"bidirectional\"\n",
            "4:15: [[volume]] propagation: invalid value \"bidirectional\": expected \"private\", \"rprivate\", \"shared\", \"rshared\", \"slave\" or \"rslave\"",
        ),
        (
            "[[volume]]\ntarget = \"/data\"\nchown = \"yes\"\n",
            "4:9: [[volume]] chown: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[security]\nuid_map = [\"0:100000:65536\", \"1000:200000:10\"]\n",
            "3:30: [security] uid_map: \"1000:200000:10\" overlaps \"0:100000:65536\" on the container side",
        ),
        (
            "[security]\nuid_map = [\"0:4294967295:2\"]\n",
            "3:12: [security] uid_map: invalid ID map \"0:4294967295:2\": the range runs past 4294967295",
        ),
        (
            "[security]\nuserns = \"keep-id\"\n",
            "3:10: [security] userns: userns = \"keep-id\" needs user = \"UID[:GID]\"",
        ),
        (
            "[security]\nuserns = \"auto\"\nuid_map = [\"0:1:1\"]\n",
            "4:11: [security] uid_map: explicit ID maps cannot be combined with userns = \"auto\"",
        ),
        (
            "labels = \"tier=web\"\n",
            "2:10: labels: invalid type: string \"tier=web\", expected a table",
        ),
    ] {
        let root = Root::new();
        let bad = root.write("web.toml", format!("image = \"nginx\"\n{text}").as_bytes());
        check_reports(&root, &bad, what);
        generator_skips(&root, "web");
    }
}

#[test]
fn bad_service_keys() {
    // Each [service], [health] and [[secret]] key of issue 15 with a bad
    // value: the key and what was expected, at the value; the generator
    // skips the definition.
    for (text, what) in [
        (
            "[service]\ngroup = \"my app\"\n",
            "3:9: [service] group: invalid name \"my app\"",
        ),
        (
            "[service]\ngroup = \"-app\"\n",
            "3:9: [service] group: invalid name \"-app\"",
        ),
        (
            "[service]\nwants = [\"ghost\"]\n",
            "3:10: [service] wants: unknown container \"ghost\"",
        ),
        (
            "[service]\nbinds_to = [\"web\"]\n",
            "3:13: [service] binds_to: container \"web\" depends on itself",
        ),
        (
            "[service]\npart_of = [\"x.target\", \"ghost\"]\n",
            "3:24: [service] part_of: unknown container \"ghost\"",
        ),
        (
            "[service]\nbefore = [\"a b\"]\n",
            "3:11: [service] before: invalid dependency \"a b\"",
        ),
        (
            "[service]\nstop_signal = \"SIGFOO\"\n",
            "3:15: [service] stop_signal: invalid signal \"SIGFOO\"",
        ),
        (
            "[service]\nreload_signal = \"RTMIN+40\"\n",
            "3:17: [service] reload_signal: invalid signal \"RTMIN+40\"",
        ),
        (
            "[service]\nreload_signal = \"HUP\"\nreload_command = [\"x\"]\n",
            "4:18: [service] reload_command: reload_signal and reload_command are both set",
        ),
        (
            "[service]\nreload_command = []\n",
            "3:18: [service] reload_command: empty command",
        ),
        (
            "[service]\nrestart_sec = \"3x\"\n",
            "3:15: [service] restart_sec: invalid duration \"3x\"",
        ),
        (
            "[service]\nstart_limit_burst = 0\n",
            "3:21: [service] start_limit_burst: invalid start_limit_burst 0",
        ),
        (
            "[service]\npull = \"newest\"\n",
            "3:8: [service] pull: invalid value \"newest\": expected \"missing\", \"always\", \"never\" or \"newer\"",
        ),
        (
            "[health]\ncommand = [\"true\"]\nstart_interval = \"0s\"\n",
            "4:18: [health] start_interval: start_interval must be greater than 0",
        ),
        (
            "[[secret]]\ncredential = \"pw\"\ntype = \"file\"\n",
            "4:8: [[secret]] type: invalid value \"file\": expected \"mount\" or \"env\"",
        ),
        (
            "[[secret]]\ncredential = \"pw\"\ntype = \"env\"\n",
            "2:1: [[secret]] name: missing key \"name\"",
        ),
        (
            "[[secret]]\ncredential = \"pw\"\nname = \"PW\"\n",
            "4:8: [[secret]] name: name is the variable of type = \"env\"",
        ),
        (
            "environment = { PW = \"x\" }\n[[secret]]\ncredential = \"pw\"\ntype = \"env\"\nname = \"PW\"\n",
            "6:8: [[secret]] name: \"PW\" is also set by environment",
        ),
        (
            "[[secret]]\ncredential = \"pw\"\ntype = \"env\"\nname = \"PW\"\ntarget = \"/pw\"\n",
            "6:10: [[secret]] target: a secret of type = \"env\" is no file",
        ),
        (
            "[[secret]]\ncredential = \"pw\"\ntype = \"env\"\nname = \"1PW\"\n",
            "5:8: [[secret]] name: invalid environment variable name \"1PW\"",
        ),
        (
            "[[secret]]\ncredential = \"pw\"\nencrypted = \"yes\"\n",
            "4:13: [[secret]] encrypted: invalid type",
        ),
    ] {
        let root = Root::new();
        let bad = root.write("web.toml", format!("image = \"nginx\"\n{text}").as_bytes());
        check_reports(&root, &bad, what);
        generator_skips(&root, "web");
    }
}

#[test]
fn bad_resources_keys() {
    // memory_swap, memory_reservation, cpuset, cpu_weight, io_max: each
    // bad value named at its line and column with what was expected; the
    // generator skips the definition.
    for (text, what) in [
        (
            "memory_swap = \"-1\"\n",
            "3:15: [resources] memory_swap: invalid size \"-1\"",
        ),
        (
            "memory = \"64M\"\nmemory_reservation = \"1G\"\n",
            "4:22: [resources] memory_reservation: memory_reservation 1073741824 is above memory 67108864",
        ),
        (
            "cpuset = \"0-3,x\"\n",
            "3:10: [resources] cpuset: invalid cpuset: \"x\" is not a CPU",
        ),
        (
            "cpu_weight = 10001\n",
            "3:14: [resources] cpu_weight: invalid cpu_weight 10001: expected a number from 1 to 10000",
        ),
        (
            "io_max = { \"/dev/sda\" = \"rbps=fast\" }\n",
            "3:25: [resources] io_max.\"/dev/sda\": invalid io_max: rbps: invalid size \"fast\"",
        ),
        (
            "io_max = { \"dev/sda\" = \"rbps=1M\" }\n",
            "3:12: [resources] io_max.\"dev/sda\": expected the absolute path of a block device",
        ),
    ] {
        let root = Root::new();
        let bad = root.write(
            "web.toml",
            format!("image = \"nginx\"\n[resources]\n{text}").as_bytes(),
        );
        check_reports(&root, &bad, what);
        root.write("ok.toml", b"image = \"nginx\"\n");
        generator_skips(&root, "web");
    }
}

#[test]
fn bad_volume_files() {
    // /etc/berth/volumes/NAME.toml: each error names the file, line and
    // column; `berth check` fails on it.
    for (text, what) in [
        (
            "type = \"ext5\"\n",
            "1:8: type: unknown filesystem type \"ext5\"",
        ),
        (
            "type = \"ext4\"\ndevice = \"vdb1\"\n",
            "2:10: device: invalid device \"vdb1\"",
        ),
        (
            "type = \"nfs\"\ndevice = \"server\"\n",
            "2:10: device: invalid device \"server\": expected SERVER:/EXPORT",
        ),
        ("uid = 4294967296\n", "1:7: uid: invalid uid 4294967296"),
        ("mode = \"999\"\n", "1:8: mode: invalid mode \"999\""),
        (
            "size = \"1G\"\n",
            "1:1: size: unknown key \"size\" at the top level",
        ),
        // The file is 0644 here: a password in it would be anyone's.
        (
            "type = \"cifs\"\ndevice = \"//nas/share\"\noptions = [\"username=u\", \"password=p\"]\n",
            "3:26: options: \"password=\" in a volume file other users can read",
        ),
        (
            "type = \"cifs\"\ndevice = \"//nas/share\"\noptions = [\"credentials=nas.cred\"]\n",
            "3:12: options: invalid option \"credentials=nas.cred\": expected credentials=/ABSOLUTE/PATH",
        ),
    ] {
        let root = Root::new();
        let bad = root.path().join("etc/berth/volumes/data.toml");
        fs::create_dir_all(bad.parent().unwrap()).unwrap();
        fs::write(&bad, text).unwrap();
        check_reports(&root, &bad, what);
    }
}

#[test]
fn bad_build_keys() {
    // `[build]`: the image source rules and each key's value, named at its
    // line and column; the generator skips the definition.
    for (text, what) in [
        (
            "image = \"nginx\"\n[build]\ncontext = \"/srv/app\"\n",
            "2:1: [build]: both \"image\"",
        ),
        (
            "[build]\nfile = \"Containerfile\"\n",
            "1:1: [build] context: missing key \"context\"",
        ),
        (
            "[build]\ncontext = \"/srv/app\"\nfile = \"../x\"\n",
            "3:8: [build] file: invalid file \"../x\"",
        ),
        (
            "[build]\ncontext = \"/srv/app\"\ntarget = \"-x\"\n",
            "3:10: [build] target: invalid stage name",
        ),
        (
            "[build]\ncontext = \"/srv/app\"\nargs = { \"A B\" = \"1\" }\n",
            "3:10: [build] args: invalid build argument name",
        ),
        (
            "[build]\ncontext = \"/srv/app\"\n[service]\npull = \"never\"\n",
            "4:8: [service] pull: pull does not apply to a [build]",
        ),
    ] {
        let root = Root::new();
        let bad = root.write("web.toml", text.as_bytes());
        check_reports(&root, &bad, what);
        generator_skips(&root, "web");
    }
    // The host side, which only `berth check` judges (the generator writes
    // the unit: at boot the context's file system may not be mounted yet).
    let root = Root::new();
    let bad = root.write("web.toml", b"[build]\ncontext = \"/srv/none\"\n");
    check_reports(
        &root,
        &bad,
        "2:11: [build] context: \"/srv/none\" does not exist",
    );
}
