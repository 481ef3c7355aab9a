//! Container commands: `ps`, `inspect` of a container, `logs`,
//! `start|stop|restart`, `top`, `stats`, `pause|unpause`, `auto-update`.
//!
//! Thin: systemd owns starting, stopping and logs (`systemctl`,
//! `journalctl`), the library (`crate::containers`) reads records and
//! cgroups; this file parses arguments and prints.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::config::{load_globals, Globals};
use crate::containers::{self as ct, ContainerError};
use crate::systemd::ctl::{self, LogOptions, Verb};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// List containers with their state (from systemd), image, PID and uptime
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth ps                 running (and failed) containers\n  berth ps -a              every defined container, stopped ones too\n  berth ps --group app     the members of berth-app.target\n  berth ps --format json   for scripts"
)]
pub struct PsArgs {
    /// Show every defined container, stopped ones too
    #[arg(short, long)]
    pub all: bool,
    /// Only the members of this group (`[service] group`, berth-GROUP.target)
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Only containers matching: label=KEY or label=KEY=VALUE (repeatable:
    /// all must match, as in `docker ps --filter`)
    #[arg(short = 'f', long = "filter", value_name = "label=KEY[=VALUE]")]
    pub filter: Vec<String>,
}

/// Show the journal of a container (its output and berth's events)
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth logs web           everything web printed since boot\n  berth logs -f -n 20 web  the last 20 lines, then follow\n  berth logs -f web db     both, interleaved, each line prefixed \"web |\" or \"db  |\"\n\nThis runs `journalctl -u berth@NAME.service`; any journalctl filter works there too."
)]
pub struct LogsArgs {
    /// Keep printing new lines as they come
    #[arg(short, long)]
    pub follow: bool,
    /// Show only the last N lines
    #[arg(short = 'n', long = "tail", value_name = "N")]
    pub lines: Option<u64>,
    /// Prefix each line with its time and origin (journalctl's short-iso output)
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only lines since this time (journalctl --since syntax: "10 min ago", "2024-01-01 10:00")
    #[arg(long)]
    pub since: Option<String>,
    /// Containers; with several, their lines are interleaved in time order,
    /// each prefixed with its name
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

/// Start, stop or restart containers through systemd
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth start web          same as `systemctl start berth@web`\n  berth stop web db\n  berth restart web"
)]
pub struct UnitArgs {
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

/// Show the processes of a running container
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  berth top web\n\nPIDs are the host's; `berth exec web ps` shows the container's own."
)]
pub struct TopArgs {
    /// Container name (a definition in /etc/berth/containers/NAME.toml)
    pub name: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Show resource usage of running containers (one shot)
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth stats              every running container\n  berth stats web --format json\n\nNumbers come from the container's cgroup (memory.current, pids.current, cpu.stat),\nits limits from its unit's (memory.max, pids.max, less the supervisor's share), so\nsystemctl set-property shows at once; without the memory controller MEM shows \"-\"."
)]
pub struct StatsArgs {
    /// Containers to show (default: every running one)
    pub names: Vec<String>,
    /// Print once and exit (the default; streaming is not implemented)
    #[arg(long, default_value_t = true)]
    pub no_stream: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Freeze or thaw every process of a running container (cgroup.freeze)
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth pause web\n  berth unpause web\n\nA paused container's unit stays active; `berth ps` shows it as paused."
)]
pub struct PauseArgs {
    /// Container name (a definition in /etc/berth/containers/NAME.toml)
    pub name: String,
}

/// Show a container (definition, record, unit) or else an image, as JSON
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth inspect web                   the container web\n  berth inspect docker.io/library/busybox:latest   an image"
)]
pub struct InspectArgs {
    /// Container name, or an image reference or digest
    pub target: String,
    #[command(flatten)]
    pub store: super::image::StoreArgs,
}

fn globals(root: &Path) -> anyhow::Result<Globals> {
    Ok(load_globals(root)?)
}

