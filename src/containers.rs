//! containers: what the `berth` CLI reports about containers and how it acts
//! on running ones from outside their supervisor: the record
//! (`/run/berth/containers/NAME/state.json`), the unit's state as systemd
//! reports it (`systemctl show`), the payload cgroup (processes, usage,
//! freezer), named volumes, and the confinement an `exec` needs, rebuilt
//! from the definition with the same planner the supervisor used.
//!
//! Must not start, stop or restart containers itself (systemd does, through
//! `systemctl`), nor change what a running container looks like. The parsers
//! (`parse_show`, `render_status`, `parse_limits`, `parse_proc_stat`) are pure
//! and unit-tested; the rest reads files and runs `systemctl`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use crate::config::{Definition, Globals, ImageSource, VolumeSource};
use crate::spec;
use crate::supervise::{Paths, State};

/// Errors of this module; each names the container, unit or path.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no container \"{name}\": no definition in {root}/etc/berth/containers, /run/berth/containers or /usr/lib/berth/containers (create /etc/berth/containers/{name}.toml, then `systemctl daemon-reload`)")]
    NoSuch { name: String, root: PathBuf },
    #[error("definition \"{name}\" is invalid (run `berth check {name}`):\n{diagnostics}")]
    Invalid { name: String, diagnostics: String },
    #[error("container \"{name}\" is not running (start it with `systemctl start berth@{name}` or `berth start {name}`)")]
    NotRunning { name: String },
    #[error("{op} \"{path}\": {error}")]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("`systemctl {args}` failed: {reason}")]
    Systemctl { args: String, reason: String },
    #[error("container \"{name}\": {reason}")]
    Exec { name: String, reason: String },
    #[error("cgroup \"{path}\": {reason}")]
    Cgroup { path: PathBuf, reason: String },
    #[error("volume \"{name}\" does not exist (see `berth volume ls`)")]
    NoVolume { name: String },
    #[error("volume \"{name}\" is used by running container(s) {users} (stop them first, or pass --force)")]
    VolumeInUse { name: String, users: String },
}

fn io(op: &'static str, path: impl Into<PathBuf>, error: std::io::Error) -> ContainerError {
    ContainerError::Io {
        op,
        path: path.into(),
        error,
    }
}

/// The unit a container runs as.
pub fn unit_name(name: &str) -> String {
    format!("berth@{name}.service")
}

/// Load a definition, with the CLI's wording for a missing or broken one.
pub fn load_definition(root: &Path, name: &str) -> Result<Definition, ContainerError> {
    if crate::config::values::validate_name(name).is_err() {
        return Err(ContainerError::NoSuch {
            name: name.to_string(),
            root: root.to_path_buf(),
        });
    }
    match crate::config::load_definition(root, name) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(ContainerError::NoSuch {
            name: name.to_string(),
            root: root.to_path_buf(),
        }),
        Err(diags) => Err(ContainerError::Invalid {
            name: name.to_string(),
            diagnostics: diags.to_string(),
        }),
    }
}

/// `name`'s record paths.
pub fn paths(root: &Path, globals: &Globals, name: &str) -> Paths {
    Paths::new(
        &crate::supervise::run_root(root),
        &globals.storage_root,
        name,
    )
}

/// The record of `name`, when a start wrote one.
pub fn state(root: &Path, globals: &Globals, name: &str) -> Option<State> {
    State::load(&paths(root, globals, name).run_dir)
        .ok()
        .flatten()
}

