//! containerd 1.6 drives berth-runtime through its runc v2 shim, as a
//! containerd user would with `ctr ... --runc-binary /usr/bin/berth-runtime`:
//! `ctr run --rm` (output, exit code, stdin, `-t`, a missing program, the
//! host's PID namespace, a shared root), a detached task with `task ls`,
//! `task exec` (confinement as the container's own), `exec -t`, `task ps`,
//! `pause`/`resume`, `kill`, `task delete`, `container rm`, a task whose
//! shim was killed, and nothing of the containers left behind. Every step is
//! also run against runc through the same shim, so the expectations are what
//! a real runtime delivers.
//!
//! Runs inside a systemd box (tests/support/systemd_box.rs) with containerd
//! started by hand (tests/support/containerd.rs). Root only; skips when
//! containerd is missing (CI installs it).

#[path = "support/containerd.rs"]
mod containerd;
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::{Duration, Instant};

use containerd::{Containerd, BERTH_ROOT, BERTH_RUNTIME, IMAGE, NS, RUNC, RUNC_ROOT};
use support::systemd_box::shell_quote;
use support::{confinement_probe as probe, probe_field as field, NAMESPACES};

/// One runtime under the shim: its binary, its state root, an ID prefix.
struct Runtime {
    bin: &'static str,
    root: &'static str,
    prefix: &'static str,
}

impl Runtime {
    fn args(&self) -> String {
        Containerd::runtime_args(self.bin, self.root)
    }
}

/// What a containerd user sees of one runtime. Equal for berth and runc.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// `ctr run --rm … sh -c 'echo …; exit 3'`: stdout and ctr's exit code.
    run_stdout: String,
    run_code: Option<i32>,
    /// `echo hello | ctr run --rm … sh -c 'read x; echo got $x'`: stdin
    /// reaches the container through the shim's FIFOs.
    stdin_read: String,
    /// `ctr run --rm -t … tty` names a pty (None: `script` missing).
    run_tty: Option<bool>,
    /// `ctr run --rm … nope`: exit code, and whether the error names it.
    missing_code: Option<i32>,
    missing_named: bool,
    /// `ctr run --rm` in the box's PID namespace of a shell that leaves a
    /// child behind: exit code, and whether the shim's "kill the init's
    /// children" (`kill --all` after the init exited) failed.
    shared_pid_code: Option<i32>,
    shared_pid_kill_failed: bool,
    /// `ctr run --rm --rootfs-propagation rshared … true` (pivot_root with
    /// containerd's rootfs mount as the new root's parent).
    shared_root_code: Option<i32>,
    /// `ctr task ls` right after `ctr run -d`, and whether its PID is the
    /// container's shell in the container's cgroup.
    listed: String,
    listed_pid_is_init: bool,
    /// `ctr task exec` of a probe: namespaces that differ from the init's,
    /// and what it reports about itself.
    exec_other_namespaces: Vec<String>,
    exec_same_cgroup: bool,
    exec_same_caps: bool,
    exec_pid1: String,
    exec_nnp: String,
    exec_seccomp: String,
    exec_cwd: String,
    exec_fds: String,
    exec_home: String,
    /// `ctr task exec … sh -c 'exit 9'`.
    exec_code: Option<i32>,
    /// `ctr task exec -t … tty` names a pty (None: `script` missing).
    exec_tty: Option<bool>,
    /// `ctr task ps` lists the init and a detached exec by its exec ID.
    ps_lists_init_and_exec: bool,
    /// `ctr task pause` → status, cgroup.freeze; `resume` → status.
    paused: String,
    frozen: String,
    resumed: String,
    /// `ctr task kill` (SIGTERM, trapped: exit 7) → status; the exit code
    /// `ctr task delete` reports.
    killed: String,
    /// `ctr task kill` again, once stopped: "process already finished"
    /// (containerd's NotFound), not an unknown error.
    kill_again_not_found: bool,
    exit_code_reported: bool,
    /// A task whose shim was SIGKILLed is cleaned up by containerd (the
    /// shim's `delete` runs `delete --force` of the running container):
    /// gone from `task ls` (what is left of it shows in `leftovers`).
    crashed_shim_task_gone: bool,
    /// What [`traces`] finds of the running task (so the check below sees
    /// what it looks for): state dir, cgroup, rootfs mount, container.
    traces_while_running: usize,
    /// After `task delete` and `container rm`: whatever is left.
    leftovers: Vec<String>,
}

/// The status of task `id` in `ctr task ls` ("" when not listed), and its PID.
fn task_status(c: &Containerd, id: &str) -> (String, String) {
    let out = c.ctr_ok("task ls");
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&id))
        .map(|f| (f[2].to_string(), f[1].to_string()))
        .unwrap_or_default()
}