pub fn ps(root: &Path, args: PsArgs) -> anyhow::Result<ExitCode> {
    let g = globals(root)?;
    let filters = args
        .filter
        .iter()
        .map(|f| ct::LabelFilter::parse(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = ct::list(root, &g, args.all)?;
    rows.retain(|r| filters.iter().all(|f| f.matches(&r.labels)));
    if let Some(group) = &args.group {
        rows.retain(|r| r.group.as_ref() == Some(group));
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let dash = |v: Vec<String>| match v.is_empty() {
        true => "-".to_string(),
        false => v.join(","),
    };
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.status.clone(),
                r.image.clone(),
                r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                r.uptime_seconds
                    .map(ct::render_duration)
                    .unwrap_or_else(|| "-".into()),
                dash(r.addresses.iter().map(|a| a.to_string()).collect()),
                dash(r.ports.clone()),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "STATUS",
            "IMAGE",
            "PID",
            "UPTIME",
            "ADDRESSES",
            "PORTS",
        ],
        &table,
    );
    Ok(ExitCode::SUCCESS)
}

fn print_table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) {
    let mut w = head.map(|h| h.len());
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn logs(root: &Path, args: LogsArgs) -> anyhow::Result<ExitCode> {
    // Logs outlive definitions (a removed container's journal is still
    // there), so only an invalid name is refused here.
    for name in &args.names {
        if crate::config::validate_name(name).is_err()
            || (crate::config::load_definition(root, name)
                .ok()
                .flatten()
                .is_none()
                && !ct::recorded_names(root).contains(name)
                && !ctl::journal_has(&ct::unit_name(name)))
        {
            return Err(ContainerError::NoSuch {
                name: name.clone(),
                root: root.to_path_buf(),
            }
            .into());
        }
    }
    let opts = LogOptions {
        timestamps: args.timestamps,
        follow: args.follow,
        lines: args.lines,
        since: args.since.clone(),
    };
    if let [name] = args.names.as_slice() {
        return Err(ctl::exec_logs(&ct::unit_name(name), &opts)).context("cannot run journalctl");
    }
    super::logs::interleaved(&args.names, &opts)
}

pub fn unit_verb(root: &Path, verb: Verb, args: UnitArgs) -> anyhow::Result<ExitCode> {
    for n in &args.names {
        ct::load_definition(root, n)?;
    }
    ct::unit_jobs(verb, &args.names)?;
    Ok(ExitCode::SUCCESS)
}

/// The running container `name`, with the unknown-name error first.
fn live(root: &Path, g: &Globals, name: &str) -> anyhow::Result<ct::Running> {
    match ct::running(root, g, name) {
        Ok(r) => Ok(r),
        Err(e) => {
            ct::load_definition(root, name)?;
            Err(e.into())
        }
    }
}

fn payload(r: &ct::Running) -> anyhow::Result<&std::path::Path> {
    r.cgroup.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "container \"{}\" has no cgroup of its own (it was not started with a delegated cgroup)",
            r.name
        )
    })
}

pub fn top(root: &Path, args: TopArgs) -> anyhow::Result<ExitCode> {
    let g = globals(root)?;
    let r = live(root, &g, &args.name)?;
    let procs = ct::processes(payload(&r)?)?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&procs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 4]> = procs
        .iter()
        .map(|p| {
            [
                p.pid.to_string(),
                p.user.clone(),
                format!("{:.2}s", p.cpu_seconds),
                p.command.clone(),
            ]
        })
        .collect();
    print_table(&["PID", "USER", "TIME", "COMMAND"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", U[i])
    }
}

pub fn stats(root: &Path, args: StatsArgs) -> anyhow::Result<ExitCode> {
    let g = globals(root)?;
    let names = if args.names.is_empty() {
        ct::list(root, &g, false)?
            .into_iter()
            .filter(|r| r.pid.is_some())
            .map(|r| r.name)
            .collect()
    } else {
        args.names.clone()
    };
    let mut out = Vec::new();
    for n in &names {
        let r = live(root, &g, n)?;
        out.push(ct::stats(n, payload(&r)?, r.state.unit_cgroup.as_deref()));
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 5]> = out
        .iter()
        .map(|s| {
            let (name, u) = (&s.name, &s.usage);
            let mem = match (u.memory_bytes, u.memory_max) {
                (Some(c), Some(m)) => format!("{} / {}", human_bytes(c), human_bytes(m)),
                (Some(c), None) => human_bytes(c),
                _ => "-".into(),
            };
            [
                name.clone(),
                u.cpu_usec
                    .map(|c| format!("{:.2}s", c as f64 / 1e6))
                    .unwrap_or_else(|| "-".into()),
                mem,
                match s.pids_max {
                    Some(m) => format!("{} / {m}", u.pids),
                    None => u.pids.to_string(),
                },
                if u.frozen { "paused" } else { "running" }.into(),
            ]
        })
        .collect();
    print_table(&["NAME", "CPU", "MEM", "PIDS", "STATE"], &rows);
    Ok(ExitCode::SUCCESS)
}

