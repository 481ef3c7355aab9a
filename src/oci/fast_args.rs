//! The command lines a shim sends on every container (`create`, `run`,
//! `start`, `state`, `kill`, `delete`), read without clap.
//!
//! Building clap's command tree and dropping it is half of the instructions
//! an exec of `berth-runtime state ID` runs (callgrind), and `run`/`create`
//! pay it in the re-executed copy too (runtime/exe.rs). This reader knows
//! only the exact shapes those verbs take; anything else — another verb, an
//! unknown or combined flag, a bad value, `--help` — returns None and clap
//! parses the line, so errors and help stay clap's. The tests check that
//! both readers agree on every shape this one accepts.

use std::path::PathBuf;

use super::{CgroupManager, Cli, Cmd, CreateArgs, LogFormat};

/// The line as clap would parse it, or None to let clap do it.
pub fn parse(args: &[String]) -> Option<Cli> {
    let mut cli = Cli {
        root: PathBuf::from(super::DEFAULT_ROOT),
        log: None,
        log_format: LogFormat::Text,
        systemd_cgroup: false,
        cgroup_manager: None,
        debug: false,
        rootless: None,
        cmd: Cmd::Features,
    };
    let mut verb: Option<&str> = None;
    let mut flags = Flags::default();
    let mut positionals: Vec<&str> = Vec::new();
    let mut it = args.iter().map(String::as_str);
    while let Some(arg) = it.next() {
        if arg == "--" || arg == "-" || !arg.starts_with('-') {
            if arg == "--" {
                return None;
            }
            match verb {
                None => verb = Some(arg),
                Some(_) => positionals.push(arg),
            }
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (arg, None),
        };
        // A value in the next word never looks like a flag (clap's rule).
        let mut value = || match inline {
            Some(v) => Some(v),
            None => it.next().filter(|v| !v.starts_with('-')),
        };
        // Global flags go anywhere (clap's `global = true`).
        match name {
            "--root" => cli.root = PathBuf::from(value()?),
            "--log" => cli.log = Some(PathBuf::from(value()?)),
            "--log-format" => {
                cli.log_format = match value()? {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return None,
                }
            }
            "--cgroup-manager" => {
                cli.cgroup_manager = Some(match value()? {
                    "cgroupfs" => CgroupManager::Cgroupfs,
                    "systemd" => CgroupManager::Systemd,
                    "disabled" => CgroupManager::Disabled,
                    _ => return None,
                })
            }
            "--rootless" => cli.rootless = Some(value()?.to_string()),
            "--systemd-cgroup" | "--debug" if inline.is_some() => return None,
            "--systemd-cgroup" => cli.systemd_cgroup = true,
            "--debug" => cli.debug = true,
            _ => flags.take(verb?, name, inline.is_some(), value)?,
        }
    }
    cli.cmd = command(verb?, flags, &positionals)?;
    Some(cli)
}

/// The verbs' own flags, as seen so far.
#[derive(Default)]
struct Flags {
    bundle: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    console_socket: Option<PathBuf>,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: Option<u32>,
    detach: bool,
    keep: bool,
    all: bool,
    force: bool,
}

impl Flags {
    /// Take flag `name` of `verb` (with its value from `value`), or None
    /// when this reader does not know it there.
    fn take<'a>(
        &mut self,
        verb: &str,
        name: &str,
        inline: bool,
        mut value: impl FnMut() -> Option<&'a str>,
    ) -> Option<()> {
        let creates = matches!(verb, "create" | "run");
        match (name, creates) {
            ("--bundle" | "-b", true) => self.bundle = Some(PathBuf::from(value()?)),
            ("--pid-file", true) => self.pid_file = Some(PathBuf::from(value()?)),
            ("--console-socket", true) => self.console_socket = Some(PathBuf::from(value()?)),
            ("--preserve-fds", true) => self.preserve_fds = Some(value()?.parse().ok()?),
            _ if inline => return None,
            ("--no-pivot", true) => self.no_pivot = true,
            ("--no-new-keyring", true) => self.no_new_keyring = true,
            ("--detach" | "-d", _) if verb == "run" => self.detach = true,
            ("--keep", _) if verb == "run" => self.keep = true,
            ("--all" | "-a", _) if verb == "kill" => self.all = true,
            ("--force" | "-f", _) if verb == "delete" => self.force = true,
            _ => return None,
        }
        Some(())
    }
}

fn command(verb: &str, f: Flags, positionals: &[&str]) -> Option<Cmd> {
    let create = || CreateArgs {
        bundle: f.bundle.clone().unwrap_or_else(|| PathBuf::from(".")),
        pid_file: f.pid_file.clone(),
        console_socket: f.console_socket.clone(),
        no_pivot: f.no_pivot,
        no_new_keyring: f.no_new_keyring,
        preserve_fds: f.preserve_fds.unwrap_or(0),
        id: positionals[0].to_string(),
    };
    let id = || positionals[0].to_string();
    Some(match (verb, positionals.len()) {
        ("create", 1) => Cmd::Create(create()),
        ("run", 1) => Cmd::Run {
            create: create(),
            detach: f.detach,
            keep: f.keep,
        },
        ("start", 1) => Cmd::Start { id: id() },
        ("state", 1) => Cmd::State { id: id() },
        ("kill", 1 | 2) => Cmd::Kill {
            all: f.all,
            id: id(),
            signal: positionals.get(1).map(|s| s.to_string()),
        },
        ("delete", 1) => Cmd::Delete {
            force: f.force,
            id: id(),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    /// What clap makes of the line, as text (Cli has no PartialEq).
    fn by_clap(line: &str) -> String {
        let mut all = vec!["berth-runtime".to_string()];
        all.extend(argv(line));
        let mut cli = Cli::try_parse_from(all).expect(line);
        cli.normalize();
        format!("{cli:?}")
    }

    fn by_us(line: &str) -> Option<String> {
        parse(&argv(line)).map(|mut c| {
            c.normalize();
            format!("{c:?}")
        })
    }

    #[test]
    fn every_line_it_reads_clap_reads_the_same() {
        // What containerd's runc shim, Podman and Docker send, and variants.
        for line in [
            "create --bundle /b --pid-file /p x",
            "--root /r --log /l --log-format json create --bundle /b --pid-file /p --console-socket /s x",
            "--root=/r create -b /b --preserve-fds=3 --no-pivot --no-new-keyring x",
            "--systemd-cgroup --debug create x",
            "--cgroup-manager systemd run -d --keep -b /b x",
            "--cgroup-manager=disabled --rootless false run --bundle=/b x",
            "run x --root /late",
            "start x",
            "--root /r state x",
            "kill x",
            "kill --all x KILL",
            "kill -a x 9",
            "delete x",
            "--root /r delete --force x",
            "delete -f x --log-format text",
        ] {
            assert_eq!(by_us(line), Some(by_clap(line)), "{line}");
        }
    }

    #[test]
    fn what_it_does_not_know_is_left_to_clap() {
        for line in [
            "",
            "--help",
            "create --help",
            "create",
            "create x y",
            "create --bundle",
            "create --unknown x",
            "create -db /b x",
            "--log-format yaml state x",
            "--cgroup-manager other state x",
            "create --preserve-fds many x",
            "start --force x",
            "delete --all x",
            "kill x TERM extra",
            "--debug=yes state x",
            "exec x true",
            "features",
            "state -- x",
            "--root --debug state x",
            "create --bundle -x x",
        ] {
            assert!(by_us(line).is_none(), "{line}");
        }
    }
}
