//! containers: the status and inventory the `berth` CLI reports about
//! containers from outside their supervisor: the record
//! (`/run/berth/containers/NAME/state.json`), whether a container runs, the
//! unit's state as systemd reports it (`systemd::ctl`), the `berth ps` rows,
//! the processes of its payload cgroup and its usage (read by `cgroup`).
//! `berth exec`'s confinement is `supervise::exec`'s, named volumes are
//! `supervise::volumes`'.
//!
//! Must not start, stop or restart containers itself (systemd does: `unit_jobs`
//! asks it), nor change what a running container looks like. The parsers
//! (`render_status`, `parse_exit_entry`, `parse_proc_stat`) are pure and
//! unit-tested; the rest reads files and asks systemd.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::{Definition, Globals, ImageSource};
use crate::supervise::{Paths, State};
use crate::systemd::ctl::{self, Verb};

/// Errors of this module; each names the container, unit or path.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no container \"{name}\": no definition in {root}/etc/berth/containers, /run/berth/containers or /usr/lib/berth/containers (create /etc/berth/containers/{name}.toml, then `systemctl daemon-reload`)")]
    NoSuch { name: String, root: PathBuf },
    #[error("definition \"{name}\" is invalid (run `berth check {name}`):\n{diagnostics}")]
    Invalid { name: String, diagnostics: String },
    #[error("container \"{name}\" is not running (start it with `systemctl start berth@{name}` or `berth start {name}`)")]
    NotRunning { name: String },
    #[error("systemd: `{args}` failed: {reason}")]
    Systemd { args: String, reason: String },
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    #[error("filter \"{filter}\": {reason}")]
    Filter { filter: String, reason: String },
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

/// The properties [`SHOW_PROPS`] of the units of all `names` (one D-Bus
/// connection), keyed by container name. Without systemd as the init system
/// there are no units: every name maps to nothing, and callers fall back on
/// berth's own records, so `berth ps` still lists ad hoc runs.
pub fn show_units(
    names: &[String],
) -> Result<HashMap<String, HashMap<String, String>>, ContainerError> {
    if names.is_empty() || !ctl::booted(Path::new("/")) {
        return Ok(HashMap::new());
    }
    let units: Vec<String> = names.iter().map(|n| unit_name(n)).collect();
    let props: Vec<&str> = SHOW_PROPS.split(',').collect();
    let blocks = ctl::show(&units, &props).map_err(|e| ContainerError::Systemd {
        args: format!("show -p {SHOW_PROPS} berth@….service"),
        reason: e.to_string(),
    })?;
    Ok(names.iter().cloned().zip(blocks).collect())
}

/// `systemctl VERB berth@NAME.service…`: systemd's jobs, which must all end
/// `done`.
pub fn unit_jobs(verb: Verb, names: &[String]) -> Result<(), ContainerError> {
    let units: Vec<String> = names.iter().map(|n| unit_name(n)).collect();
    ctl::jobs(verb, &units).map_err(|e| ContainerError::Systemd {
        args: format!("{} {}", verb.as_str(), units.join(" ")),
        reason: format!(
            "{e} (see `systemctl status {}` and `journalctl -u {}`)",
            units.join(" "),
            units.join(" -u ")
        ),
    })
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
    ctl::journal_entries(
        "BERTH_EVENT=exited",
        &["CONTAINER_NAME", "EXIT_STATUS", "EXIT_CODE"],
    )
    .iter()
    .filter_map(|line| parse_exit_entry(line))
    .collect()
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
    /// Its addresses on its bridge networks (first network first).
    pub addresses: Vec<std::net::IpAddr>,
    /// Its published ports as written (`8080:80/tcp`).
    pub ports: Vec<String>,
    /// Its definition's `labels`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its definition's `[service] group`.
    pub group: Option<String>,
    /// Docker's State.OOMKilled: the kernel's OOM killer ended a process
    /// of the running container (the record's count).
    pub oom_killed: bool,
}

/// One `berth ps --filter label=KEY[=VALUE]` (Docker's spelling; `label` is
/// the one filter berth knows, so another name is an error, not a no-op).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    /// `None`: the label need only be present.
    pub value: Option<String>,
}

