//! A User-Mode Linux guest for the tests that must see the kernel *enforce* a
//! limit (memory, pids, cpu): the namespace box has no cgroup controllers, the
//! UML guest has `cpu io memory pids` (/work/shared/TESTING.md, "Real cgroup
//! enforcement").
//!
//! Owns: staging one guest per call in a host temp dir (init script, test
//! script, seed files, a writable results dir), booting `linux.uml` on the
//! host's root through hostfs (read-only) under `timeout`, and parsing what the
//! guest reported. Must not: write anywhere on the host but its own temp dir
//! (the guest sees `/` read-only; only `out/` is mounted read-write), or leave
//! a guest running (the whole guest runs under `timeout -k`, in its own
//! process group).
//!
//! On the host, everything the guest needs beyond the host's own root is
//! staged in one directory, `layer/`: seed files, copied directories (a
//! busybox rootfs), the scripts, berth as `packaging/install.sh --destdir`
//! lays it out, and for systemd the masks, an empty fstab and the test unit.
//! Inside the guest, PID 1 is a generated shell script: it mounts proc,
//! insmods overlay (busybox `insmod`, there is no kmod), mounts `layer/`
//! through a hostfs of its own, overlays it over `/` (hostfs, read-only) with
//! a tmpfs upper, mounts proc, sysfs, cgroup2, devtmpfs, tmpfs on /run and
//! /var/lib/berth, and the host's `out/` read-write at [`GUEST_OUT`],
//! `pivot_root`s and then either
//! - runs the test script directly as PID 1 ([`Mode::Direct`]), or
//! - execs systemd, which runs the test script as `berth-uml-test.service`
//!   once `is-system-running --wait` returns ([`Mode::Systemd`]).
//!
//! Boot times measured on a loaded 2-core host: the init script's root is
//! ready ~0.5-1 s after the kernel starts it (~2.5 s of guest uptime); systemd
//! reaches `running` at 5-7 s of guest uptime (up to ~20 s under heavy load,
//! where every fork+exec in UML costs hundreds of ms).
//!
//! The channel back is a file on hostfs, not the console: the kernel's own
//! messages (the OOM killer's report, above all) go to the console too and
//! can split a line in two. The test script calls `result KEY VALUE`, which
//! appends `KEY=VALUE` to `out/results`; the console is kept for diagnostics.
//! When the script ends (or fails), the guest powers off with sysrq `o`.
//! `BERTH_UML_KEEP=1` leaves the temp dir (init.sh, layer/, console.log,
//! out/results, out/log with the script's timestamped `set -x` trace)
//! behind for debugging.
#![allow(dead_code)]

use super::systemd_box::shell_quote;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian `user-mode-linux`.
pub const LINUX_UML: &str = "/usr/bin/linux.uml";
/// Its modules (`/usr/lib/uml/modules/KVER/`).
pub const UML_MODULES: &str = "/usr/lib/uml/modules";
/// Where the guest sees the host's `out/` directory (read-write hostfs).
pub const GUEST_OUT: &str = "/berth-uml/out";
/// Where the guest finds the staged scripts.
pub const GUEST_DIR: &str = "/berth-uml";

/// What berth's install script puts on a host: removed from the guest's
/// overlay before anything runs, so a berth installed on the test machine
/// itself can never make a test pass.
const BERTH_PATHS: &[&str] = &[
    "/usr/bin/berth",
    "/usr/bin/berth-runtime",
    "/usr/lib/systemd/system-generators/berth-generator",
    "/usr/lib/systemd/system/berth@.service",
    "/usr/lib/systemd/system/berth.slice",
    "/etc/berth",
    "/usr/lib/berth",
];

