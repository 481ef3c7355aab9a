//! oci: the OCI runtime command line (`berth-runtime`), runc-compatible in
//! the flags and verbs that containerd, CRI-O, Podman and Docker use.
//!
//! Commands stay thin: parse, build options, call `crate::runtime`, print.
//! No namespace, mount or cgroup logic lives here.

mod commands;
mod fast_args;
pub mod state;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// crun's `--cgroup-manager`: Podman passes `disabled` for
/// `--cgroups=disabled` (libpod `sharedConmonArgs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CgroupManager {
    Cgroupfs,
    Systemd,
    /// No cgroup: the container stays in its caller's cgroup.
    Disabled,
}

/// Log format of `--log`, as runc has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// runc's default is /run/runc; berth's own, so the two never meet.
pub const DEFAULT_ROOT: &str = "/run/berth-runtime";

#[derive(Debug, Parser)]
#[command(
    name = "berth-runtime",
    about = "berth's OCI runtime (runc-compatible command line)",
    version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.0.2"),
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Directory holding the state of each container.
    #[arg(long, default_value = DEFAULT_ROOT, global = true)]
    pub root: PathBuf,
    /// Write errors (and with --debug, progress) to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    #[arg(long = "log-format", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// `linux.cgroupsPath` is `slice:prefix:name`: the container runs in a
    /// transient systemd scope `prefix-name.scope`, started over D-Bus.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// crun's spelling: `systemd` is `--systemd-cgroup`; `disabled` creates
    /// no cgroup.
    #[arg(long = "cgroup-manager", value_enum, global = true)]
    pub cgroup_manager: Option<CgroupManager>,
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility; ignored.
    #[arg(long, global = true, hide = true)]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

impl Cli {
    /// One meaning for the two spellings of the systemd cgroup manager, so
    /// commands test only `systemd_cgroup`.
    pub fn normalize(&mut self) {
        if self.cgroup_manager == Some(CgroupManager::Systemd) {
            self.systemd_cgroup = true;
        }
    }
}

