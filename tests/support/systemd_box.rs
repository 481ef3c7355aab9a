//! A real systemd as PID 1 in fresh namespaces ("a box"), for end-to-end tests.
//!
//! Owns: booting one box per test (cgroup, namespaces, overlay root, masks),
//! running commands inside it, and tearing all of it down again, even when the
//! test panics. Must not: touch the host's network namespace, firewall, mounts or
//! any cgroup it did not create, or kill any process it did not start.
//!
//! The recipe is the one measured in /work/shared/TESTING.md ("A real systemd as
//! PID 1 in fresh namespaces"). The privileged part is a short generated shell
//! script run by `unshare` as PID 1 of the new PID namespace; it ends by
//! exec'ing systemd, so the script is easy to read, to run by hand and to debug
//! (`BERTH_BOX_KEEP=1` leaves the box dir behind with `boot.sh` and
//! `console.log` in it).
//!
//! What the box cannot show: cgroup controllers are absent, so `MemoryMax=` is
//! accepted and shown but not enforced (use the UML guest for enforcement).
//! Its journald imports the host's whole kernel log, where every box's
//! generator writes: match kernel-log lines on something unique to the test,
//! or read only after a cursor (see tests/e2e_generator.rs).
//!
//! ```ignore
//! mod support;
//! use support::systemd_box::{BoxOptions, SystemdBox};
//!
//! #[test]
//! fn web_starts() {
//!     require_root!();
//!     let b = SystemdBox::boot(BoxOptions::default().with_berth()
//!         .file("/etc/berth/containers/web.toml", "rootfs = \"/srv/web\"\n"))
//!         .unwrap_or_else(|e| panic!("{e}"));
//!     b.copy_in(&host_rootfs, "/srv/web");
//!     b.sh_ok("systemctl start berth@web");
//!     assert!(b.journal("berth@web.service").contains("started"));
//! } // dropped: systemd killed, cgroup removed, temp dirs gone
//! ```