pub fn pause(root: &Path, args: PauseArgs, frozen: bool) -> anyhow::Result<ExitCode> {
    let g = globals(root)?;
    let r = live(root, &g, &args.name)?;
    let cg = payload(&r)?;
    crate::cgroup::freeze(cg, frozen).with_context(|| {
        format!(
            "cannot {} container \"{}\"",
            if frozen { "pause" } else { "unpause" },
            args.name
        )
    })?;
    let now = crate::cgroup::read_state(cg)?;
    println!(
        "{}: {}",
        args.name,
        if now.frozen { "paused" } else { "running" }
    );
    Ok(ExitCode::SUCCESS)
}

/// `berth inspect`: a container when the name is one, else an image.
pub fn inspect(root: &Path, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let g = globals(root)?;
    let target = args.target.clone();
    let name = &target;
    let is_name = crate::config::validate_name(name).is_ok();
    let def = if is_name {
        match crate::config::load_definition(root, name) {
            Ok(d) => d,
            Err(_) => Some(ct::load_definition(root, name)?),
        }
    } else {
        None
    };
    let st = if is_name {
        ct::state(root, &g, name)
    } else {
        None
    };
    if def.is_none() && st.is_none() {
        return super::image::inspect(
            root,
            super::image::InspectArgs {
                image: args.target,
                store: args.store,
            },
        )
        .with_context(|| format!("no container \"{name}\" either"));
    }
    let props = ct::show_units(std::slice::from_ref(name))
        .ok()
        .and_then(|mut m| m.remove(name))
        .unwrap_or_default();
    let live = ct::running(root, &g, name).ok();
    let paused = live
        .as_ref()
        .and_then(|r| r.cgroup.as_ref())
        .and_then(|c| crate::cgroup::read_state(c).ok())
        .is_some_and(|s| s.frozen);
    let out = serde_json::json!({
        "name": name,
        "status": ct::render_status(&props, paused),
        "running": live.is_some(),
        // Docker's State.OOMKilled, while it runs (the record's count).
        "oom_killed": live.is_some() && st.as_ref().is_some_and(|s| s.oom_kills > 0),
        "pid": live.as_ref().map(|r| r.pid),
        "cgroup": live.as_ref().and_then(|r| r.cgroup.clone()),
        "image": ct::image_label(def.as_ref(), st.as_ref()),
        "labels": def.as_ref().map(|d| d.labels.clone()).unwrap_or_default(),
        "annotations": def.as_ref().map(|d| d.annotations.clone()).unwrap_or_default(),
        "definition": def.as_ref().map(definition_json),
        "state": st,
        "unit": {
            "name": ct::unit_name(name),
            "properties": props.iter().collect::<std::collections::BTreeMap<_, _>>(),
        },
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// `[build]` as `berth inspect` shows it (null for other image sources).
fn build_json(image: &crate::config::ImageSource) -> serde_json::Value {
    match image {
        crate::config::ImageSource::Build(b) => serde_json::json!({
            "context": b.context,
            "file": b.file,
            "args": b.args,
            "target": b.target,
        }),
        _ => serde_json::Value::Null,
    }
}

fn definition_json(d: &crate::config::Definition) -> serde_json::Value {
    use crate::config::{ImageSource, Seccomp, VolumeSource};
    serde_json::json!({
        "source_path": d.source_path,
        "dropins": d.dropins,
        "hash": d.hash,
        "image": d.image.reference().map(|r| r.to_string()),
        "rootfs": match &d.image { ImageSource::Rootfs(p) => Some(p.clone()), _ => None },
        "build": build_json(&d.image),
        "command": d.command,
        "entrypoint": d.entrypoint,
        "workdir": d.workdir,
        "user": d.user.as_ref().map(|u| u.to_string()),
        "hostname": d.hostname,
        "environment": d.environment,
        "environment_files": d.environment_files,
        "read_only": d.read_only,
        "init": d.init,
        "network": {
            "mode": d.network.mode.as_str(),
            "networks": d.network.networks,
            "publish": d.network.publish.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "ip": d.network.ip,
            "aliases": d.network.aliases,
            "dns": d.network.dns,
            "dns_search": d.network.dns_search,
            "extra_hosts": d.network.extra_hosts.iter().map(|(n, a)| format!("{n}:{a}")).collect::<Vec<_>>(),
        },
        "volumes": d.volumes.iter().map(|v| serde_json::json!({
            "source": match &v.source {
                VolumeSource::Named(n) => n.clone(),
                VolumeSource::Bind(p) => p.display().to_string(),
                VolumeSource::Anonymous => String::new(),
            },
            "anonymous": v.source == VolumeSource::Anonymous,
            "propagation": v.propagation.map(|p| p.as_str()),
            "chown": v.chown,
            "target": v.target,
            "read_only": v.read_only,
        })).collect::<Vec<_>>(),
        "tmpfs": d.tmpfs.iter().map(|t| t.target.clone()).collect::<Vec<_>>(),
        "resources": {
            "memory": d.resources.memory,
            "cpus": d.resources.cpus,
            "pids": d.resources.pids,
            "io_weight": d.resources.io_weight,
            "memory_swap": d.resources.memory_swap,
            "memory_reservation": d.resources.memory_reservation,
            "cpuset": d.resources.cpuset,
            "cpu_weight": d.resources.cpu_weight,
            "io_max": d.resources.io_max.iter().map(|m| serde_json::json!({
                "device": m.device,
                "rbps": m.rbps,
                "wbps": m.wbps,
                "riops": m.riops,
                "wiops": m.wiops,
            })).collect::<Vec<_>>(),
        },
        "security": {
            "cap_add": d.security.cap_add,
            "cap_drop": d.security.cap_drop,
            "no_new_privileges": d.security.no_new_privileges,
            "seccomp": match &d.security.seccomp {
                Seccomp::Default => "default".to_string(),
                Seccomp::Unconfined => "unconfined".to_string(),
                Seccomp::Profile(p) => p.display().to_string(),
            },
            "userns": d.security.userns.as_str(),
        },
        "health": d.health.as_ref().map(|h| serde_json::json!({
            "command": h.command,
            "interval_seconds": h.interval.as_secs_f64(),
            "timeout_seconds": h.timeout.as_secs_f64(),
            "retries": h.retries,
            "start_period_seconds": h.start_period.as_secs_f64(),
            "start_interval_seconds": h.start_interval.as_secs_f64(),
            "on_failure": h.on_failure.as_str(),
        })),
        "service": {
            "restart": d.service.restart.as_str(),
            "requires": d.service.requires,
            "after": d.service.after,
            "wanted_by": d.service.wanted_by,
            "stop_timeout_seconds": d.service.stop_timeout.as_secs_f64(),
            "notify": d.service.notify.as_str(),
            "pull": d.service.pull.as_str(),
            "auto_update": d.service.auto_update,
            "group": d.service.group,
            "wants": d.service.wants,
            "binds_to": d.service.binds_to,
            "part_of": d.service.part_of,
            "before": d.service.before,
            "stop_signal": d.service.stop_signal,
            "reload_signal": match &d.service.reload {
                Some(crate::config::Reload::Signal(s)) => Some(s),
                _ => None,
            },
            "reload_command": match &d.service.reload {
                Some(crate::config::Reload::Command(c)) => Some(c),
                _ => None,
            },
            "restart_seconds": d.service.restart_sec.map(|d| d.as_secs_f64()),
            "start_limit_burst": d.service.start_limit_burst,
        },
        // The credential's name and where it goes, never its content.
        "secrets": d.secrets.iter().map(|s| serde_json::json!({
            "credential": s.credential,
            "target": s.env.is_none().then_some(&s.target),
            "env": s.env,
            "encrypted": s.encrypted,
        })).collect::<Vec<_>>(),
        "labels": d.labels,
        "annotations": d.annotations,
        "timezone": d.timezone.as_ref().map(|t| t.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        crate::cli::Cli::command().debug_assert();
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(3 << 20), "3.0MiB");
    }
}