/// Names with a run dir (running, or left by a crash), sorted.
pub fn recorded_names(root: &Path) -> Vec<String> {
    let dir = crate::supervise::run_root(root).join("containers");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(crate::supervise::state::STATE_FILE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// A running container: its record with a live main process and payload.
#[derive(Debug, Clone)]
pub struct Running {
    pub name: String,
    pub state: State,
    pub pid: i32,
    /// The payload cgroup (cgroupfs path), when the container has one.
    pub cgroup: Option<PathBuf>,
}

/// `name` when it runs now, else [`ContainerError::NotRunning`].
pub fn running(root: &Path, globals: &Globals, name: &str) -> Result<Running, ContainerError> {
    let not = || ContainerError::NotRunning {
        name: name.to_string(),
    };
    let st = state(root, globals, name).ok_or_else(not)?;
    let pid = st
        .container_pid
        .filter(|_| st.supervisor_alive())
        .ok_or_else(not)?;
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(not());
    }
    let cgroup = st.payload_cgroup.clone().filter(|p| p.is_dir());
    Ok(Running {
        name: name.to_string(),
        state: st,
        pid,
        cgroup,
    })
}

// ---------------------------------------------------------------- systemd

/// Properties `berth ps` and `inspect` read from systemd.
pub const SHOW_PROPS: &str = "Id,LoadState,ActiveState,SubState,Result,MainPID,ExecMainStatus,ExecMainCode,ExecMainStartTimestampMonotonic,ExecMainStartTimestamp,NRestarts,FragmentPath,DropInPaths";

/// Parse `systemctl show` output for several units: blocks of `KEY=VALUE`
/// separated by empty lines, in the order the units were given.
pub fn parse_show(text: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    let mut cur = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            cur.insert(k.to_string(), v.to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One `systemctl show` for the units of all `names`; keyed by container name.
/// Without systemd as the init system (sd_booted(3)'s test) there are no
/// units: every name maps to nothing, and callers fall back on berth's own
/// records, so `berth ps` still lists ad hoc runs.
pub fn show_units(
    names: &[String],
) -> Result<HashMap<String, HashMap<String, String>>, ContainerError> {
    if names.is_empty() || !Path::new("/run/systemd/system").is_dir() {
        return Ok(HashMap::new());
    }
    let mut cmd = std::process::Command::new("systemctl");
    cmd.args(["show", "--no-pager", "-p", SHOW_PROPS]);
    for n in names {
        cmd.arg(unit_name(n));
    }
    let args = format!("show -p {SHOW_PROPS} berth@….service");
    let out = cmd.output().map_err(|e| ContainerError::Systemctl {
        args: args.clone(),
        reason: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(ContainerError::Systemctl {
            args,
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let mut map = HashMap::new();
    for block in parse_show(&String::from_utf8_lossy(&out.stdout)) {
        let Some(id) = block.get("Id") else { continue };
        if let Some(name) = id
            .strip_prefix("berth@")
            .and_then(|s| s.strip_suffix(".service"))
        {
            map.insert(name.to_string(), block);
        }
    }
    Ok(map)
}

/// Run `systemctl VERB berth@NAME.service…`; the exit status is systemd's answer.
pub fn systemctl(verb: &str, names: &[String]) -> Result<(), ContainerError> {
    let units: Vec<String> = names.iter().map(|n| unit_name(n)).collect();
    let status = std::process::Command::new("systemctl")
        .arg(verb)
        .args(&units)
        .status()
        .map_err(|e| ContainerError::Systemctl {
            args: format!("{verb} {}", units.join(" ")),
            reason: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(ContainerError::Systemctl {
            args: format!("{verb} {}", units.join(" ")),
            reason: format!(
                "{status} (see `systemctl status {}` and `journalctl -u {}`)",
                units.join(" "),
                units.join(" -u ")
            ),
        })
    }
}

/// The status column of `berth ps`, from the unit's properties and whether
/// the payload is frozen: `running`, `paused`, `starting`, `stopping`,
/// `exited (N)`, `failed (N)` / `failed (RESULT)`, `stopped` (never ran).
pub fn render_status(props: &HashMap<String, String>, paused: bool) -> String {
    let get = |k: &str| props.get(k).map(String::as_str).unwrap_or("");
    let ran = !matches!(get("ExecMainStartTimestampMonotonic"), "" | "0");
    let code = get("ExecMainStatus");
    match get("ActiveState") {
        "active" | "reloading" if paused => "paused".into(),
        "active" | "reloading" => "running".into(),
        "activating" => "starting".into(),
        "deactivating" => "stopping".into(),
        "failed" => match get("Result") {
            "exit-code" | "" => format!("failed ({code})"),
            r => format!("failed ({r})"),
        },
        _ if ran => format!("exited ({code})"),
        _ => "stopped".into(),
    }
}

/// The last exit status each container logged this boot (berth's
/// `BERTH_EVENT=exited` journal entries), by container name. systemd forgets
/// an inactive unit's `ExecMainStatus` once it unloads the unit, the journal
/// does not.
pub fn last_exits() -> HashMap<String, i32> {
    let out = std::process::Command::new("journalctl")
        .args([
            "--no-pager",
            "-b",
            "-q",
            "-o",
            "json",
            "--output-fields=CONTAINER_NAME,EXIT_STATUS,EXIT_CODE",
            "BERTH_EVENT=exited",
        ])
        .output();
    let mut map = HashMap::new();
    if let Ok(o) = out {
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            map.extend(parse_exit_entry(line));
        }
    }
    map
}

/// (container, status) of one `journalctl -o json` line of an exit event.
pub fn parse_exit_entry(line: &str) -> Option<(String, i32)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let name = v.get("CONTAINER_NAME")?.as_str()?.to_string();
    let code = v
        .get("EXIT_STATUS")
        .or_else(|| v.get("EXIT_CODE"))?
        .as_str()?
        .parse()
        .ok()?;
    Some((name, code))
}

/// Microseconds of CLOCK_MONOTONIC now (systemd's `…Monotonic` clock).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// `1h2m`, `3m4s`, `5s`, `2d3h`.
pub fn render_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// What `berth ps` shows of one container.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub name: String,
    pub status: String,
    /// systemd's ActiveState/SubState, for scripts.
    pub active_state: String,
    pub sub_state: String,
    pub image: String,
    pub pid: Option<i32>,
    pub uptime_seconds: Option<u64>,
}

/// The image column: the reference, or `rootfs:DIR`.
pub fn image_label(def: Option<&Definition>, st: Option<&State>) -> String {
    if let Some(i) = st.and_then(|s| s.image.clone()) {
        return i;
    }
    match def.map(|d| &d.image) {
        Some(ImageSource::Image(r)) => r.to_string(),
        Some(ImageSource::Rootfs(p)) => format!("rootfs:{}", p.display()),
        None => "-".into(),
    }
}

/// Rows for `berth ps`: every definition (with `all`) or the ones whose
/// unit is not inactive, plus recorded containers without a definition.
pub fn list(root: &Path, globals: &Globals, all: bool) -> Result<Vec<Row>, ContainerError> {
    let mut names: Vec<String> = crate::config::definition_names(root);
    for n in recorded_names(root) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names.sort();
    let props = show_units(&names)?;
    let now = monotonic_usec();
    let mut exits: Option<HashMap<String, i32>> = None;
    let mut rows = Vec::new();
    for name in names {
        let empty = HashMap::new();
        let p = props.get(&name).unwrap_or(&empty);
        let st = state(root, globals, &name);
        let live = running(root, globals, &name).ok();
        let paused = live
            .as_ref()
            .and_then(|r| r.cgroup.as_ref())
            .and_then(|c| crate::runtime::cgroup_state(c).ok())
            .is_some_and(|s| s.frozen);
        let active = p
            .get("ActiveState")
            .map(String::as_str)
            .unwrap_or("inactive");
        let mut status = render_status(p, paused);
        if status == "stopped" && all {
            if let Some(code) = exits.get_or_insert_with(last_exits).get(&name) {
                status = format!("exited ({code})");
            }
        }
        // A foreground `berth run` runs in a scope, not in berth@NAME.
        if matches!(active, "inactive" | "failed") && live.is_some() {
            status = if paused { "paused" } else { "running" }.to_string();
            status.push_str(" (ad hoc)");
        }
        if !all && active == "inactive" && live.is_none() {
            continue;
        }
        let def = crate::config::load_definition(root, &name).ok().flatten();
        let started = p
            .get("ExecMainStartTimestampMonotonic")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0);
        let uptime = match (live.is_some(), started) {
            (true, Some(t)) if now >= t => Some((now - t) / 1_000_000),
            _ => None,
        };
        rows.push(Row {
            image: image_label(def.as_ref(), st.as_ref()),
            pid: live.as_ref().map(|r| r.pid),
            uptime_seconds: uptime,
            active_state: active.to_string(),
            sub_state: p.get("SubState").cloned().unwrap_or_default(),
            status,
            name,
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------- cgroup, /proc

/// One process of a container, for `berth top`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcInfo {
    pub pid: i32,
    pub user: String,
    /// CPU time (user + system) in seconds.
    pub cpu_seconds: f64,
    pub command: String,
}

/// (utime + stime) in clock ticks from `/proc/PID/stat` (proc(5)); the
/// command name may hold spaces and parentheses, so fields count from the
/// last `)`.
pub fn parse_proc_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state(3) ... utime is field 14, stime 15 → indexes 11, 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Processes of a cgroup (and its children), host PIDs.
pub fn processes(cgroup: &Path) -> Result<Vec<ProcInfo>, ContainerError> {
    let mut pids = crate::runtime::cgroup_pids(cgroup).map_err(|e| ContainerError::Cgroup {
        path: cgroup.to_path_buf(),
        reason: e.to_string(),
    })?;
    pids.sort();
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let mut out = Vec::new();
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| parse_proc_stat(&t))
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let mut command = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if command.is_empty() {
            let comm = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .unwrap_or("")
                .trim();
            command = format!("[{comm}]");
        }
        out.push(ProcInfo {
            pid,
            user: user_name(uid),
            cpu_seconds: ticks as f64 / tick,
            command,
        });
    }
    Ok(out)
}

/// Usage of a container's cgroup, for `berth stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    pub name: String,
    /// `memory.current` (absent without the memory controller).
    pub memory_bytes: Option<u64>,
    /// `memory.max`, `None` when unlimited or absent.
    pub memory_max: Option<u64>,
    /// `pids.current`, else the count of tasks in the cgroup.
    pub pids: u64,
    /// `usage_usec` of `cpu.stat` (always there in cgroup v2).
    pub cpu_usec: Option<u64>,
    pub frozen: bool,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `usage_usec` of a `cpu.stat` text.
pub fn parse_cpu_usage(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

fn count_tasks(cgroup: &Path) -> u64 {
    let mut n = std::fs::read_to_string(cgroup.join("cgroup.threads"))
        .map(|t| t.lines().count() as u64)
        .unwrap_or(0);
    for e in std::fs::read_dir(cgroup).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            n += count_tasks(&e.path());
        }
    }
    n
}

/// Read the usage of `cgroup` for container `name`.
pub fn usage(name: &str, cgroup: &Path) -> Usage {
    Usage {
        name: name.to_string(),
        memory_bytes: read_u64(&cgroup.join("memory.current")),
        memory_max: read_u64(&cgroup.join("memory.max")),
        pids: read_u64(&cgroup.join("pids.current")).unwrap_or_else(|| count_tasks(cgroup)),
        cpu_usec: std::fs::read_to_string(cgroup.join("cpu.stat"))
            .ok()
            .and_then(|t| parse_cpu_usage(&t)),
        frozen: crate::runtime::cgroup_state(cgroup)
            .map(|s| s.frozen)
            .unwrap_or(false),
    }
}

// ---------------------------------------------------------------- exec

/// What `berth exec` changes of the container's own process.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub tty: bool,
}

/// The confinement of an exec'd process: the container's own process with
/// the request's changes, its namespaces and seccomp filter.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    pub process: Process,
    pub confinement: crate::runtime::Confinement,
}

/// A regular file of the running container's root (`/proc/PID/root/REL`),
/// resolved inside that root (`rootfile`): a link or symlinked parent planted
/// in the container must not make berth read a host file, and a FIFO, a
/// device or a hung filesystem there must not wedge `berth exec`.
fn read_container_file(pid: i32, rel: &str) -> Option<String> {
    crate::rootfile::read_text_in_root_within(
        Path::new(&format!("/proc/{pid}/root")),
        rel,
        crate::rootfile::MAX_ID_FILE,
        std::time::Duration::from_secs(5),
    )
}

/// The container's own confinement, saved by its supervisor at start
/// (`supervise::ExecTemplate`), with the exec request's command, user,
/// working directory and environment.
pub fn plan_exec(
    root: &Path,
    globals: &Globals,
    run: &Running,
    req: &ExecRequest,
) -> Result<ExecPlan, ContainerError> {
    let name = &run.name;
    let err = |reason: String| ContainerError::Exec {
        name: name.clone(),
        reason,
    };
    let run_dir = paths(root, globals, name).run_dir;
    let template = crate::supervise::ExecTemplate::load(&run_dir)
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| {
            err(format!(
                "no {} in \"{}\": it was started by an older berth; restart it with `systemctl restart berth@{name}`",
                crate::supervise::exec::EXEC_FILE,
                run_dir.display()
            ))
        })?;
    // The command replaces the entrypoint too, as `docker exec` does.
    let mut process = template.process_for(req.command.clone(), req.tty);
    if let Some(u) = &req.user {
        let passwd = read_container_file(run.pid, "etc/passwd");
        let group = read_container_file(run.pid, "etc/group");
        let resolved = spec::resolve_user(u, passwd.as_deref(), group.as_deref())
            .map_err(|e| err(format!("user \"{u}\": {e}")))?;
        let mut user = process.user().clone();
        user.set_uid(resolved.uid)
            .set_gid(resolved.gid)
            .set_additional_gids(Some(resolved.additional_gids));
        process.set_user(user);
    }
    if let Some(w) = &req.workdir {
        if !w.is_absolute() {
            return Err(err(format!(
                "working directory \"{}\" must be absolute",
                w.display()
            )));
        }
        process.set_cwd(w.clone());
    }
    if !req.env.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        for (k, v) in &req.env {
            let prefix = format!("{k}=");
            env.retain(|e| !e.starts_with(&prefix));
            env.push(format!("{k}={v}"));
        }
        process.set_env(Some(env));
    }
    Ok(ExecPlan {
        process,
        confinement: template.confinement,
    })
}