/// Units masked in a systemd guest on top of the host's enabled ones: gettys
/// would sit on the console; postgresql's generator instantiates
/// `postgresql@VERSION-main`; the journal is volatile, so nothing to flush.
const ALWAYS_MASK: &[&str] = &[
    "console-getty.service",
    "getty@.service",
    "serial-getty@.service",
    "postgresql@.service",
    "systemd-journal-flush.service",
    "systemd-remount-fs.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    // Boot steps that cost seconds in UML (page faults and hostfs are slow)
    // and do nothing a throwaway guest needs: there is no kmod to modprobe
    // with, sysctls and users are the host's, devtmpfs has the device nodes,
    // and tmpfiles' `D /tmp` would whiteout the host's /tmp file by file.
    "modprobe@.service",
    "systemd-sysctl.service",
    "systemd-sysusers.service",
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-user-sessions.service",
    "systemd-update-utmp.service",
    "systemd-random-seed.service",
    "systemd-binfmt.service",
    "systemd-hwdb-update.service",
    "systemd-journal-catalog-update.service",
    "systemd-udev-trigger.service",
    "ldconfig.service",
    // Enabled by nfs-common (a test package): rpc-gssd and its pipefs
    // mount, which needs the sunrpc module the guest may not have loaded.
    "nfs-client.target",
    "run-rpc_pipefs.mount",
];

/// Host generators masked in a systemd guest: SysV scripts cost a second of
/// boot and the others only feed masked units.
const MASK_GENERATORS: &[&str] = &[
    "systemd-sysv-generator",
    "postgresql-generator",
    "systemd-getty-generator",
];

/// How the test script runs inside the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As PID 1 itself, without systemd: plain cgroup2 at /sys/fs/cgroup.
    Direct,
    /// Under a real systemd, as a service started at boot.
    Systemd,
}

/// One guest to boot.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    pub mode: Mode,
    /// Modules to insmod before the script runs (overlay is always loaded),
    /// by path below `/usr/lib/uml/modules/KVER/`.
    pub modules: Vec<String>,
    /// Files written into the guest's overlay before the script runs (and
    /// before systemd starts), as (absolute path, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Host directories copied (`cp -a`) into the guest before it runs, as
    /// (host dir, absolute guest path).
    pub dirs: Vec<(PathBuf, String)>,
    /// Run `packaging/install.sh` with the berth cargo built, in the guest,
    /// before systemd starts (so its generator runs at boot).
    pub install_berth: bool,
    /// The test script (sh). `result KEY VALUE` reports a value; `$BERTH` is
    /// the berth binary; `berth-runtime` is on `$PATH`.
    pub script: String,
    /// Deadline for the whole guest, boot to power-off.
    pub timeout: Duration,
    /// A block device of this many bytes, `/dev/ubda` in the guest (a
    /// sparse file in the guest's temp dir), for IO limits.
    pub disk: Option<u64>,
}

impl GuestOptions {
    pub fn new(mode: Mode, script: impl Into<String>) -> Self {
        GuestOptions {
            mode,
            modules: Vec::new(),
            files: Vec::new(),
            dirs: Vec::new(),
            install_berth: false,
            script: script.into(),
            timeout: Duration::from_secs(40),
            disk: None,
        }
    }

    pub fn file(mut self, path: &str, contents: impl AsRef<[u8]>) -> Self {
        self.files
            .push((path.to_string(), contents.as_ref().to_vec()));
        self
    }

    pub fn dir(mut self, host: &Path, guest: &str) -> Self {
        self.dirs.push((host.to_path_buf(), guest.to_string()));
        self
    }

    pub fn with_berth(mut self) -> Self {
        self.install_berth = true;
        self
    }
}

/// What a guest reported.
#[derive(Debug, Clone)]
pub struct GuestRun {
    /// `KEY=VALUE` lines from `out/results`, last one wins.
    pub results: BTreeMap<String, String>,
    /// The console (kernel log, init script's and systemd's output).
    pub console: String,
    /// The test script's own stdout and stderr.
    pub log: String,
    /// Host wall-clock time from spawning linux.uml to its exit.
    pub wall: Duration,
    /// Whether `timeout` had to kill the guest.
    pub timed_out: bool,
}

