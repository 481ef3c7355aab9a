//! Docker 20.10 runs its containers on berth-runtime, as a Docker user would
//! set it up: `dockerd --add-runtime berth=/usr/bin/berth-runtime` and
//! `docker run --runtime berth`. What a Docker user checks: `run --rm`
//! (output, exit code, `-i`, `-t`, a missing or non-executable program's
//! exit codes 127 and 126), a detached container's init, `exec` (hostname,
//! namespaces, cgroup, capabilities, NoNewPrivs and seccomp as Docker sets
//! them, `-u`, `-w`, `-t`, exit code), `top`, `pause`/`unpause`, `stop`
//! (SIGTERM honoured; SIGKILL after `-t 1` for a process ignoring it),
//! `inspect`'s exit code, `rm`, `--network none`, the default bridge between
//! two containers and a published port; and afterwards nothing of any
//! container is left (runtime state under the shim's `--root`, cgroup,
//! rootfs and other mounts, shim). Then dockerd restarts with the systemd
//! cgroup driver (Docker's default on a cgroup2 host run by systemd; the
//! runtime gets `--systemd-cgroup`): a container's scope, exec, pause, stop
//! and cleanup; and with `--userns-remap default`: containers in a user
//! namespace (ID map, host uid, writable remapped rootfs, exec, pause,
//! stop, cleanup). Every step also runs with `--runtime runc`, so the
//! expectations are what a real runtime delivers.
//!
//! Runs inside a systemd box (tests/support/systemd_box.rs) with containerd
//! and dockerd started by hand (tests/support/docker.rs). dockerd runs with
//! `--iptables=false` in the box's own network namespace: the bridge and
//! veths are libnetwork's (through the runtime's prestart hook), published
//! ports go through docker-proxy. Root only; skips when dockerd is missing
//! (CI installs Debian's `docker.io`).

#[path = "support/containerd.rs"]
#[allow(dead_code)]
mod containerd;
#[path = "support/docker.rs"]
mod docker;
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::time::{Duration, Instant};

use docker::{Docker, BERTH_RUNTIME, EXEC_ROOT, IMAGE, NS};
use support::systemd_box::shell_quote;
use support::{confinement_probe as probe, probe_field as field, NAMESPACES};

/// One runtime as dockerd knows it: its `--runtime` name, the binary the
/// shim must be told to run, a container name prefix and a port to publish.
struct Runtime {
    name: &'static str,
    bin: &'static str,
    prefix: &'static str,
    port: u16,
}

/// What a Docker user sees of one runtime. Equal for berth and runc.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// `docker run --rm … sh -c 'echo hi; exit 3'`: stdout, exit code.
    run_stdout: String,
    run_code: Option<i32>,
    /// `echo hello | docker run --rm -i … sh -c 'read x; echo got $x'`.
    stdin_read: String,
    /// `docker run --rm -t … tty` names a pty (None: `script` missing).
    run_tty: Option<bool>,
    /// `docker run --rm … nope` (not in PATH), `… /etc` (not executable):
    /// the exit codes Docker's CLI derives from the runtime's message.
    missing_code: Option<i32>,
    denied_code: Option<i32>,
    /// `docker inspect`'s State.Pid of a detached container is its shell,
    /// in the container's cgroup (`/docker/ID`, cgroupfs driver).
    pid_is_init: bool,
    /// `docker exec` of a probe: namespaces that differ from the init's,
    /// and what it reports about itself.
    exec_other_namespaces: Vec<String>,
    exec_hostname_is_short_id: bool,
    /// The exec'd process's /proc/self/cgroup: the root of the container's
    /// cgroup namespace (the same namespace as the init's, checked above),
    /// i.e. the container's cgroup.
    exec_cgroup: String,
    exec_same_caps: bool,
    exec_caps: String,
    exec_pid1: String,
    exec_nnp: String,
    exec_seccomp: String,
    exec_fds: String,
    /// `--oom-score-adj 500` of the container: the exec'd process's.
    exec_oom: String,
    /// `docker exec -u 65534 -w /tmp … sh -c '…; exit 5'`: uid:cwd, code.
    exec_user_cwd: String,
    exec_code: Option<i32>,
    /// `docker exec -t … tty` names a pty (None: `script` missing).
    exec_tty: Option<bool>,
    /// `docker top` lists the init (by PID) and a detached exec.
    top_lists_init_and_exec: bool,
    /// `docker pause` → status and cgroup.freeze; `unpause` → status.
    paused: String,
    frozen: String,
    unpaused: String,
    /// `docker stop` (SIGTERM trapped: exit 7): done well before its 10 s
    /// grace period, and status:exit code from `docker inspect`.
    stop_prompt: bool,
    stopped: String,
    /// `docker stop -t 1` of a shell ignoring SIGTERM: SIGKILL after ~1 s.
    stop_kill_after_grace: bool,
    killed: String,
    /// `docker rm` of both: gone from `docker ps -a`.
    removed: bool,
    /// `--network none`: the container's links.
    none_links: Vec<String>,
    /// Default bridge: the server's address is in Docker's 172.17/16, a
    /// second container fetches from it, and so does the box through a
    /// published port (docker-proxy).
    bridge_address: bool,
    bridge_fetch: String,
    published_fetch: String,
    /// What [`traces`] finds of the detached container while it runs
    /// (runtime state dir, cgroup, rootfs mount), so the check after
    /// is known to look at the right places.
    traces_while_running: Vec<&'static str>,
    /// Whatever is left of every container the test made.
    leftovers: Vec<String>,
}