// ---------------------------------------------------------------- volumes

/// A named volume and who uses it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VolumeInfo {
    pub name: String,
    /// `STORAGE/volumes/NAME/_data`.
    pub path: PathBuf,
    /// Definitions that mount it.
    pub used_by: Vec<String>,
    /// Of those, the ones running now.
    pub running: Vec<String>,
}

/// Definitions mounting each named volume (volume → container names).
fn volume_users(root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in crate::config::load_all(root).definitions {
        for v in &d.volumes {
            if let VolumeSource::Named(n) = &v.source {
                map.entry(n.clone()).or_default().push(d.name.clone());
            }
        }
    }
    map
}

/// Every named volume in the store, sorted.
pub fn volumes(root: &Path, globals: &Globals) -> Vec<VolumeInfo> {
    let users = volume_users(root);
    let dir = globals.storage_root.join("volumes");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_data").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let used_by = users.get(&n).cloned().unwrap_or_default();
            let running = used_by
                .iter()
                .filter(|c| running(root, globals, c).is_ok())
                .cloned()
                .collect();
            VolumeInfo {
                path: crate::supervise::volume_data(&globals.storage_root, &n),
                name: n,
                used_by,
                running,
            }
        })
        .collect()
}

/// One volume, or [`ContainerError::NoVolume`].
pub fn volume(root: &Path, globals: &Globals, name: &str) -> Result<VolumeInfo, ContainerError> {
    volumes(root, globals)
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| ContainerError::NoVolume {
            name: name.to_string(),
        })
}