use std::io::{Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the box's own cgroup2 tree is carved out. The host is hybrid (v1
/// controllers plus an empty unified tree), and a child of the unified tree
/// mounted as the box's `/sys/fs/cgroup` is a pure cgroup2 system for systemd.
const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// Inside the box: the crate's source (read-only) and the directory holding the
/// berth binary cargo built (read-only). Bound at boot so that `install_berth`
/// works wherever the worktree or `CARGO_TARGET_DIR` live (a target dir under
/// /tmp would otherwise be hidden by the box's own tmpfs on /tmp).
pub const BOX_SRC: &str = "/run/host/berth-src";
pub const BOX_BIN_DIR: &str = "/run/host/berth-bin";

/// Units masked in every box on top of the host's enabled ones: gettys would
/// sit on the console (our log file); postgresql's generator instantiates
/// `postgresql@VERSION-main` behind the masked `postgresql.service`; the
/// journal is volatile, so flushing it is pointless, and journald would log
/// the request to the host's kernel log at every boot.
const ALWAYS_MASK: &[&str] = &[
    "console-getty.service",
    "container-getty@.service",
    "getty@.service",
    "postgresql@.service",
    "systemd-journal-flush.service",
    // nfs-common (a test package: tests/uml_volumes.rs) enables this target,
    // which wants rpc-gssd and so run-rpc_pipefs.mount: the host's kernel
    // has no rpc_pipefs, the mount fails and the box would be "degraded".
    "nfs-client.target",
    "run-rpc_pipefs.mount",
];

/// Host generators masked in the box. The SysV generator turns /etc/init.d
/// scripts into units (uml-utilities alone costs a second of boot); the other
/// two only feed units masked above.
const MASK_GENERATORS: &[&str] = &[
    "systemd-sysv-generator",
    "postgresql-generator",
    "systemd-getty-generator",
];

/// What berth's install (`make install`, packaging/install.sh, the .deb) puts
/// on a host, as shell globs. Removed from the box's overlay before boot, so
/// that a berth installed on the test machine itself can never make a test
/// pass.
const BERTH_PATHS: &[&str] = &[
    "/usr/bin/berth",
    "/usr/bin/berth-runtime",
    "/usr/lib/systemd/system-generators/berth-generator",
    "/usr/lib/systemd/system/berth*",
    "/etc/berth",
    "/usr/lib/berth",
    "/usr/share/man/man*/berth[.-]*",
    "/usr/share/bash-completion/completions/berth",
    "/usr/share/zsh/site-functions/_berth",
    "/usr/share/zsh/vendor-completions/_berth",
    "/usr/share/fish/vendor_completions.d/berth.fish",
    "/usr/share/doc/berth",
];

/// The cgroup, below the box's root, that commands run by `sh` start in.
const SHELL_CGROUP: &str = "berth-test-shell";

static BOX_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// How to boot a box. `BoxOptions::default()` is what most tests want.
#[derive(Debug, Clone)]
pub struct BoxOptions {
    /// The unit systemd boots into (`--unit=`).
    pub unit: String,
    /// How long `systemctl is-system-running --wait` may take.
    pub boot_timeout: Duration,
    /// Extra read-write bind mounts, (host path, path in the box), made before
    /// systemd starts. Host paths must exist; box paths are created.
    pub binds: Vec<(PathBuf, String)>,
    /// Extra units to mask (`NAME -> /dev/null` in /etc/systemd/system).
    pub extra_masks: Vec<String>,
    /// Install berth (packaging/install.sh, as [`SystemdBox::install_berth`])
    /// before systemd starts, so its generator runs at boot as on a real host.
    pub install_berth: bool,
    /// Files written into the box before systemd starts (after the install),
    /// as (absolute path in the box, contents); parents are created.
    pub files: Vec<(String, Vec<u8>)>,
    /// Shell commands run in the box's root after the files are written and
    /// before systemd starts, as a package installed on an image before its
    /// first boot (`apt-get install ./x.deb` with no systemd running).
    pub before_boot: Vec<String>,
}

impl BoxOptions {
    /// Add a file to write into the box before boot.
    pub fn file(mut self, path_in_box: &str, contents: impl AsRef<[u8]>) -> Self {
        self.files
            .push((path_in_box.to_string(), contents.as_ref().to_vec()));
        self
    }

    /// Add a command to run in the box before systemd starts.
    pub fn before_boot(mut self, script: &str) -> Self {
        self.before_boot.push(script.to_string());
        self
    }

    /// Install berth before boot.
    pub fn with_berth(mut self) -> Self {
        self.install_berth = true;
        self
    }

    /// Declare containers: each (NAME, definition) as
    /// /etc/berth/containers/NAME.toml.
    pub fn definitions(mut self, defs: &[(&str, String)]) -> Self {
        for (name, body) in defs {
            self = self.file(&format!("/etc/berth/containers/{name}.toml"), body);
        }
        self
    }
}

/// The preamble of berth's declared-container tests: a box booted from
/// `opts` with berth installed and `defs` declared (before boot, so the
/// generator sees them), and the host directory `tree` (an image layout or a
/// root filesystem the definitions name) copied to `tree_in_box`.
pub fn boot_berth(
    opts: BoxOptions,
    defs: &[(&str, String)],
    tree: &Path,
    tree_in_box: &str,
) -> SystemdBox {
    let b = SystemdBox::boot(opts.with_berth().definitions(defs))
        .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    b.copy_in(tree, tree_in_box);
    b
}

impl Default for BoxOptions {
    fn default() -> Self {
        BoxOptions {
            unit: "multi-user.target".into(),
            boot_timeout: Duration::from_secs(20),
            binds: Vec::new(),
            extra_masks: Vec::new(),
            install_berth: false,
            files: Vec::new(),
            before_boot: Vec::new(),
        }
    }
}

/// A booted systemd in its own PID, mount, UTS, IPC, cgroup and network
/// namespaces. Dropping it kills everything inside and removes every trace.
pub struct SystemdBox {
    /// Host PID of the box's PID 1 (systemd); 0 until known.
    pid: u32,
    /// The `unshare` process we spawned; PID 1 of the box is its only child.
    unshare: Option<Child>,
    /// Cleans up if this test process dies without dropping the box.
    watchdog: Option<Child>,
    /// Host temp dir: upper/, work/, merged/, varlib/, boot.sh, console.log.
    dir: PathBuf,
    /// Host path of the box's cgroup (a child of the unified tree).
    cgroup: PathBuf,
    /// `/proc/PID/root`: the box's root as seen from the host.
    root: PathBuf,
    boot_time: Duration,
    torn_down: bool,
}

impl SystemdBox {
    /// Boot a box and wait until `systemctl is-system-running` says `running` or
    /// `degraded`. Needs root. On failure, everything created is removed and the
    /// error carries the console output, `systemctl --failed` and the journal.
    pub fn boot(opts: BoxOptions) -> Result<SystemdBox, String> {
        let start = Instant::now();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("booting a systemd box needs root".into());
        }
        for unit in opts
            .extra_masks
            .iter()
            .map(String::as_str)
            .chain([opts.unit.as_str()])
        {
            if !is_unit_name(unit) {
                return Err(format!("{unit:?} is not a unit name"));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-box-")
            .tempdir()
            .map_err(|e| format!("cannot create the box dir: {e}"))?
            .keep();
        let cgroup = match make_box_cgroup() {
            Ok(cg) => cg,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // From here on, Drop of `sbox` undoes whatever exists.
        let mut sbox = SystemdBox {
            pid: 0,
            unshare: None,
            watchdog: None,
            dir,
            cgroup,
            root: PathBuf::new(),
            boot_time: Duration::ZERO,
            torn_down: false,
        };
        // Every boot error names the box dir (kept with BERTH_BOX_KEEP=1).
        let dir_shown = sbox.dir.display().to_string();
        let name = |e: String| format!("box {dir_shown}: {e}");
        sbox.watchdog = Some(spawn_watchdog(&sbox.cgroup, &sbox.dir).map_err(name)?);
        sbox.start(&opts).map_err(name)?;
        sbox.wait_running(start + opts.boot_timeout).map_err(name)?;
        sbox.boot_time = start.elapsed();
        Ok(sbox)
    }

    fn start(&mut self, opts: &BoxOptions) -> Result<(), String> {
        for sub in ["upper", "work", "merged", "varlib"] {
            std::fs::create_dir(self.dir.join(sub))
                .map_err(|e| format!("cannot create {:?}: {e}", self.dir.join(sub)))?;
        }
        // Seed files are staged on the host and copied in by the boot script
        // after pivot_root, so that symlinks on their way (/var/run -> /run)
        // resolve inside the box and never on the host.
        for (path, contents) in &opts.files {
            let rel = path.trim_start_matches('/');
            if !path.starts_with('/') || rel.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(format!("{path:?} is not a plain absolute path"));
            }
            let staged = self.dir.join("seed").join(rel);
            if let Some(parent) = staged.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {parent:?}: {e}"))?;
            }
            std::fs::write(&staged, contents)
                .map_err(|e| format!("cannot write {staged:?}: {e}"))?;
        }
        let script = boot_script(&self.dir, opts)?;
        let script_path = self.dir.join("boot.sh");
        std::fs::write(&script_path, script)
            .map_err(|e| format!("cannot write {script_path:?}: {e}"))?;
        let console = std::fs::File::create(self.dir.join("console.log"))
            .map_err(|e| format!("cannot create console.log: {e}"))?;
        let console2 = console
            .try_clone()
            .map_err(|e| format!("cannot dup console.log: {e}"))?;
        // The shell joins the box cgroup *before* unshare makes the cgroup
        // namespace, so the namespace's root is exactly the box cgroup.
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(
                "echo $$ > \"$1/cgroup.procs\" && exec unshare --fork --pid --mount --uts --ipc \
                 --cgroup --net --propagation private /bin/sh \"$2/boot.sh\"",
            )
            .arg("berth-box")
            .arg(&self.cgroup)
            .arg(&self.dir)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console2)
            .spawn()
            .map_err(|e| format!("cannot spawn unshare: {e}"))?;
        let upid = child.id();
        self.unshare = Some(child);

        // PID 1 of the box is unshare's only child; it is our boot script until
        // it execs systemd. Commands must not enter it before that: until
        // pivot_root its root is the host's.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self
                .unshare
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "the box's boot script exited with {status} before systemd started\n{}",
                    self.diagnostics(false)
                ));
            }
            if self.pid == 0 {
                let children =
                    std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                        .unwrap_or_default();
                self.pid = children
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
            }
            if self.pid != 0 {
                let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid)).unwrap_or_default();
                if exe.file_name().is_some_and(|n| n == "systemd") {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "systemd did not start in the box within 10 s\n{}",
                    self.diagnostics(false)
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.root = PathBuf::from(format!("/proc/{}/root", self.pid));
        Ok(())
    }

    fn wait_running(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            // `--wait` blocks until startup finished; it says "offline" at once
            // while systemd's private socket does not exist yet, hence the loop.
            let left = deadline.saturating_duration_since(Instant::now());
            let out = self.sh_timeout("systemctl is-system-running --wait", None, left);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match state.as_str() {
                "running" | "degraded" => return Ok(()),
                "maintenance" | "stopping" => {
                    return Err(format!(
                        "the box's systemd is {state:?}, expected running or degraded\n{}",
                        self.diagnostics(true)
                    ))
                }
                _ => {}
            }
            if let Some(status) = self
                .unshare
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "the box's PID 1 exited with {status} during boot\n{}",
                    self.diagnostics(false)
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the box did not finish booting in time (last state {state:?}, stderr {:?})\n{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.diagnostics(true)
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Console output, failed units and the journal tail, for error messages.
    fn diagnostics(&self, systemd_up: bool) -> String {
        let console = std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        let mut s = format!("--- console.log ---\n{console}");
        if systemd_up {
            let failed = self.sh_timeout(
                "systemctl --no-pager --failed; journalctl --no-pager -b -n 80",
                None,
                Duration::from_secs(5),
            );
            s.push_str("--- systemctl --failed; journalctl -n 80 ---\n");
            s.push_str(&String::from_utf8_lossy(&failed.stdout));
            s.push_str(&String::from_utf8_lossy(&failed.stderr));
        }
        s
    }

    /// Host PID of the box's PID 1 (systemd).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The box's root as seen from the host (`/proc/PID/root`), for copying
    /// fixtures in and reading results out. Absolute symlinks met on the way
    /// resolve against the *host's* root; prefer [`SystemdBox::write_file`] and
    /// [`SystemdBox::copy_in`] for writing.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The box's directory on the host (overlay upper/work dirs, the dir bound
    /// over `/var/lib/berth`, `boot.sh`, `console.log`).
    pub fn host_dir(&self) -> &Path {
        &self.dir
    }

    /// The host directory bound over `/var/lib/berth` inside the box.
    pub fn var_lib_berth(&self) -> PathBuf {
        self.dir.join("varlib")
    }

    /// Host path of the box's cgroup.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// How long `boot` took, from the first mkdir to `is-system-running`.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// Host PIDs of every process in the box's cgroup tree.
    pub fn host_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        collect_pids(&self.cgroup, &mut pids);
        pids
    }

    /// Run `sh -c SCRIPT` inside every namespace of the box, as root in `/`,
    /// with a clean environment. Never panics; a timeout of 120 s kills it.
    pub fn sh(&self, script: &str) -> Output {
        self.sh_timeout(script, None, Duration::from_secs(120))
    }

    /// Like [`SystemdBox::sh`], feeding `input` on stdin.
    pub fn sh_input(&self, script: &str, input: &[u8]) -> Output {
        self.sh_timeout(script, Some(input), Duration::from_secs(120))
    }

    /// Run a script that must succeed; returns its stdout. On failure, panics
    /// with its stdout, stderr and the tail of the box's journal.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        if !out.status.success() {
            let journal = self.sh_timeout(
                "journalctl --no-pager -b -n 60",
                None,
                Duration::from_secs(10),
            );
            panic!(
                "in the box, `{script}` failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- journal tail ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&journal.stdout),
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sh_timeout(&self, script: &str, input: Option<&[u8]>, timeout: Duration) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid.to_string())
            .arg("-a")
            .arg("--")
            .arg("/bin/sh")
            .arg("-c")
            .arg(script);
        // Commands start in a cgroup of the box's own tree, as a shell on a
        // real host does, not outside its cgroup namespace root (where
        // /proc/self/cgroup would read "0::/.." and confuse code under test).
        let shell_cg = self.cgroup.join(SHELL_CGROUP);
        match std::fs::create_dir(&shell_cg) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Output {
                    status: failed_status(),
                    stdout: Vec::new(),
                    stderr: format!("cannot create cgroup {shell_cg:?}: {e}").into_bytes(),
                }
            }
        }
        let procs =
            std::ffi::CString::new(shell_cg.join("cgroup.procs").into_os_string().into_vec())
                .expect("cgroup path without NUL");
        // SAFETY: between fork and exec only async-signal-safe calls (open,
        // write, close) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process itself.
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
                Ok(())
            });
        }
        run_with_timeout(cmd, input, timeout)
    }

    /// Write a file inside the box (parents created), through the box's own
    /// view of its filesystem, so symlinks resolve as they would in the box.
    pub fn write_file(&self, path_in_box: &str, contents: &[u8]) {
        let out = self.sh_timeout(
            &format!(
                "mkdir -p \"$(dirname {p})\" && cat > {p}",
                p = shell_quote(path_in_box)
            ),
            Some(contents),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "cannot write {path_in_box:?} in the box: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Read a file inside the box.
    pub fn read_file(&self, path_in_box: &str) -> Vec<u8> {
        let out = self.sh_timeout(
            &format!("cat {}", shell_quote(path_in_box)),
            None,
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "cannot read {path_in_box:?} in the box: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Lets a user namespace in the box mount a new proc, as on a host:
    /// systemd under `container=` mounts /proc/sys read-only over the box's
    /// /proc, and the kernel then refuses a new proc in a user namespace
    /// ("VFS: Mount too revealing", proc(5) / mount_too_revealing()). The
    /// box's own mount namespace: nothing outside changes.
    pub fn allow_userns_proc(&self) {
        self.sh_ok("umount -l /proc/sys/net; umount -l /proc/sys");
    }

    /// Copy a host directory tree into the box at `dest_in_box` (created),
    /// preserving modes, owners and symlinks (a tar stream, so nothing is
    /// resolved on the host side).
    pub fn copy_in(&self, host_dir: &Path, dest_in_box: &str) {
        let tar = Command::new("tar")
            .arg("-C")
            .arg(host_dir)
            .arg("-cf")
            .arg("-")
            .arg(".")
            .output()
            .expect("run tar on the host");
        assert!(
            tar.status.success(),
            "tar of {host_dir:?} failed: {}",
            String::from_utf8_lossy(&tar.stderr)
        );
        let out = self.sh_timeout(
            &format!(
                "mkdir -p {d} && tar -C {d} -xpf -",
                d = shell_quote(dest_in_box)
            ),
            Some(&tar.stdout),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "unpacking into {dest_in_box:?} in the box failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `journalctl --no-pager -b -u UNIT` inside the box.
    pub fn journal(&self, unit: &str) -> String {
        let out = self.sh(&format!(
            "journalctl --no-pager -b -u {}",
            shell_quote(unit)
        ));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The journal's current position, for [`SystemdBox::journal_after`].
    pub fn journal_cursor(&self) -> String {
        let out = self.sh_ok("journalctl --no-pager -b -n 0 --show-cursor");
        out.lines()
            .find_map(|l| l.strip_prefix("-- cursor: "))
            .unwrap_or_else(|| panic!("no cursor in {out:?}"))
            .trim()
            .to_string()
    }

    /// Every journal entry (kernel log included) after `cursor`, once journald
    /// has stored everything sent so far (`journalctl --sync`).
    pub fn journal_after(&self, cursor: &str) -> String {
        self.sh_ok(&format!(
            "journalctl --sync && journalctl --no-pager -b -o short --after-cursor={}",
            shell_quote(cursor)
        ))
    }

    /// `systemctl show -p PROPS UNIT` as a map (PROPS comma-separated).
    pub fn show(&self, unit: &str, props: &str) -> std::collections::HashMap<String, String> {
        self.sh_ok(&format!(
            "systemctl show -p {} {}",
            shell_quote(props),
            shell_quote(unit)
        ))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Run `script` until its trimmed stdout satisfies `ok`, and return that
    /// text; panics after `limit` with the last text and the journal's tail.
    /// For states a test reads rather than tests with an exit status (a
    /// unit's ActiveState, a line reaching the journal).
    pub fn wait_for(&self, script: &str, ok: impl Fn(&str) -> bool, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let out = self.sh(script);
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if ok(&text) {
                return text;
            }
            if start.elapsed() > limit {
                panic!(
                    "`{script}` still says {text:?} after {limit:?}\n--- journal ---\n{}",
                    self.sh_ok("journalctl --no-pager -b -n 80")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run `script` until it succeeds, and return its stdout; panics after
    /// `timeout` with its last output. For states that settle asynchronously
    /// (a unit becoming active, a kernel-log line reaching the journal).
    pub fn wait_until(&self, script: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.sh(script);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if Instant::now() >= deadline {
                panic!(
                    "in the box, `{script}` did not succeed within {timeout:?}; last: {}\n{}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A real docker-registry on the box's loopback, `127.0.0.1:5000`, plain
    /// http, started as the transient unit `test-registry`; returns once it
    /// answers. Its config is `/srv/registry.yml`, its data
    /// `/var/lib/test-registry`.
    pub fn serve_registry(&self) {
        self.write_file(
            "/srv/registry.yml",
            b"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    \
              rootdirectory: /var/lib/test-registry\nhttp:\n  addr: 127.0.0.1:5000\n",
        );
        self.sh_ok(
            "systemd-run --quiet --unit=test-registry /usr/bin/docker-registry serve /srv/registry.yml",
        );
        self.wait_until(
            "curl -fsS http://127.0.0.1:5000/v2/ >/dev/null",
            Duration::from_secs(20),
        );
    }

    /// Install berth into the box the way a packager would: run
    /// `packaging/install.sh` inside the box (DESTDIR = the box's `/`) with the
    /// binary cargo built for this test run. Then `systemctl daemon-reload`, so
    /// systemd sees the units and runs the generator.
    pub fn install_berth(&self) {
        self.sh_ok(&format!(
            "sh {BOX_SRC}/packaging/install.sh --bin {BOX_BIN_DIR}/berth && systemctl daemon-reload"
        ));
    }

    /// Kill the box and remove every trace of it; reports what could not be
    /// undone. Dropping the box does the same and prints the errors.
    pub fn close(mut self) -> Result<(), String> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), String> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut errors = Vec::new();
        if let Some(mut child) = self.unshare.take() {
            // Only while `unshare` is not reaped is its child's PID surely ours.
            if matches!(child.try_wait(), Ok(None)) {
                if self.pid != 0 {
                    // SIGKILL to a PID namespace's init kills every process in
                    // it, including those `sh` entered with nsenter.
                    // SAFETY: kill(2) on a PID we started; no memory involved.
                    unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
                } else {
                    // Boot failed before PID 1 was known: the box cgroup holds
                    // only unshare and the boot script.
                    let _ = std::fs::write(self.cgroup.join("cgroup.kill"), "1");
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Ok(None) => {
                        let _ = std::fs::write(self.cgroup.join("cgroup.kill"), "1");
                        errors.push("unshare outlived the box's PID 1 by 10 s".to_string());
                        let _ = child.wait();
                        break;
                    }
                    Err(e) => {
                        errors.push(format!("waiting for unshare: {e}"));
                        break;
                    }
                }
            }
        }
        // The box's mounts live only in its mount namespace, which died with its
        // last process; nothing to unmount on the host side.
        let deadline = Instant::now() + Duration::from_secs(10);
        if self.cgroup.exists() {
            while cgroup_populated(&self.cgroup) {
                if Instant::now() > deadline {
                    errors.push(format!(
                        "cgroup {:?} still populated after 10 s",
                        self.cgroup
                    ));
                    break;
                }
                if Instant::now() + Duration::from_secs(8) > deadline {
                    // A backstop for anything that escaped the PID namespace
                    // kill; it can only reach processes in the box's cgroup.
                    let _ = std::fs::write(self.cgroup.join("cgroup.kill"), "1");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Err(e) = remove_cgroup_tree(&self.cgroup) {
                errors.push(e);
            }
        }
        if std::env::var_os("BERTH_BOX_KEEP").is_some() {
            eprintln!("BERTH_BOX_KEEP: leaving {:?}", self.dir);
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if self.dir.exists() {
                errors.push(format!("cannot remove {:?}: {e}", self.dir));
            }
        }
        if let Some(mut w) = self.watchdog.take() {
            // Its work is done; it is our child, still blocked in `read`.
            let _ = w.kill();
            let _ = w.wait();
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Drop for SystemdBox {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            // A box that cannot be torn down leaves something of the test
            // behind: that fails the test (unless it already failed).
            if std::thread::panicking() {
                eprintln!("systemd box teardown: {e}");
            } else {
                panic!("systemd box teardown: {e}");
            }
        }
    }
}

/// Create `/sys/fs/cgroup/unified/berth-box-<testpid>-<n>`, unique among the
/// boxes of this process and not colliding with leftovers of earlier runs.
fn make_box_cgroup() -> Result<PathBuf, String> {
    if !Path::new(UNIFIED).join("cgroup.procs").exists() {
        return Err(format!(
            "no cgroup2 tree at {UNIFIED}: the box expects the hybrid cgroup layout of \
             the test machines (TESTING.md); on a pure cgroup2 host run the tests in a \
             delegated scope and point UNIFIED at it"
        ));
    }
    for _ in 0..1000 {
        let n = BOX_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(UNIFIED).join(format!("berth-box-{}-{n}", std::process::id()));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create cgroup {path:?}: {e}")),
        }
    }
    Err("no free box cgroup name".into())
}

/// A process that outlives this test process and cleans up after it. Drop
/// cannot run when the test binary exits with boxes still alive in other
/// threads, aborts, or is killed (a timeout, ^C); without this a whole systemd
/// would keep running. It blocks reading a pipe whose only writer is this
/// process (close-on-exec), so EOF means we are gone; then it kills the box
/// through its cgroup (which holds nothing but the box) and removes it.
pub fn spawn_watchdog(cgroup: &Path, dir: &Path) -> Result<Child, String> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(
            "read _ignored; echo 1 > \"$1/cgroup.kill\"; \
             i=0; while grep -q 'populated 1' \"$1/cgroup.events\" && [ $i -lt 500 ]; do \
             sleep 0.02; i=$((i+1)); done; \
             find \"$1\" -depth -type d -exec rmdir {} +; rm -rf \"$2\"",
        )
        .arg("berth-box-watchdog")
        .arg(cgroup)
        .arg(dir)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Not in our process group: a ^C to the test run must not kill it
        // before it has cleaned up.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot spawn the box watchdog: {e}"))
}

fn cgroup_populated(cg: &Path) -> bool {
    std::fs::read_to_string(cg.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

fn collect_pids(cg: &Path, out: &mut Vec<u32>) {
    if let Ok(s) = std::fs::read_to_string(cg.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.parse::<u32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(cg) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out);
            }
        }
    }
}

/// rmdir the cgroup and every child, deepest first (cgroupfs has no recursive
/// removal). A freshly emptied cgroup can report EBUSY for a moment; retry.
fn remove_cgroup_tree(cg: &Path) -> Result<(), String> {
    if let Ok(rd) = std::fs::read_dir(cg) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path())?;
            }
        }
    }
    let mut last = None;
    for _ in 0..200 {
        match std::fs::remove_dir(cg) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!("cannot remove cgroup {cg:?}: {last:?}"))
}

/// Units to mask: everything the host enables (the links in
/// /etc/systemd/system/*.wants and *.requires) except targets, plus
/// [`ALWAYS_MASK`]. Those are the machine's own services and timers
/// (postgresql, docker-registry, e2scrub, apt and man-db timers, timesyncd,
/// pstore): none is needed for systemd itself, and in the box they would only
/// cost boot time, fail, or run jobs. Targets are kept: they are empty
/// synchronisation points. Computed once per test process.
fn units_to_mask() -> &'static [String] {
    static MASKS: OnceLock<Vec<String>> = OnceLock::new();
    MASKS.get_or_init(|| {
        let mut units: Vec<String> = ALWAYS_MASK.iter().map(|s| s.to_string()).collect();
        units.extend(host_wanted_units());
        units.sort();
        units.dedup();
        units
    })
}

/// Units this machine starts on its own: the targets of its
/// `/etc/systemd/system/*.wants` and `*.requires` links, targets left out.
/// Read from the links, not `systemctl`, which is slow without systemd as
/// PID 1. The UML guest, booted from the same root, masks them too.
pub fn host_wanted_units() -> Vec<String> {
    let mut units = Vec::new();
    for dir in std::fs::read_dir("/etc/systemd/system")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = dir.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".wants") || name.ends_with(".requires")) {
            continue;
        }
        for link in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let unit = link.file_name().to_string_lossy().into_owned();
            if is_unit_name(&unit) && !unit.ends_with(".target") {
                units.push(unit);
            }
        }
    }
    units
}

fn is_unit_name(s: &str) -> bool {
    !s.is_empty()
        && s.contains('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._-:\\".contains(c))
}

/// Single-quote for sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The boot script run by `unshare` as PID 1 of the new PID namespace. Its
/// argument-free form keeps it runnable by hand from the box dir.
fn boot_script(dir: &Path, opts: &BoxOptions) -> Result<String, String> {
    let q = |p: &Path| shell_quote(&p.to_string_lossy());
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
    let bin_dir = bin
        .parent()
        .ok_or_else(|| format!("{bin:?} has no parent"))?
        .to_path_buf();
    let mut masks: Vec<String> = units_to_mask().to_vec();
    masks.extend(opts.extra_masks.iter().cloned());

    let mut s = String::new();
    s.push_str("#!/bin/sh\n# generated by tests/support/systemd_box.rs\nset -eu\n");
    s.push_str(&format!("D={}\nM=\"$D/merged\"\n", q(dir)));
    s.push_str(
        r#"
# The host's root, copy-on-write: the box can install, mask and delete freely.
mount -t overlay overlay -o "lowerdir=/,upperdir=$D/upper,workdir=$D/work" "$M"
mount -t proc proc "$M/proc"
# As systemd-nspawn does: kernel-wide sysctls and sysrq are read-only (so the
# box's systemd-sysctl and systemd-binfmt skip themselves instead of changing
# the host's kernel), /proc/sys/net stays writable (it is the box's own netns).
mount --bind "$M/proc/sys" "$M/proc/sys"
mount -o remount,bind,ro "$M/proc/sys"
mount --bind "$M/proc/sys/net" "$M/proc/sys/net"
mount -o remount,bind,rw "$M/proc/sys/net"
if [ -e "$M/proc/sysrq-trigger" ]; then
    mount --bind "$M/proc/sysrq-trigger" "$M/proc/sysrq-trigger"
    mount -o remount,bind,ro "$M/proc/sysrq-trigger"
fi
# A fresh sysfs, mounted from inside the new netns so /sys/class/net shows the
# box's interfaces; read-only, so nothing in the box writes to host devices.
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"
# The box's own cgroup2 tree: the cgroup namespace root is the box cgroup the
# parent shell joined.
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$M/sys/fs/cgroup"
# A minimal /dev, as in containers: no host disks. /dev/kmsg is the host's:
# generators log there and the box's journald imports it, as on a real host
# (so every box also sees the others' kernel-log lines).
mount -t tmpfs -o mode=0755,nosuid,size=4m tmpfs "$M/dev"
for n in null zero full random urandom tty kmsg net/tun fuse; do
    [ -e "/dev/$n" ] || continue
    mkdir -p "$(dirname "$M/dev/$n")"
    touch "$M/dev/$n"
    mount --bind "/dev/$n" "$M/dev/$n"
done
touch "$M/dev/console"
mount --bind /dev/null "$M/dev/console"
mkdir "$M/dev/pts" "$M/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$M/dev/pts"
ln -s pts/ptmx "$M/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$M/dev/shm"
ln -s /proc/self/fd "$M/dev/fd"
ln -s /proc/self/fd/0 "$M/dev/stdin"
ln -s /proc/self/fd/1 "$M/dev/stdout"
ln -s /proc/self/fd/2 "$M/dev/stderr"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$M/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$M/tmp"
# Overlay upper dirs cannot live on the box's overlay root; berth's store gets
# a real host directory, as /var/lib/berth is ext4 on a real host.
mkdir -p "$M/var/lib/berth"
mount --bind "$D/varlib" "$M/var/lib/berth"
"#,
    );
    s.push_str(&format!(
        "mkdir -p \"$M{BOX_SRC}\" \"$M{BOX_BIN_DIR}\"\n\
         mount --bind -o ro {} \"$M{BOX_SRC}\"\n\
         mount --bind -o ro {} \"$M{BOX_BIN_DIR}\"\n",
        q(&src),
        q(&bin_dir)
    ));
    for (host, in_box) in &opts.binds {
        s.push_str(&format!(
            "mkdir -p \"$M\"{t}\nmount --bind {h} \"$M\"{t}\n",
            t = shell_quote(in_box),
            h = q(host)
        ));
    }
    s.push_str("\n# A clean slate for berth, whatever the host has installed.\n");
    for p in BERTH_PATHS {
        // Unquoted: the globs expand (no BERTH_PATHS entry has a space).
        s.push_str(&format!("rm -rf \"$M\"{p}\n"));
    }
    s.push_str("\nmkdir -p \"$M/etc/systemd/system\" \"$M/etc/systemd/system-generators\" \"$M/etc/systemd/journald.conf.d\"\n");
    s.push_str("for u in");
    for u in &masks {
        s.push(' ');
        s.push_str(&shell_quote(u));
    }
    s.push_str("; do ln -sfn /dev/null \"$M/etc/systemd/system/$u\"; done\n");
    s.push_str("for g in");
    for g in MASK_GENERATORS {
        s.push(' ');
        s.push_str(g);
    }
    s.push_str("; do ln -sfn /dev/null \"$M/etc/systemd/system-generators/$g\"; done\n");
    s.push_str(
        r#"# A volatile journal: nothing to flush to disk, nothing read from the host's.
printf '[Journal]\nStorage=volatile\n' > "$M/etc/systemd/journald.conf.d/90-berth-box.conf"

mkdir -p "$M/.oldroot"
cd "$M"
pivot_root . .oldroot
"#,
    );
    if opts.install_berth {
        s.push_str(&format!(
            "sh {BOX_SRC}/packaging/install.sh --bin {BOX_BIN_DIR}/berth\n"
        ));
    }
    // File by file rather than `cp -R`: a directory on the way may be a
    // symlink in the box (/var/run), which mkdir -p and cp follow.
    for (path, _) in &opts.files {
        let p = shell_quote(path);
        s.push_str(&format!(
            "mkdir -p \"$(dirname {p})\" && cp \"/.oldroot$D/seed\"{p} {p}\n"
        ));
    }
    for script in &opts.before_boot {
        s.push_str(script);
        s.push('\n');
    }
    s.push_str("umount -l /.oldroot\nrmdir /.oldroot\n");
    // A real host's / is shared (systemd makes it so at boot, but not when
    // it detects a container: mount-setup.c), and a unit's credentials
    // directory, filled in a mount namespace of its own, reaches the unit
    // only through that propagation. Inside the box's own mount namespace.
    s.push_str("mount --make-rshared /\n");
    s.push_str(&format!(
        "exec env -i container=berth-test /lib/systemd/systemd --system --unit={}\n",
        shell_quote(&opts.unit)
    ));
    Ok(s)
}

/// Run `cmd` with a clean environment, optional stdin, and a deadline after
/// which it is killed (its Output then says so in stderr).
fn run_with_timeout(mut cmd: Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout also kills what nsenter forked
        // inside the box (which holds the output pipes open).
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Output {
                status: failed_status(),
                stdout: Vec::new(),
                stderr: format!("cannot spawn {cmd:?}: {e}").into_bytes(),
            }
        }
    };
    // Readers and the writer on threads, so a full pipe can never deadlock.
    let writer = input.map(|data| {
        let data = data.to_vec();
        let mut stdin = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let mut poll = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                // SAFETY: kill(2) of the process group we just created.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                break child.wait().unwrap_or_else(|_| failed_status());
            }
            Ok(None) => {
                std::thread::sleep(poll);
                poll = (poll * 2).min(Duration::from_millis(10));
            }
            Err(_) => break failed_status(),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_t.join().unwrap_or_default();
    let mut stderr = err_t.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(format!("\n(killed after {timeout:?})\n").as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

fn failed_status() -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw(127 << 8)
}