/// A container the test made: its ID and (while it existed) its rootfs.
struct Made {
    id: String,
    merged: String,
}

/// The runtime state dir (under the `Root` dockerd hands the runc v2 shim:
/// `EXEC_ROOT/runtime-runc` for every runc-type runtime, then containerd's
/// namespace), cgroup, mounts (rootfs, shm, …) and shim of a container.
fn traces(d: &Docker, c: &Made) -> Vec<String> {
    let merged = if c.merged.is_empty() {
        String::new()
    } else {
        format!("grep -F {} /proc/self/mountinfo;", shell_quote(&c.merged))
    };
    d.sbox
        .sh_ok(&format!(
            "ls -d {EXEC_ROOT}/runtime-runc/{NS}/{id} /sys/fs/cgroup/docker/{id} \
             /sys/fs/cgroup/system.slice/docker-{id}.scope 2>/dev/null; \
             grep -F {id} /proc/self/mountinfo; {merged} \
             pgrep -af '[c]ontainerd-shim-runc-v2 .*-id {id}'; true",
            id = c.id
        ))
        .lines()
        .map(str::to_string)
        .collect()
}

/// What [`traces`] finds of `made` once it settled: dockerd removes a
/// `--rm` container after the client returned.
fn leftovers(d: &Docker, made: &[Made]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = made.iter().flat_map(|c| traces(d, c)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `docker run --rm --cidfile …`: the output, and the container it made.
fn run_rm(
    d: &Docker,
    rt: &Runtime,
    what: &str,
    opts: &str,
    cmd: &str,
    made: &mut Vec<Made>,
) -> std::process::Output {
    let cid = format!("/tmp/{}-{what}.cid", rt.prefix);
    let out = d.docker(&format!(
        "run --rm --cidfile {cid} --runtime {} {opts} {IMAGE} {cmd}",
        rt.name
    ));
    record_cid(d, &cid, made);
    out
}

/// Remember the container whose ID `docker run --cidfile CID` wrote.
fn record_cid(d: &Docker, cid: &str, made: &mut Vec<Made>) {
    let id = d.sbox.sh(&format!("cat {cid} && rm {cid}"));
    made.push(Made {
        id: String::from_utf8_lossy(&id.stdout).trim().to_string(),
        merged: String::new(),
    });
}

/// `docker run -d --name NAME …`; records the container.
fn run_detached(
    d: &Docker,
    rt: &Runtime,
    name: &str,
    opts: &str,
    cmd: &str,
    made: &mut Vec<Made>,
) -> String {
    let id = d
        .docker_ok(&format!(
            "run -d --name {name} --runtime {} {opts} {IMAGE} {cmd}",
            rt.name
        ))
        .trim()
        .to_string();
    let merged = d
        .docker_ok(&format!(
            "inspect -f '{{{{.GraphDriver.Data.MergedDir}}}}' {id}"
        ))
        .trim()
        .to_string();
    // The runtime dockerd asked the shim to run.
    let options = d.sbox.sh_ok(&format!(
        "cat /run/berth-docker/state/io.containerd.runtime.v2.task/{NS}/{id}/options.json"
    ));
    assert!(
        options.contains(&format!("\"binary_name\":\"{}\"", rt.bin)),
        "{name} runs on {options}, expected {}",
        rt.bin
    );
    made.push(Made {
        id: id.clone(),
        merged,
    });
    id
}

fn inspect(d: &Docker, name: &str, format: &str) -> String {
    d.docker_ok(&format!("inspect -f '{format}' {name}"))
        .trim()
        .to_string()
}

fn observe(d: &Docker, rt: &Runtime, script: bool) -> Seen {
    let p = rt.prefix;
    let r = rt.name;
    let mut made = Vec::new();

    let out = run_rm(d, rt, "rm", "", "sh -c 'echo hi; exit 3'", &mut made);
    let run_stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let run_code = out.status.code();
    let cid = format!("/tmp/{p}-stdin.cid");
    let out = d.docker_input(
        &format!("run --rm -i --cidfile {cid} --runtime {r} {IMAGE} sh -c 'read x; echo got $x'"),
        b"hello\n",
    );
    record_cid(d, &cid, &mut made);
    let stdin_read = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let run_tty = script.then(|| {
        let cid = format!("/tmp/{p}-tty.cid");
        let tty = d.docker_pty(&format!(
            "run --rm -t --cidfile {cid} --runtime {r} {IMAGE} tty"
        ));
        record_cid(d, &cid, &mut made);
        tty.contains("/dev/pts/")
    });
    let missing_code = run_rm(d, rt, "missing", "", "nope", &mut made)
        .status
        .code();
    let denied_code = run_rm(d, rt, "denied", "", "/etc", &mut made).status.code();

    // The detached container: PID 1 is a shell that turns SIGTERM into exit 7.
    let name = format!("{p}-task");
    let id = run_detached(
        d,
        rt,
        &name,
        "--oom-score-adj 500",
        "sh -c 'trap \"exit 7\" TERM; while :; do sleep 0.05; done'",
        &mut made,
    );
    let pid = inspect(d, &name, "{{.State.Pid}}");
    let init = d.sbox.sh_ok(&format!(
        "{} echo comm=$(cat /proc/{pid}/comm)",
        probe(&pid)
    ));
    let container_cgroup = format!("0::/docker/{id}");
    let pid_is_init = field(&init, "comm") == "sh" && field(&init, "cgroup") == container_cgroup;
    let exec = d.docker_ok(&format!(
        "exec {name} sh -c {}",
        shell_quote(&format!(
            "{} echo pid1=$(cat /proc/1/comm); echo host=$(hostname); \
             echo oom=$(cat /proc/self/oom_score_adj); \
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
    let out = d.docker(&format!(
        "exec -u 65534 -w /tmp {name} sh -c 'echo $(id -u):$(pwd); exit 5'"
    ));
    let exec_user_cwd = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let exec_code = out.status.code();
    let exec_tty = script.then(|| {
        d.docker_pty(&format!("exec -t {name} tty"))
            .contains("/dev/pts/")
    });

    d.docker_ok(&format!("exec -d {name} sleep 60"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let top_lists_init_and_exec = loop {
        let top = d.docker_ok(&format!("top {name}"));
        let ok = top
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(pid.as_str()))
            && top.lines().any(|l| l.ends_with("sleep 60"));
        if ok || Instant::now() > deadline {
            break ok;
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    d.docker_ok(&format!("pause {name}"));
    let paused = inspect(d, &name, "{{.State.Status}}");
    let frozen = d
        .sbox
        .sh_ok(&format!("cat /sys/fs/cgroup/docker/{id}/cgroup.freeze"))
        .trim()
        .to_string();
    d.docker_ok(&format!("unpause {name}"));
    let unpaused = inspect(d, &name, "{{.State.Status}}");

    let running = made.last().expect("the detached container");
    let found = traces(d, running);
    let mut traces_while_running = Vec::new();
    if found.iter().any(|t| t.starts_with(EXEC_ROOT)) {
        traces_while_running.push("state");
    }
    if found.iter().any(|t| t.starts_with("/sys/fs/cgroup/")) {
        traces_while_running.push("cgroup");
    }
    if found
        .iter()
        .any(|t| t.contains(&format!(" {} ", running.merged)))
    {
        traces_while_running.push("rootfs");
    }

    let t0 = Instant::now();
    d.docker_ok(&format!("stop {name}"));
    let stop_prompt = t0.elapsed() < Duration::from_secs(5);
    let stopped = inspect(d, &name, "{{.State.Status}}:{{.State.ExitCode}}");

    let deaf = format!("{p}-deaf");
    run_detached(
        d,
        rt,
        &deaf,
        "",
        "sh -c 'trap \"\" TERM; while :; do sleep 0.05; done'",
        &mut made,
    );
    let t0 = Instant::now();
    d.docker_ok(&format!("stop -t 1 {deaf}"));
    let took = t0.elapsed();
    let stop_kill_after_grace = took >= Duration::from_millis(900) && took < Duration::from_secs(5);
    let killed = inspect(d, &deaf, "{{.State.Status}}:{{.State.ExitCode}}");
    d.docker_ok(&format!("rm {name} {deaf}"));
    let removed = !d
        .docker_ok("ps -a --format '{{.Names}}'")
        .lines()
        .any(|n| n == name || n == deaf);

    let none_links = String::from_utf8_lossy(
        &run_rm(
            d,
            rt,
            "none",
            "--network none",
            "sh -c 'ls /sys/class/net'",
            &mut made,
        )
        .stdout,
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();

    let web = format!("{p}-web");
    run_detached(
        d,
        rt,
        &web,
        &format!("-p 127.0.0.1:{}:80", rt.port),
        &format!(
            "sh -c 'mkdir /www && echo served by {r} > /www/index.html && exec httpd -f -p 80 -h /www'"
        ),
        &mut made,
    );
    let ip = inspect(d, &web, "{{.NetworkSettings.IPAddress}}");
    let bridge_address = ip.starts_with("172.17.");
    // httpd may not listen yet.
    let fetch = format!("for i in $(seq 50); do wget -qO- http://{ip}/ && break; sleep 0.1; done");
    let bridge_fetch = String::from_utf8_lossy(
        &run_rm(
            d,
            rt,
            "client",
            "",
            &format!("sh -c {}", shell_quote(&fetch)),
            &mut made,
        )
        .stdout,
    )
    .trim()
    .to_string();
    let published_fetch = d
        .sbox
        .sh(&format!(
            "for i in $(seq 50); do wget -qO- http://127.0.0.1:{}/ && break; sleep 0.1; done",
            rt.port
        ))
        .stdout;
    let published_fetch = String::from_utf8_lossy(&published_fetch).trim().to_string();
    d.docker_ok(&format!("rm -f {web}"));

    let leftovers = leftovers(d, &made);
    assert!(
        made.iter().all(|c| c.id.len() == 64),
        "every container's ID is known: {:?}",
        made.iter().map(|c| &c.id).collect::<Vec<_>>()
    );

    Seen {
        run_stdout,
        run_code,
        stdin_read,
        run_tty,
        missing_code,
        denied_code,
        pid_is_init,
        exec_other_namespaces,
        exec_hostname_is_short_id: field(&exec, "host") == id[..12],
        exec_cgroup: field(&exec, "cgroup"),
        exec_same_caps: field(&exec, "caps") == field(&init, "caps"),
        exec_caps: field(&exec, "caps"),
        exec_pid1: field(&exec, "pid1"),
        exec_nnp: field(&exec, "nnp"),
        exec_seccomp: field(&exec, "seccomp"),
        exec_fds: field(&exec, "fds"),
        exec_oom: field(&exec, "oom"),
        exec_user_cwd,
        exec_code,
        exec_tty,
        top_lists_init_and_exec,
        paused,
        frozen,
        unpaused,
        stop_prompt,
        stopped,
        stop_kill_after_grace,
        killed,
        removed,
        none_links,
        bridge_address,
        bridge_fetch,
        published_fetch,
        traces_while_running,
        leftovers,
    }
}

fn expected(rt: &Runtime, script: bool) -> Seen {
    Seen {
        run_stdout: "hi\n".into(),
        run_code: Some(3),
        stdin_read: "got hello".into(),
        run_tty: script.then_some(true),
        missing_code: Some(127),
        denied_code: Some(126),
        pid_is_init: true,
        exec_other_namespaces: vec![],
        exec_hostname_is_short_id: true,
        exec_cgroup: "0::/".into(),
        exec_same_caps: true,
        // Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
        // SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD
        // AUDIT_WRITE SETFCAP.
        exec_caps: "00000000a80425fb".into(),
        exec_pid1: "sh".into(),
        // Docker sets no_new_privileges only on request, and its default
        // seccomp profile (filter mode) always.
        exec_nnp: "0".into(),
        exec_seccomp: "2".into(),
        // ls's own directory is 3; nothing of the host's.
        exec_fds: "0 1 2 3".into(),
        exec_oom: "500".into(),
        exec_user_cwd: "65534:/tmp".into(),
        exec_code: Some(5),
        exec_tty: script.then_some(true),
        top_lists_init_and_exec: true,
        paused: "paused".into(),
        frozen: "1".into(),
        unpaused: "running".into(),
        stop_prompt: true,
        stopped: "exited:7".into(),
        stop_kill_after_grace: true,
        killed: "exited:137".into(),
        removed: true,
        none_links: vec!["lo".into()],
        bridge_address: true,
        bridge_fetch: format!("served by {}", rt.name),
        published_fetch: format!("served by {}", rt.name),
        traces_while_running: vec!["state", "cgroup", "rootfs"],
        leftovers: vec![],
    }
}

/// What a Docker user sees of one runtime under dockerd's systemd cgroup
/// driver, Docker's default on a cgroup2 host run by systemd: the shim calls
/// the runtime with `--systemd-cgroup` and `system.slice:docker:ID`.
#[derive(Debug, PartialEq, Eq)]
struct SeenSystemd {
    /// `docker run --rm … sh -c 'echo hi; exit 3'`.
    run_stdout: String,
    run_code: Option<i32>,
    /// The detached container's init, from the box: in the scope
    /// `system.slice/docker-ID.scope`, which systemd has active.
    init_in_scope: bool,
    scope_active: String,
    /// `docker exec`: in the init's cgroup namespace, at its root.
    exec_same_cgroupns: bool,
    exec_cgroup: String,
    /// `docker pause` → status and the scope's cgroup.freeze.
    paused: String,
    frozen: String,
    /// `docker stop` (SIGTERM trapped: exit 7).
    stopped: String,
    /// After `docker rm`: systemd's view of the scope, and whatever else
    /// is left of both containers.
    scope_after: String,
    leftovers: Vec<String>,
}

fn observe_systemd(d: &Docker, rt: &Runtime) -> SeenSystemd {
    let p = rt.prefix;
    let mut made = Vec::new();
    let out = run_rm(d, rt, "sd-rm", "", "sh -c 'echo hi; exit 3'", &mut made);
    let name = format!("{p}-sd-task");
    let id = run_detached(
        d,
        rt,
        &name,
        "",
        "sh -c 'trap \"exit 7\" TERM; while :; do sleep 0.05; done'",
        &mut made,
    );
    let pid = inspect(d, &name, "{{.State.Pid}}");
    let scope = format!("docker-{id}.scope");
    let init = d.sbox.sh_ok(&format!(
        "echo cgroup=$(tail -1 /proc/{pid}/cgroup); echo ns=$(readlink /proc/{pid}/ns/cgroup); \
         echo active=$(systemctl is-active {scope})"
    ));
    let exec = d.docker_ok(&format!(
        "exec {name} sh -c 'echo cgroup=$(tail -1 /proc/self/cgroup); echo ns=$(readlink /proc/self/ns/cgroup)'"
    ));
    d.docker_ok(&format!("pause {name}"));
    let paused = inspect(d, &name, "{{.State.Status}}");
    let frozen = d
        .sbox
        .sh_ok(&format!(
            "cat /sys/fs/cgroup/system.slice/{scope}/cgroup.freeze"
        ))
        .trim()
        .to_string();
    d.docker_ok(&format!("unpause {name}"));
    d.docker_ok(&format!("stop {name}"));
    let stopped = inspect(d, &name, "{{.State.Status}}:{{.State.ExitCode}}");
    d.docker_ok(&format!("rm {name}"));
    let scope_after =
        String::from_utf8_lossy(&d.sbox.sh(&format!("systemctl is-active {scope}")).stdout)
            .trim()
            .to_string();
    let leftovers = leftovers(d, &made);
    SeenSystemd {
        run_stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        run_code: out.status.code(),
        init_in_scope: field(&init, "cgroup") == format!("0::/system.slice/{scope}"),
        scope_active: field(&init, "active"),
        exec_same_cgroupns: !field(&exec, "ns").is_empty()
            && field(&exec, "ns") == field(&init, "ns"),
        exec_cgroup: field(&exec, "cgroup"),
        paused,
        frozen,
        stopped,
        scope_after,
        leftovers,
    }
}

fn expected_systemd() -> SeenSystemd {
    SeenSystemd {
        run_stdout: "hi\n".into(),
        run_code: Some(3),
        init_in_scope: true,
        scope_active: "active".into(),
        exec_same_cgroupns: true,
        exec_cgroup: "0::/".into(),
        paused: "paused".into(),
        frozen: "1".into(),
        stopped: "exited:7".into(),
        scope_after: "inactive".into(),
        leftovers: vec![],
    }
}

/// What a Docker user sees of one runtime under `dockerd --userns-remap
/// default`: every container in a user namespace, its root the first ID of
/// the `dockremap` range in /etc/subuid.
#[derive(Debug, PartialEq, Eq)]
struct SeenUserns {
    /// `docker run --rm` of a probe: its ID map, uid, a write to the
    /// rootfs (Docker's remapped layers); exit code.
    run_stdout: String,
    run_code: Option<i32>,
    /// The detached container's init, from the box: its host uid.
    init_host_uid: String,
    /// `docker exec` (as root, the uid map it sees) and `exec -u 65534`.
    exec_uid_map: String,
    exec_user: String,
    /// `docker pause` and `docker stop` (SIGTERM trapped: exit 7).
    paused: String,
    stopped: String,
    /// Whatever is left of both containers after `docker rm`.
    leftovers: Vec<String>,
}

fn observe_userns(d: &Docker, rt: &Runtime) -> SeenUserns {
    let p = rt.prefix;
    let mut made = Vec::new();
    let out = run_rm(
        d,
        rt,
        "userns-rm",
        "",
        "sh -c 'echo map=$(tr -s \" \" < /proc/self/uid_map); echo uid=$(id -u); \
         touch /written && echo rootfs writable; exit 3'",
        &mut made,
    );
    let name = format!("{p}-userns-task");
    run_detached(
        d,
        rt,
        &name,
        "",
        "sh -c 'trap \"exit 7\" TERM; while :; do sleep 0.05; done'",
        &mut made,
    );
    let pid = inspect(d, &name, "{{.State.Pid}}");
    let init_host_uid = d
        .sbox
        .sh_ok(&format!("grep ^Uid: /proc/{pid}/status | cut -f2"))
        .trim()
        .to_string();
    let exec_uid_map = d
        .docker_ok(&format!(
            "exec {name} sh -c 'tr -s \" \" < /proc/self/uid_map'"
        ))
        .trim()
        .to_string();
    let exec_user = d
        .docker_ok(&format!("exec -u 65534 {name} id -u"))
        .trim()
        .to_string();
    d.docker_ok(&format!("pause {name}"));
    let paused = inspect(d, &name, "{{.State.Status}}");
    d.docker_ok(&format!("unpause {name}"));
    d.docker_ok(&format!("stop {name}"));
    let stopped = inspect(d, &name, "{{.State.Status}}:{{.State.ExitCode}}");
    d.docker_ok(&format!("rm {name}"));
    SeenUserns {
        run_stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        run_code: out.status.code(),
        init_host_uid,
        exec_uid_map,
        exec_user,
        paused,
        stopped,
        leftovers: leftovers(d, &made),
    }
}

/// `start` and `count`: the `dockremap` range dockerd allotted.
fn expected_userns(start: &str, count: &str) -> SeenUserns {
    SeenUserns {
        run_stdout: format!("map= 0 {start} {count}\nuid=0\nrootfs writable\n"),
        run_code: Some(3),
        init_host_uid: start.into(),
        exec_uid_map: format!("0 {start} {count}"),
        exec_user: "65534".into(),
        paused: "paused".into(),
        stopped: "exited:7".into(),
        leftovers: vec![],
    }
}

#[test]
fn docker_runs_containers_on_berth_runtime() {
    require_root!();
    require_program!("dockerd");
    require_program!("docker");
    require_program!("containerd");
    require_program!("containerd-shim-runc-v2");
    require_program!("skopeo");
    let script = support::have_program("script");
    if !script {
        eprintln!(
            "note: 'script' (util-linux) is missing: `docker run -t`, `exec -t` are not checked"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let d = Docker::start(tmp.path());
    eprintln!(
        "containerd and dockerd up, image loaded in {:?}",
        t0.elapsed()
    );

    let berth = Runtime {
        name: "berth",
        bin: BERTH_RUNTIME,
        prefix: "b",
        port: 18080,
    };
    let runc = Runtime {
        name: "runc",
        bin: "runc",
        prefix: "r",
        port: 18081,
    };
    let have_runc = support::have_program("runc");
    if !have_runc {
        eprintln!("note: runc is missing: the expectations were not checked against it");
    }
    let t0 = Instant::now();
    let seen = observe(&d, &berth, script);
    eprintln!("berth-runtime under Docker: {:?}", t0.elapsed());
    assert_eq!(seen, expected(&berth, script), "berth-runtime under Docker");
    if have_runc {
        let seen = observe(&d, &runc, script);
        assert_eq!(
            seen,
            expected(&runc, script),
            "runc under Docker (the reference)"
        );
    }

    let t0 = Instant::now();
    d.restart_dockerd("--exec-opt native.cgroupdriver=systemd");
    eprintln!(
        "dockerd restarted with the systemd cgroup driver in {:?}",
        t0.elapsed()
    );
    assert_eq!(
        observe_systemd(&d, &berth),
        expected_systemd(),
        "berth-runtime under Docker's systemd cgroup driver"
    );
    if have_runc {
        assert_eq!(
            observe_systemd(&d, &runc),
            expected_systemd(),
            "runc under Docker's systemd cgroup driver (the reference)"
        );
    }

    // A process in a user namespace may mount proc only where its mount
    // namespace shows one no other mount covers (the kernel's
    // mnt_too_revealing); the box's /proc has /proc/sys bound read-only
    // over it, as a container's has, and with only that, runc fails as
    // berth does. A host has an uncovered /proc: a second proc mount, in
    // the box's own mount namespace, is that.
    d.sbox.sh_ok(
        "mkdir -p /run/berth-docker/proc && \
         mount -t proc -o nosuid,nodev,noexec proc /run/berth-docker/proc",
    );
    let t0 = Instant::now();
    d.restart_dockerd("--exec-opt native.cgroupdriver=cgroupfs --userns-remap default");
    // A remapped dockerd has its own image store.
    d.load_image();
    eprintln!(
        "dockerd restarted with --userns-remap in {:?}",
        t0.elapsed()
    );
    let range = d.sbox.sh_ok("grep ^dockremap: /etc/subuid");
    let range: Vec<&str> = range.trim().split(':').collect();
    assert_eq!(range.len(), 3, "dockerd's range in /etc/subuid: {range:?}");
    let (start, count) = (range[1], range[2]);
    assert_eq!(
        observe_userns(&d, &berth),
        expected_userns(start, count),
        "berth-runtime under Docker's --userns-remap"
    );
    if have_runc {
        assert_eq!(
            observe_userns(&d, &runc),
            expected_userns(start, count),
            "runc under Docker's --userns-remap (the reference)"
        );
    }
    d.sbox.close().unwrap();
}