/// Remove a named volume; refuses one a running container mounts unless `force`.
pub fn remove_volume(
    root: &Path,
    globals: &Globals,
    name: &str,
    force: bool,
) -> Result<(), ContainerError> {
    let v = volume(root, globals, name)?;
    if !v.running.is_empty() && !force {
        return Err(ContainerError::VolumeInUse {
            name: name.to_string(),
            users: v
                .running
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let dir = globals.storage_root.join("volumes").join(name);
    std::fs::remove_dir_all(&dir).map_err(|e| io("remove volume", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn show_blocks_in_order() {
        let t = "Id=berth@a.service\nActiveState=active\n\nId=berth@b.service\nActiveState=failed\nX=a=b\n";
        let b = parse_show(t);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0]["Id"], "berth@a.service");
        assert_eq!(b[1]["ActiveState"], "failed");
        assert_eq!(b[1]["X"], "a=b");
    }

    #[test]
    fn statuses() {
        let s = |p: &[(&str, &str)]| render_status(&props(p), false);
        assert_eq!(s(&[("ActiveState", "active")]), "running");
        assert_eq!(
            render_status(&props(&[("ActiveState", "active")]), true),
            "paused"
        );
        assert_eq!(s(&[("ActiveState", "activating")]), "starting");
        assert_eq!(
            s(&[
                ("ActiveState", "failed"),
                ("Result", "exit-code"),
                ("ExecMainStatus", "3")
            ]),
            "failed (3)"
        );
        assert_eq!(
            s(&[("ActiveState", "failed"), ("Result", "timeout")]),
            "failed (timeout)"
        );
        assert_eq!(
            s(&[
                ("ActiveState", "inactive"),
                ("ExecMainStartTimestampMonotonic", "123"),
                ("ExecMainStatus", "0")
            ]),
            "exited (0)"
        );
        assert_eq!(
            s(&[
                ("ActiveState", "inactive"),
                ("ExecMainStartTimestampMonotonic", "0")
            ]),
            "stopped"
        );
    }

    #[test]
    fn exit_entries() {
        assert_eq!(
            parse_exit_entry(r#"{"CONTAINER_NAME":"web","EXIT_STATUS":"3","__CURSOR":"x"}"#),
            Some(("web".into(), 3))
        );
        assert_eq!(parse_exit_entry(r#"{"CONTAINER_NAME":"web"}"#), None);
        assert_eq!(parse_exit_entry("nope"), None);
    }

    #[test]
    fn volumes_with_their_users() {
        let root = tempfile::tempdir().unwrap();
        let storage = tempfile::tempdir().unwrap();
        let defs = root.path().join("etc/berth/containers");
        std::fs::create_dir_all(&defs).unwrap();
        std::fs::write(
            defs.join("web.toml"),
            "rootfs = \"/srv/web\"\n[[volume]]\nsource = \"data\"\ntarget = \"/data\"\n",
        )
        .unwrap();
        for v in ["data", "orphan"] {
            std::fs::create_dir_all(storage.path().join("volumes").join(v).join("_data")).unwrap();
        }
        let g = Globals {
            storage_root: storage.path().to_path_buf(),
            ..Globals::default()
        };
        let vols = volumes(root.path(), &g);
        let names: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["data", "orphan"]);
        assert_eq!(vols[0].used_by, ["web"]);
        assert!(vols[0].running.is_empty() && vols[1].used_by.is_empty());
        assert_eq!(vols[0].path, storage.path().join("volumes/data/_data"));
        // Not running: removable without --force.
        remove_volume(root.path(), &g, "data", false).unwrap();
        assert!(!storage.path().join("volumes/data").exists());
        let e = remove_volume(root.path(), &g, "data", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "volume \"data\" does not exist (see `berth volume ls`)"
        );
        // Nothing recorded: not running, with the fix in the message.
        let e = running(root.path(), &g, "web").unwrap_err();
        assert!(e.to_string().contains("systemctl start berth@web"), "{e}");
        assert!(matches!(
            load_definition(root.path(), "nope"),
            Err(ContainerError::NoSuch { .. })
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(render_duration(5), "5s");
        assert_eq!(render_duration(65), "1m5s");
        assert_eq!(render_duration(3700), "1h1m");
        assert_eq!(render_duration(90000), "1d1h");
    }

    #[test]
    fn proc_stat_cpu_ticks() {
        let t = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_proc_stat(t), Some(12));
        assert_eq!(parse_proc_stat("garbage"), None);
    }

    #[test]
    fn cpu_usage() {
        assert_eq!(
            parse_cpu_usage("usage_usec 1234\nuser_usec 1000\n"),
            Some(1234)
        );
        assert_eq!(parse_cpu_usage(""), None);
    }
}