impl LabelFilter {
    pub fn parse(s: &str) -> Result<LabelFilter, ContainerError> {
        let bad = |reason: &str| ContainerError::Filter {
            filter: s.to_string(),
            reason: reason.to_string(),
        };
        let Some(rest) = s.strip_prefix("label=") else {
            return Err(bad("expected label=KEY or label=KEY=VALUE"));
        };
        let (key, value) = match rest.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (rest, None),
        };
        if key.is_empty() {
            return Err(bad("the label's name is empty"));
        }
        Ok(LabelFilter {
            key: key.to_string(),
            value,
        })
    }

    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        match (labels.get(&self.key), &self.value) {
            (Some(v), Some(want)) => v == want,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// The image column: the reference, or `rootfs:DIR`.
pub fn image_label(def: Option<&Definition>, st: Option<&State>) -> String {
    if let Some(i) = st.and_then(|s| s.image.clone()) {
        return i;
    }
    match def.map(|d| &d.image) {
        Some(ImageSource::Image(r)) => r.to_string(),
        Some(ImageSource::Build(b)) => b.image.to_string(),
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
            .and_then(|c| crate::cgroup::read_state(c).ok())
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
        // Addresses only while it runs: a stopped container's record may
        // be stale, its leases are gone.
        let (addresses, ports) = match (&st, live.is_some()) {
            (Some(st), true) => (
                st.networks
                    .iter()
                    .flat_map(|a| std::iter::once(a.ipv4).chain(a.ipv6))
                    .collect(),
                st.published.clone(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        // Only while it runs: the record of a stopped one is gone or stale.
        let oom_killed = live.is_some() && st.as_ref().is_some_and(|s| s.oom_kills > 0);
        if oom_killed {
            status.push_str(" (OOMKilled)");
        }
        rows.push(Row {
            labels: def.as_ref().map(|d| d.labels.clone()).unwrap_or_default(),
            group: def.as_ref().and_then(|d| d.service.group.clone()),
            oom_killed,
            addresses,
            ports,
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
    let mut pids = crate::cgroup::pids(cgroup)?;
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

/// A container's cgroup usage, for `berth stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    pub name: String,
    /// What payload/ uses; its `memory_max` is the container's limit
    /// under the unit's (below).
    #[serde(flatten)]
    pub usage: crate::cgroup::Usage,
    /// The container's task limit under the unit's `pids.max`.
    pub pids_max: Option<u64>,
}

/// Read the usage of `cgroup` for container `name`, and its limits from
/// the unit's cgroup `unit` (the only limits it has in service mode:
/// `cgroup::limits`) less the supervisor's share, so that a `systemctl
/// set-property` shows at once.
pub fn stats(name: &str, cgroup: &Path, unit: Option<&Path>) -> Stats {
    let mut usage = crate::cgroup::usage(cgroup);
    let unit_max = |file: &str| {
        let text = std::fs::read_to_string(unit?.join(file)).ok()?;
        text.trim().parse::<u64>().ok()
    };
    use crate::cgroup::limits;
    if let Some(m) = unit_max("memory.max") {
        usage.memory_max = Some(limits::container_memory(m));
    }
    Stats {
        name: name.to_string(),
        usage,
        pids_max: unit_max("pids.max").map(limits::container_tasks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_filters() {
        let labels: std::collections::BTreeMap<String, String> =
            [("tier".to_string(), "web".to_string())].into();
        let f = |s: &str| LabelFilter::parse(s).unwrap();
        assert!(f("label=tier").matches(&labels));
        assert!(f("label=tier=web").matches(&labels));
        assert!(!f("label=tier=db").matches(&labels));
        assert!(!f("label=owner").matches(&labels));
        // A value may itself hold "=": only the first one splits.
        assert_eq!(f("label=a=b=c").value.as_deref(), Some("b=c"));
        assert!(LabelFilter::parse("name=web").is_err());
        assert!(LabelFilter::parse("label=").is_err());
    }

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
    fn a_container_without_a_record_is_not_running() {
        let root = tempfile::tempdir().unwrap();
        let defs = root.path().join("etc/berth/containers");
        std::fs::create_dir_all(&defs).unwrap();
        std::fs::write(defs.join("web.toml"), "rootfs = \"/srv/web\"\n").unwrap();
        let g = Globals::default();
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
}