impl GuestRun {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.results.get(key).map(String::as_str)
    }

    /// The value of `key`, or a panic that shows everything the guest said.
    pub fn value(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("the guest reported no {key:?}\n{}", self.diagnostics()))
    }

    /// `key` as a number, or a panic that shows everything the guest said.
    pub fn number(&self, key: &str) -> u64 {
        let v = self.value(key);
        v.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the guest reported {key}={v:?}, not a number\n{}",
                self.diagnostics()
            )
        })
    }

    /// Results, the script's log and the console tail, for assertion messages.
    pub fn diagnostics(&self) -> String {
        let tail: Vec<&str> = self.console.lines().rev().take(120).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- results (guest ran {:?}{}) ---\n{:#?}\n--- test script log ---\n{}\n--- console (last 120 lines) ---\n{}",
            self.wall,
            if self.timed_out { ", killed by timeout" } else { "" },
            self.results,
            self.log,
            tail.join("\n")
        )
    }
}

/// Why UML cannot run here, or `None` when it can (root, linux.uml, modules,
/// busybox, an exec-able /dev/shm for the guest's memory file).
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (run the suite as root, as CI does)".into());
    }
    if !Path::new(LINUX_UML).is_file() {
        return Some(format!(
            "{LINUX_UML} is missing (apt-get install user-mode-linux)"
        ));
    }
    if modules_dir().is_none() {
        return Some(format!("no overlay.ko below {UML_MODULES}/*/"));
    }
    if !Path::new(super::BUSYBOX).is_file() {
        return Some(format!("{} is missing (busybox-static)", super::BUSYBOX));
    }
    if !have_cmd("timeout") {
        return Some("'timeout' (coreutils) is missing".into());
    }
    None
}

/// Skip the current test, saying why, when a UML guest cannot run here.
#[macro_export]
macro_rules! require_uml {
    () => {
        if let Some(why) = $crate::support::uml::unavailable() {
            $crate::support::skip(&format!("User-Mode Linux guest: {why}"));
            return;
        }
    };
}