/// `exec`'s options (runc's).
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// process.json holding the process to run.
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long, short = 't')]
    pub tty: bool,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// uid[:gid]
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    #[arg(long = "cap", short = 'c')]
    pub caps: Vec<String>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility; berth always uses pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for runc compatibility; no session keyring is created.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create a container, leaving its process blocked before exec.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container, wait for it and exit with its status.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(long, short = 'd')]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the state of a container as runtime-spec JSON.
    State { id: String },
    /// Send a signal (name or number, default SIGTERM) to a container.
    Kill {
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container and everything it created.
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change the cgroup limits of a container (runc's `update --resources`,
    /// what `podman update` and containerd's shim call).
    Update {
        /// `linux.resources` of the runtime spec as JSON; `-` reads stdin.
        #[arg(long, short = 'r')]
        resources: PathBuf,
        id: String,
    },
    /// List the processes of a container.
    Ps {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print what this runtime supports (runtime-spec features.md).
    Features,
    /// Write a default config.json into the bundle.
    Spec {
        #[arg(long, short = 'b')]
        bundle: Option<PathBuf>,
    },
}

/// Entry point of the `berth-runtime` personality.
pub fn main() -> ExitCode {
    // The waiting personality of `run` skips clap: it must stay small.
    let raw: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if raw.get(1).map(String::as_str) == Some(commands::WAIT_VERB) {
        return match commands::waiter_main(&raw[2..]) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("berth-runtime: {}", crate::log::error_chain(&e));
                ExitCode::from(1)
            }
        };
    }
    let utf8: Option<Vec<String>> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string().ok())
        .collect();
    let mut cli = match utf8
        .and_then(|args| fast_args::parse(&args))
        .map_or_else(Cli::try_parse, Ok)
    {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    cli.normalize();
    if let Some(path) = cli.log.clone() {
        let format = cli.log_format;
        crate::runtime::set_warning_sink(Box::new(move |msg| {
            log_line(&path, format, "warning", msg)
        }));
    }
    match commands::dispatch(&cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = crate::log::error_chain(&e);
            eprintln!("berth-runtime: {msg}");
            if let Some(path) = &cli.log {
                log_line(path, cli.log_format, "error", &msg);
            }
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, each once: runtime errors already carry their
/// source in their own message.
/// Append a line to `--log` the way runc writes it; containerd's shim
/// reads the last error line to explain a failed create.
fn log_line(path: &std::path::Path, format: LogFormat, level: &str, msg: &str) {
    let line = render_log_line(format, level, msg, &rfc3339_now());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// One `--log` line: logrus's JSON or text form, as runc writes them.
pub fn render_log_line(format: LogFormat, level: &str, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!("time=\"{time}\" level={level} msg={:?}", msg),
    }
}

/// The current UTC time as RFC 3339 (no time-zone database needed for UTC).
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    render_rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Seconds since the epoch to `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (Howard
/// Hinnant's days-to-civil algorithm).
pub fn render_rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn containerd_style_invocations_parse() {
        let c = Cli::try_parse_from([
            "berth-runtime",
            "--root",
            "/r",
            "--log",
            "/l",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "c1",
        ])
        .unwrap();
        assert!(c.systemd_cgroup);
        assert!(matches!(c.cmd, Cmd::Create(CreateArgs { ref id, .. }) if id == "c1"));
        let c = Cli::try_parse_from([
            "berth-runtime",
            "exec",
            "--process",
            "/p.json",
            "--detach",
            "--pid-file",
            "/x",
            "c1",
        ])
        .unwrap();
        assert!(matches!(c.cmd, Cmd::Exec(ExecArgs { detach: true, .. })));
        let c =
            Cli::try_parse_from(["berth-runtime", "exec", "c1", "sh", "-c", "echo hi"]).unwrap();
        assert!(
            matches!(c.cmd, Cmd::Exec(ExecArgs { ref args, .. }) if args == &["sh", "-c", "echo hi"])
        );
        let c = Cli::try_parse_from(["berth-runtime", "kill", "--all", "c1", "KILL"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Kill { all: true, .. }));
    }

    #[test]
    fn podman_style_invocations_parse() {
        // conmon puts podman's --runtime-arg flags before the verb.
        let c = Cli::try_parse_from([
            "berth-runtime",
            "--log-format=json",
            "--log",
            "/l",
            "--cgroup-manager",
            "disabled",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "--no-new-keyring",
            "c1",
        ])
        .unwrap();
        assert_eq!(c.cgroup_manager, Some(CgroupManager::Disabled));
        assert_eq!(c.log_format, LogFormat::Json);
        let mut c =
            Cli::try_parse_from(["berth-runtime", "--cgroup-manager=systemd", "create", "c1"])
                .unwrap();
        c.normalize();
        assert!(c.systemd_cgroup);
        let c = Cli::try_parse_from([
            "berth-runtime",
            "update",
            "--resources=/var/tmp/podman123",
            "c1",
        ])
        .unwrap();
        assert!(
            matches!(c.cmd, Cmd::Update { ref resources, .. } if resources == Path::new("/var/tmp/podman123"))
        );
    }

    #[test]
    fn log_lines_are_logrus_shaped() {
        let t = "2025-11-26T00:00:00.000000000Z";
        let j: serde_json::Value = serde_json::from_str(&render_log_line(
            LogFormat::Json,
            "warning",
            "cgroup 'x' has no 'pids.max'",
            t,
        ))
        .unwrap();
        assert_eq!(j["level"], "warning");
        assert_eq!(j["msg"], "cgroup 'x' has no 'pids.max'");
        assert_eq!(j["time"], t);
        assert_eq!(
            render_log_line(LogFormat::Text, "error", "a \"b\"", t),
            format!("time=\"{t}\" level=error msg=\"a \\\"b\\\"\"")
        );
    }

    #[test]
    fn rfc3339_renders_known_instants() {
        assert_eq!(render_rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            render_rfc3339(951_782_400, 5),
            "2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(
            render_rfc3339(1_764_115_200, 0),
            "2025-11-26T00:00:00.000000000Z"
        );
    }
}