fn wait_status(c: &Containerd, id: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = task_status(c, id);
        if status == want || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ctr ARGS` with a pty as its terminal (util-linux `script`), as `-t`
/// needs; its output.
fn in_pty(c: &Containerd, args: &str) -> String {
    let out = c.sbox.sh(&format!(
        "script -qec {} /dev/null </dev/null",
        shell_quote(&format!(
            "ctr --address {} -n {NS} {args}",
            containerd::SOCK
        ))
    ));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The runtime's state dirs, cgroups, rootfs mounts and containerd
/// containers of `rt`'s containers, one line each.
fn traces(c: &Containerd, rt: &Runtime) -> Vec<String> {
    let p = rt.prefix;
    c.sbox
        .sh_ok(&format!(
            "ls -d {root}/{NS}/{p}-* /sys/fs/cgroup/{NS}/{p}-* 2>/dev/null; \
             grep '/{NS}/{p}-' /proc/self/mountinfo; \
             ctr --address {sock} -n {NS} containers ls -q | grep '^{p}-'; true",
            root = rt.root,
            sock = containerd::SOCK
        ))
        .lines()
        .map(str::to_string)
        .collect()
}

fn observe(c: &Containerd, rt: &Runtime, script: bool) -> Seen {
    let args = rt.args();
    let p = rt.prefix;

    let out = c.ctr(&format!(
        "run --rm {args} {IMAGE} {p}-rm sh -c 'echo hello from the container; exit 3'"
    ));
    let run_stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let run_code = out.status.code();
    let out = c.sbox.sh_input(
        &format!(
            "exec ctr --address {} -n {NS} run --rm {args} {IMAGE} {p}-stdin sh -c 'read x; echo got $x'",
            containerd::SOCK
        ),
        b"hello\n",
    );
    let stdin_read = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let run_tty = script.then(|| {
        in_pty(c, &format!("run --rm -t {args} {IMAGE} {p}-tty tty")).contains("/dev/pts/")
    });
    let out = c.ctr(&format!("run --rm {args} {IMAGE} {p}-missing nope"));
    let missing_code = out.status.code();
    let missing_named = String::from_utf8_lossy(&out.stderr).contains("nope");

    let out = c.ctr(&format!(
        "run --rm --with-ns pid:/proc/1/ns/pid {args} {IMAGE} {p}-shared sh -c 'sleep 60 & exit 4'"
    ));
    let shared_pid_code = out.status.code();
    let shared_pid_kill_failed = c.sbox.journal("berth-containerd.service").lines().any(|l| {
        l.contains("failed to kill init's children") && l.contains(&format!("id={p}-shared"))
    });

    let shared_root_code = c
        .ctr(&format!(
            "run --rm --rootfs-propagation rshared {args} {IMAGE} {p}-rshared true"
        ))
        .status
        .code();

    // The detached task: PID 1 is a shell that turns SIGTERM into exit 7.
    let id = format!("{p}-task");
    c.ctr_ok(&format!(
        "run -d --seccomp {args} {IMAGE} {id} sh -c 'trap \"exit 7\" TERM; while :; do sleep 0.05; done'"
    ));
    let (listed, pid) = task_status(c, &id);
    let init = c.sbox.sh_ok(&format!(
        "{} echo comm=$(cat /proc/{pid}/comm)",
        probe(&pid)
    ));
    let container_cgroup = format!("0::/{NS}/{id}");
    let listed_pid_is_init =
        field(&init, "comm") == "sh" && field(&init, "cgroup") == container_cgroup;

    let exec = c.ctr_ok(&format!(
        "task exec --exec-id probe --cwd /etc {id} sh -c {}",
        shell_quote(&format!(
            "{} echo pid1=$(cat /proc/1/comm); echo cwd=$(pwd); echo home=$HOME; \
             echo fds=$(ls /proc/self/fd | tr '\\n' ' ')",
            probe("self")
        ))
    ));
    let exec_other_namespaces = NAMESPACES
        .iter()
        .filter(|ns| {
            let key = format!("ns_{ns}");
            field(&exec, &key).is_empty() || field(&exec, &key) != field(&init, &key)
        })
        .map(|ns| ns.to_string())
        .collect();
    let exec_code = c
        .ctr(&format!("task exec --exec-id nine {id} sh -c 'exit 9'"))
        .status
        .code();
    let exec_tty = script
        .then(|| in_pty(c, &format!("task exec -t --exec-id tty {id} tty")).contains("/dev/pts/"));

    c.ctr_ok(&format!("task exec -d --exec-id sleeper {id} sleep 60"));
    let ps = c.ctr_ok(&format!("task ps {id}"));
    let ps_lists_init_and_exec = ps
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&pid))
        && ps.contains("ExecID:sleeper");

    c.ctr_ok(&format!("task pause {id}"));
    let paused = task_status(c, &id).0;
    let frozen = c
        .sbox
        .sh_ok(&format!("cat /sys/fs/cgroup/{NS}/{id}/cgroup.freeze"))
        .trim()
        .to_string();
    c.ctr_ok(&format!("task resume {id}"));
    let resumed = task_status(c, &id).0;

    let traces_while_running = traces(c, rt).len();
    c.ctr_ok(&format!("task kill {id}"));
    let killed = wait_status(c, &id, "STOPPED");
    let out = c.ctr(&format!("task kill {id}"));
    let kill_again_not_found =
        String::from_utf8_lossy(&out.stderr).contains("process already finished: not found");
    let out = c.ctr(&format!("task delete {id}"));
    let exit_code_reported =
        out.status.success() && String::from_utf8_lossy(&out.stderr).contains("exit code 7");
    c.ctr_ok(&format!("container rm {id}"));

    let crash = format!("{p}-crash");
    c.ctr_ok(&format!(
        "run -d {args} {IMAGE} {crash} sh -c 'sleep 60 & sleep 60'"
    ));
    c.sbox.sh_ok(&format!(
        "kill -9 $(pgrep -f '^/usr/bin/containerd-shim-runc-v2 .*-id {crash} ')"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !task_status(c, &crash).0.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let crashed_shim_task_gone = task_status(c, &crash).0.is_empty();
    c.ctr_ok(&format!("container rm {crash}"));
    // containerd forgets the task before its cleanup (`shim delete`) ends.
    while traces(c, rt).iter().any(|t| t.contains(&crash)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    let leftovers = traces(c, rt);

    Seen {
        run_stdout,
        run_code,
        stdin_read,
        run_tty,
        missing_code,
        missing_named,
        shared_pid_code,
        shared_pid_kill_failed,
        shared_root_code,
        listed,
        listed_pid_is_init,
        exec_other_namespaces,
        exec_same_cgroup: field(&exec, "cgroup") == container_cgroup,
        exec_same_caps: !field(&exec, "caps").is_empty()
            && field(&exec, "caps") == field(&init, "caps"),
        exec_pid1: field(&exec, "pid1"),
        exec_nnp: field(&exec, "nnp"),
        exec_seccomp: field(&exec, "seccomp"),
        exec_cwd: field(&exec, "cwd"),
        exec_fds: field(&exec, "fds"),
        exec_home: field(&exec, "home"),
        exec_code,
        exec_tty,
        ps_lists_init_and_exec,
        paused,
        frozen,
        resumed,
        killed,
        kill_again_not_found,
        exit_code_reported,
        crashed_shim_task_gone,
        traces_while_running,
        leftovers,
    }
}

#[test]
fn containerd_runs_tasks_on_berth_runtime() {
    require_root!();
    require_program!("containerd");
    require_program!("ctr");
    require_program!("containerd-shim-runc-v2");
    let script = support::have_program("script");
    if !script {
        eprintln!("note: 'script' (util-linux) is missing: `ctr task exec -t` is not checked");
    }
    let tmp = tempfile::tempdir().unwrap();
    let c = Containerd::start(tmp.path());

    let berth = observe(
        &c,
        &Runtime {
            bin: BERTH_RUNTIME,
            root: BERTH_ROOT,
            prefix: "b",
        },
        script,
    );
    let expected = Seen {
        run_stdout: "hello from the container\n".into(),
        run_code: Some(3),
        stdin_read: "got hello".into(),
        run_tty: script.then_some(true),
        missing_code: Some(1),
        missing_named: true,
        shared_pid_code: Some(4),
        shared_pid_kill_failed: false,
        shared_root_code: Some(0),
        listed: "RUNNING".into(),
        listed_pid_is_init: true,
        exec_other_namespaces: vec![],
        exec_same_cgroup: true,
        exec_same_caps: true,
        exec_pid1: "sh".into(),
        exec_nnp: "1".into(),
        exec_seccomp: "2".into(),
        exec_cwd: "/etc".into(),
        // ls's own directory is 3; nothing of the host's.
        exec_fds: "0 1 2 3".into(),
        exec_home: "/root".into(),
        exec_code: Some(9),
        exec_tty: script.then_some(true),
        ps_lists_init_and_exec: true,
        paused: "PAUSED".into(),
        frozen: "1".into(),
        resumed: "RUNNING".into(),
        killed: "STOPPED".into(),
        kill_again_not_found: true,
        exit_code_reported: true,
        crashed_shim_task_gone: true,
        traces_while_running: 4,
        leftovers: vec![],
    };
    assert_eq!(berth, expected, "berth-runtime under containerd");

    if support::have_program("runc") {
        let runc = observe(
            &c,
            &Runtime {
                bin: RUNC,
                root: RUNC_ROOT,
                prefix: "r",
            },
            script,
        );
        assert_eq!(runc, expected, "runc under containerd (the reference)");
    } else {
        eprintln!("note: runc is missing: the expectations were not checked against it");
    }
    c.sbox.close().unwrap();
}