fn have_cmd(c: &str) -> bool {
    ["/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(c).is_file())
}

/// `/usr/lib/uml/modules/KVER`, the one holding overlay.ko.
fn modules_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(UML_MODULES)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("kernel/fs/overlayfs/overlay.ko").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Units enabled on this machine (its `*.wants`/`*.requires` links), which a
/// guest booted from its root would otherwise start.
fn host_enabled_units() -> Vec<String> {
    let mut units: Vec<String> = ALWAYS_MASK.iter().map(|s| s.to_string()).collect();
    units.extend(super::systemd_box::host_wanted_units());
    units.sort();
    units.dedup();
    units
}

fn q(p: &Path) -> String {
    shell_quote(&p.to_string_lossy())
}

/// Whether berth is installed on this machine, in which case its files would
/// show through the guest's overlay and must be removed there first.
fn host_has_berth() -> bool {
    BERTH_PATHS
        .iter()
        .any(|p| Path::new(p).symlink_metadata().is_ok())
}

/// Build, on the host, the layer the guest sees on top of the host's root:
/// seed files, copied dirs, the scripts, berth as install.sh lays it out and,
/// for systemd, the masks and the test unit. Staging on the host costs a
/// fraction of a second; copying berth's 150 MB debug binary through hostfs
/// inside the guest took seconds.
fn build_layer(layer: &Path, opts: &GuestOptions) -> Result<(), String> {
    let berth = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mkdir =
        |p: &Path| std::fs::create_dir_all(p).map_err(|e| format!("cannot create {p:?}: {e}"));
    let write = |p: &Path, c: &[u8]| {
        if let Some(parent) = p.parent() {
            mkdir(parent)?;
        }
        std::fs::write(p, c).map_err(|e| format!("cannot write {p:?}: {e}"))
    };
    let link = |target: &str, p: &Path| {
        if let Some(parent) = p.parent() {
            mkdir(parent)?;
        }
        let _ = std::fs::remove_file(p);
        std::os::unix::fs::symlink(target, p).map_err(|e| format!("cannot link {p:?}: {e}"))
    };
    let guest = |abs: &str| -> Result<PathBuf, String> {
        let rel = abs.trim_start_matches('/');
        if !abs.starts_with('/') || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(format!("{abs:?} is not a plain absolute path"));
        }
        Ok(layer.join(rel))
    };
    mkdir(layer)?;
    mkdir(&guest(GUEST_OUT)?)?;
    write(&guest(GUEST_DIR)?.join("test.sh"), opts.script.as_bytes())?;
    write(
        &guest(GUEST_DIR)?.join("run.sh"),
        run_script(opts).as_bytes(),
    )?;
    link(
        &berth.to_string_lossy(),
        &guest(GUEST_DIR)?.join("bin/berth-runtime"),
    )?;
    // Overlay upper dirs cannot live on an overlay: berth's store gets a
    // tmpfs mounted here, as it gets ext4 on a real host.
    mkdir(&guest("/var/lib/berth")?)?;
    for (host, in_guest) in &opts.dirs {
        let to = guest(in_guest)?;
        mkdir(&to)?;
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", host.display()))
            .arg(&to)
            .status()
            .map_err(|e| format!("cannot run cp: {e}"))?;
        if !st.success() {
            return Err(format!("cp -a {host:?} {to:?} failed: {st}"));
        }
    }
    if opts.install_berth {
        let out = Command::new("sh")
            .arg(src.join("packaging/install.sh"))
            .arg("--destdir")
            .arg(layer)
            .arg("--bin")
            .arg(&berth)
            .output()
            .map_err(|e| format!("cannot run install.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "packaging/install.sh --destdir {layer:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    if opts.mode == Mode::Systemd {
        write(&layer.join("etc/fstab"), b"# berth-uml guest: no disks\n")?;
        for u in host_enabled_units() {
            link("/dev/null", &layer.join("etc/systemd/system").join(u))?;
        }
        for g in MASK_GENERATORS {
            link(
                "/dev/null",
                &layer.join("etc/systemd/system-generators").join(g),
            )?;
        }
        write(
            &layer.join("etc/systemd/journald.conf.d/90-berth-uml.conf"),
            b"[Journal]\nStorage=volatile\n",
        )?;
        write(
            &layer.join("etc/systemd/system/berth-uml-test.service"),
            format!(
                "[Unit]\nDescription=berth UML test script\n[Service]\nType=simple\nExecStart=/bin/sh {GUEST_DIR}/run.sh\n"
            )
            .as_bytes(),
        )?;
        link(
            "../berth-uml-test.service",
            &layer.join("etc/systemd/system/multi-user.target.wants/berth-uml-test.service"),
        )?;
    }
    // Seed files last: they may replace anything above.
    for (path, contents) in &opts.files {
        write(&guest(path)?, contents)?;
    }
    Ok(())
}

/// The guest's PID 1 script: set up the overlay root, then run the test or
/// exec systemd.
fn init_script(dir: &Path, opts: &GuestOptions, modules: &Path) -> String {
    let mut s = String::new();
    s.push_str("#!/bin/sh\n# generated by tests/support/uml.rs: PID 1 of a UML guest\n");
    s.push_str("export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n");
    s.push_str(&format!("D={}\nMOD={}\n", q(dir), q(modules)));
    s.push_str(
        r#"BB=/bin/busybox
# Whatever fails from here on: say so on the console and power off, rather
# than let the kernel panic on PID 1's exit or sit until the host's timeout.
die() { echo "berth-uml: init failed: $*"; echo o > /proc/sysrq-trigger; sleep 10; }
trap 'die "exit status $?"' EXIT
set -eu
mount -t proc proc /proc
echo "berth-uml: init started at $(cut -d' ' -f1 /proc/uptime)s"
$BB insmod "$MOD/kernel/fs/overlayfs/overlay.ko"
"#,
    );
    for m in &opts.modules {
        s.push_str(&format!("$BB insmod \"$MOD\"/{}\n", shell_quote(m)));
    }
    let (lower, scrub) = if host_has_berth() {
        ("/", true)
    } else {
        ("/dev/layer:/", false)
    };
    s.push_str(&format!(
        r#"# The staged layer over the host's root (hostfs, read-only), under a tmpfs
# upper: the guest may write, install and mask anything, and the host sees
# none of it. The merged root is mounted on a tmpfs over /dev, a directory
# that surely exists on the host.
mount -t tmpfs -o mode=0755 tmpfs /dev
M=/dev/berth-root
mkdir -p /dev/upper-tmp "$M"
mount -t tmpfs -o mode=0755 tmpfs /dev/upper-tmp
mkdir /dev/upper-tmp/upper /dev/upper-tmp/work
# The layer through a hostfs of its own: as a path below "/" overlayfs
# would refuse it as overlapping the other lower layer.
mkdir /dev/layer
mount -t hostfs -o "$D/layer" hostfs /dev/layer
mount -t overlay overlay -o "lowerdir={lower},upperdir=/dev/upper-tmp/upper,workdir=/dev/upper-tmp/work" "$M"
"#
    ));
    if scrub {
        s.push_str("# berth is installed on this machine: a clean slate first, then the layer.\n");
        for p in BERTH_PATHS {
            s.push_str(&format!("rm -rf \"$M{p}\"\n"));
        }
        s.push_str("cp -a \"$D/layer/.\" \"$M/\"\n");
    }
    s.push_str(&format!(
        r#"mount -t proc proc "$M/proc"
mount -t sysfs sysfs "$M/sys"
mount -t cgroup2 -o nsdelegate cgroup2 "$M/sys/fs/cgroup"
mount -t devtmpfs devtmpfs "$M/dev"
mkdir -p "$M/dev/pts" "$M/dev/shm"
mount -t devpts devpts "$M/dev/pts"
mount -t tmpfs -o mode=1777 tmpfs "$M/dev/shm"
mount -t tmpfs -o mode=0755 tmpfs "$M/run"
mount -t tmpfs -o mode=0700 tmpfs "$M/var/lib/berth"
mount -t hostfs -o "$D/out" hostfs "$M{GUEST_OUT}"
echo "berth-uml: root ready at $(cut -d' ' -f1 /proc/uptime)s"
cd "$M"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot 2>/dev/null || true
trap - EXIT
"#
    ));
    match opts.mode {
        Mode::Direct => s.push_str(&format!(
            "exec /bin/sh {GUEST_DIR}/run.sh </dev/null >/dev/console 2>&1\n"
        )),
        Mode::Systemd => s.push_str(
            "exec env -i container= /lib/systemd/systemd --system --unit=multi-user.target\n",
        ),
    }
    s
}

/// The wrapper around the test script: `result`, logging, power-off.
fn run_script(opts: &GuestOptions) -> String {
    let berth = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
    let mut s = String::new();
    s.push_str(
        "#!/bin/sh\n# generated by tests/support/uml.rs: runs test.sh, reports, powers off\n",
    );
    s.push_str(&format!(
        "export PATH={GUEST_DIR}/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexport BERTH={}\nexport SYSTEMD_PAGER= SYSTEMD_COLORS=0 HOME=/root\n",
        q(&berth)
    ));
    s.push_str(&format!(
        r#"OUT={GUEST_OUT}
result() {{ k=$1; shift; printf '%s=%s\n' "$k" "$*" >> "$OUT/results"; }}
exec >> "$OUT/log" 2>&1
result script_start_s "$(cut -d' ' -f1 /proc/uptime)"
"#
    ));
    if opts.mode == Mode::Systemd {
        s.push_str(
            "result system_state \"$(systemctl --no-pager is-system-running --wait)\"\n\
             result system_running_s \"$(cut -d' ' -f1 /proc/uptime)\"\n",
        );
    }
    s.push_str(&format!(
        r#"( PS4='+ '; set -x; . {GUEST_DIR}/test.sh )
result script_status $?
result script_end_s "$(cut -d' ' -f1 /proc/uptime)"
sync
echo o > /proc/sysrq-trigger
sleep 10
"#
    ));
    s
}

/// `run` when the guest's script reached its end with status 0, else an
/// error with the guest's diagnostics.
pub fn finished(run: GuestRun) -> Result<GuestRun, String> {
    if run.get("script_status") != Some("0") {
        return Err(format!(
            "the guest script did not finish\n{}",
            run.diagnostics()
        ));
    }
    Ok(run)
}

/// Boot a guest, run `opts.script` in it, and return what it reported. `Err`
/// only when the guest could not be staged or started; a guest that failed
/// inside comes back as a [`GuestRun`] whose diagnostics say why.
pub fn run(opts: &GuestOptions) -> Result<GuestRun, String> {
    let modules = modules_dir().ok_or("no UML modules with overlay.ko")?;
    let tmp = tempfile::Builder::new()
        .prefix("berth-uml-")
        .tempdir_in("/tmp")
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let dir = tmp.path().to_path_buf();
    let keep = std::env::var_os("BERTH_UML_KEEP").is_some();
    let _guard = if keep {
        let _ = tmp.keep();
        None
    } else {
        Some(tmp)
    };
    let w =
        |p: &Path, c: &[u8]| std::fs::write(p, c).map_err(|e| format!("cannot write {p:?}: {e}"));
    std::fs::create_dir(dir.join("out")).map_err(|e| format!("cannot create out/: {e}"))?;
    build_layer(&dir.join("layer"), opts)?;
    let init = dir.join("init.sh");
    w(&init, init_script(&dir, opts, &modules).as_bytes())?;
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {init:?}: {e}"))?;

    let console_path = dir.join("console.log");
    let console = std::fs::File::create(&console_path)
        .map_err(|e| format!("cannot create {console_path:?}: {e}"))?;
    let console2 = console
        .try_clone()
        .map_err(|e| format!("cannot dup console.log: {e}"))?;
    let mut disk_arg = Vec::new();
    if let Some(size) = opts.disk {
        let path = dir.join("disk.img");
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(size))
            .map_err(|e| format!("cannot make {path:?}: {e}"))?;
        disk_arg.push(format!("ubda={}", path.display()));
    }
    let start = Instant::now();
    // `timeout` makes itself a process-group leader and signals the whole
    // group, so the UML helper processes go with the kernel.
    let status = Command::new("timeout")
        .arg("-k")
        .arg("5")
        .arg(format!("{}", opts.timeout.as_secs().max(1)))
        .arg(LINUX_UML)
        .args([
            "mem=1G",
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
            &format!("init={}", init.display()),
            "con0=null,fd:1",
            "con=null",
        ])
        .args(&disk_arg)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        // UML keeps its pid file under $HOME/.uml/UMID: the temp dir, so
        // nothing is left behind.
        .env("HOME", &dir)
        .env("TMPDIR", "/dev/shm")
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console2)
        .status()
        .map_err(|e| format!("cannot run {LINUX_UML} under timeout: {e}"))?;
    let wall = start.elapsed();
    let timed_out = status.code() == Some(124) || status.code() == Some(137);
    let results_text = std::fs::read_to_string(dir.join("out/results")).unwrap_or_default();
    let mut results = BTreeMap::new();
    for line in results_text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            results.insert(k.to_string(), v.to_string());
        }
    }
    Ok(GuestRun {
        results,
        console: String::from_utf8_lossy(&std::fs::read(&console_path).unwrap_or_default())
            .into_owned(),
        log: std::fs::read_to_string(dir.join("out/log")).unwrap_or_default(),
        wall,
        timed_out,
    })
}
