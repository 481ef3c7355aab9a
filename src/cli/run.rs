//! `berth run`: service mode (`--systemd NAME`, the main process of
//! `berth@NAME.service`) and ad hoc runs
//! (`berth run [--rm] [-it] [-d] [--name N] IMAGE|--rootfs DIR [CMD…]`):
//! in the foreground, supervised by this process (under systemd in a
//! transient scope `berth-run-NAME.scope` it asks for over D-Bus), or with
//! `-d` handed to systemd as `berth@NAME.service`.
//!
//! Thin: builds options and calls `crate::supervise`. Ad hoc runs become a
//! definition first, so they are validated exactly like files in /etc.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::supervise::{self, RunOptions};
use crate::systemd::ctl::{self, Verb};

#[derive(Debug, clap::Args)]
#[command(
    about = "Run a container: ad hoc in the foreground, or (--systemd NAME) as the main process of berth@NAME.service",
    after_help = "Examples:\n  berth run --rootfs /srv/web-root sh -c 'echo hi'\n  berth run --name web 127.0.0.1:5000/web:1 nginx -T\n  berth run --rm -e TZ=UTC -v /srv/conf:/etc/app:ro -v appdata:/data -m 256M 127.0.0.1:5000/app:2\n  berth run --systemd web      (what berth@web.service runs)"
)]
pub struct RunArgs {
    /// Run definition NAME under systemd (Type=notify, delegated cgroup)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["rm", "detach", "name", "rootfs", "tty", "interactive"])]
    pub systemd: Option<String>,
    /// Remove the container when it exits (in the foreground nothing is ever
    /// kept; with -d its definition in /run/berth/containers goes too)
    #[arg(long)]
    pub rm: bool,
    /// Run in the background as berth@NAME.service: the definition goes to
    /// /run/berth/containers/NAME.toml (gone at reboot) and systemd starts it
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Container name (default: run-PID)
    #[arg(long)]
    pub name: Option<String>,
    /// Pass stdin to the container (otherwise it reads /dev/null)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal, relayed to this one
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Use this directory as the root filesystem instead of an image
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Internal: already running in its own delegated scope (as under
    /// `systemd-run --scope -p Delegate=yes`)
    #[arg(long, hide = true)]
    pub scoped: bool,
    #[command(flatten)]
    pub flags: super::run_flags::DefinitionFlags,
    /// IMAGE then the command and its arguments (with --rootfs: only the command)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE|CMD"
    )]
    pub args: Vec<String>,
}

pub fn run(root: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(name) = &args.systemd {
        if !args.flags.is_empty() {
            bail!("berth run --systemd runs the definition as written: options such as -e or -v belong in /etc/berth/containers/{name}.toml (or a drop-in)");
        }
        return Ok(service(root, name));
    }
    if args.flags.restart.is_some() && !args.detach {
        bail!("--restart needs -d: systemd restarts a detached container (berth@NAME.service); a foreground run ends when its command does");
    }
    if args.tty && args.detach {
        bail!("berth run -t cannot be combined with -d (a detached container has no terminal to attach)");
    }
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    let mut table = toml::Table::new();
    let mut rest = args.args.clone();
    match &args.rootfs {
        Some(dir) => {
            let dir = std::path::absolute(dir).with_context(|| format!("rootfs {dir:?}"))?;
            table.insert("rootfs".into(), dir.display().to_string().into());
        }
        None => {
            if rest.is_empty() {
                bail!("berth run needs an IMAGE or --rootfs DIR");
            }
            table.insert("image".into(), rest.remove(0).into());
        }
    }
    if !rest.is_empty() {
        table.insert(
            "command".into(),
            toml::Value::Array(rest.into_iter().map(toml::Value::from).collect()),
        );
    }
    args.flags
        .apply(&mut table, &|k| std::env::var(k).ok())
        .map_err(|e| anyhow::anyhow!("berth run: {e}"))?;
    // The definition is validated from a private root, as a file would be.
    let tmp = tempfile_dir()?;
    let dir = tmp.join("etc/berth/containers");
    crate::private::dir(&dir).with_context(|| format!("create {dir:?}"))?;
    let file = dir.join(format!("{name}.toml"));
    crate::private::write_atomic(
        &dir.join(".tmp"),
        &file,
        toml::to_string(&table)?.as_bytes(),
    )
    .with_context(|| format!("write the definition of \"{name}\""))?;
    // `--network NAME` names a network of the real root: its file comes
    // along, so the private root knows it.
    copy_network_files(root, &tmp, &args.flags.network);
    let def = supervise::load(&tmp, &name);
    let _ = std::fs::remove_dir_all(&tmp);
    let def = def.map_err(|e| match e {
        // The file is ours, not the user's: name the keys, which the option
        // help and the man page both use, not a temporary path.
        supervise::SuperviseError::Invalid { diagnostics, .. } => {
            let file = dir.join(format!("{name}.toml")).display().to_string();
            let lines: Vec<String> = diagnostics
                .lines()
                .map(|l| strip_position(l, &file))
                .collect();
            anyhow::anyhow!(
                "the arguments of berth run make an invalid definition:\n{}",
                lines.join("\n")
            )
        }
        other => other.into(),
    })?;
    if args.detach {
        return detach(root, &name, &toml::to_string(&table)?, args.rm);
    }
    // Under systemd, a foreground run gets a transient scope in berth.slice
    // with a delegated cgroup, like a service's: accounting, limits and
    // `systemctl stop berth-run-NAME.scope` work for it too. This process
    // moves into it before anything is cloned; the bus call's event loop is
    // gone when it returns (runtime::create checks the thread count).
    let scoped = args.scoped
        || (root == Path::new("/") && ctl::booted(root) && enter_scope(&name, &def.resources));
    let opts = RunOptions {
        root: root.to_path_buf(),
        systemd: false,
        command: None,
        tty: args.tty,
        delegated: scoped,
        stdin: args.interactive || args.tty,
    };
    let code = supervise::run_definition(&opts, &def)?;
    Ok(exit(code))
}

/// Copy the files of the networks `names` from `root` into the private
/// root `tmp`; a name without a file is left for validation to report.
fn copy_network_files(root: &Path, tmp: &Path, names: &[String]) {
    let (defs, _) = crate::config::load_all_networks(root);
    for d in defs.iter().filter(|d| names.contains(&d.name)) {
        if let Some(src) = &d.source_path {
            let dir = tmp.join(crate::config::NETWORK_DIRS[0]);
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(src, dir.join(format!("{}.toml", d.name)));
        }
    }
}

/// Service mode: the supervisor of definition `name`, the main process of
/// `berth@NAME.service`, until its container exits.
pub fn service(root: &Path, name: &str) -> ExitCode {
    let opts = RunOptions {
        root: root.to_path_buf(),
        systemd: true,
        command: None,
        tty: false,
        delegated: true,
        // systemd already gives a service /dev/null (StandardInput=null).
        stdin: true,
    };
    match supervise::run_service(&opts, name) {
        Ok(code) => exit(code),
        Err(e) => {
            supervise::journal::event(
                supervise::journal::Priority::Error,
                name,
                "failed",
                &format!("container \"{name}\" failed to start: {e}"),
                &[],
            );
            ExitCode::from(1)
        }
    }
}

/// The line `berth@.service` runs at every start, `run --systemd NAME` (after
/// an optional `--root DIR`), read without clap: building berth's clap tree
/// and dropping it is half of what an exec of berth executes (callgrind), and
/// every supervisor's start and return from the idle waiter would pay it.
/// Returns the root
/// and NAME, or None to let clap read any other line.
pub fn service_line(args: &[std::ffi::OsString]) -> Option<(Option<PathBuf>, String)> {
    let words: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    let (root, rest) = match words.as_slice() {
        ["--root", dir, rest @ ..] if !dir.starts_with('-') => (Some(PathBuf::from(dir)), rest),
        [first, rest @ ..] if first.starts_with("--root=") => {
            (Some(PathBuf::from(&first["--root=".len()..])), rest)
        }
        rest => (None, rest),
    };
    let name = match rest {
        ["run", "--systemd", name] => *name,
        ["run", flag] => flag.strip_prefix("--systemd=")?,
        _ => return None,
    };
    (!name.is_empty() && !name.starts_with('-')).then(|| (root, name.to_string()))
}

/// `-d`: hand the container to systemd as `berth@NAME.service`, so it gets
/// everything service mode has (journal, cgroup, stop, restart).
fn detach(root: &Path, name: &str, definition: &str, rm: bool) -> anyhow::Result<ExitCode> {
    if root != Path::new("/") {
        bail!("berth run -d starts berth@NAME.service, which reads /etc/berth: it cannot be used with --root or $BERTH_ROOT");
    }
    if !ctl::booted(root) {
        bail!("berth run -d needs systemd as the init system (no /run/systemd/system)");
    }
    // A definition in /etc or /usr/lib would shadow ours, or be replaced by it.
    let dir = root.join("run/berth/containers");
    let unit = format!("berth@{name}.service");
    if let Ok(Some(existing)) = crate::config::load_definition(root, name) {
        // An earlier `run -d` of the same name may be replaced once stopped.
        let ours = existing.source_path.parent() == Some(dir.as_path());
        // Not known to be inactive counts as active: never replace a
        // definition systemd may be running.
        let active = ctl::is_active(&unit).unwrap_or(true);
        if !ours || active {
            bail!(
                "a container named \"{name}\" is already defined in {}{}; choose another --name",
                existing.source_path.display(),
                if active { " and running" } else { "" }
            );
        }
    }
    // /run/berth is a private root: the definition holds the environment.
    crate::private::root_dir(&supervise::run_root(root))
        .with_context(|| format!("create {:?}", supervise::run_root(root)))?;
    crate::private::traverse_dir(&dir).with_context(|| format!("create {dir:?}"))?;
    let path = dir.join(format!("{name}.toml"));
    let tmp = dir.join(format!(".{name}.toml.tmp"));
    crate::private::write_atomic(&tmp, &path, definition.as_bytes())
        .with_context(|| format!("write {path:?}"))?;
    let marker = supervise::remove_on_stop_marker(root, name);
    if rm {
        std::fs::write(&marker, b"").with_context(|| format!("write {marker:?}"))?;
    } else {
        let _ = std::fs::remove_file(&marker);
    }
    if let Err(e) = ctl::jobs(Verb::Start, std::slice::from_ref(&unit)) {
        let _ = std::fs::remove_file(&path);
        bail!("start {unit} failed: {e}; see journalctl -u {unit}");
    }
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

/// Move this process into a new transient scope `berth-run-NAME.scope` in
/// berth.slice (Delegate=yes), over D-Bus. False, with a warning, when
/// systemd cannot make it: the run then goes on without a cgroup of its own.
fn enter_scope(name: &str, resources: &crate::config::Resources) -> bool {
    let unit = format!("berth-run-{name}.scope");
    let props = crate::systemd::unit::plan_adhoc_scope_properties(name, resources);
    match crate::systemd::bus::start_transient_unit(&unit, &props, &[std::process::id()]) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("berth: warning: {e}; running without a scope of its own, ignoring");
            false
        }
    }
}

/// `error: FILE:LINE:COL: rest` → `error: rest`.
fn strip_position(line: &str, file: &str) -> String {
    match line.find(file) {
        Some(at) => {
            let after = &line[at + file.len()..];
            // ":LINE:COL: "
            let rest = after
                .trim_start_matches(|c: char| c == ':' || c.is_ascii_digit())
                .trim_start();
            format!("{}{rest}", &line[..at])
        }
        None => line.to_string(),
    }
}

/// A fresh 0700 directory (never one that exists: a name in /tmp is
/// predictable, and another user could have made it to read the definition,
/// environment included).
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let base = std::env::temp_dir().join(format!("berth-run-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(crate::private::DIR_MODE)
        .create(&base)
        .with_context(|| format!("create {base:?}"))?;
    Ok(base)
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

#[cfg(test)]
mod tests {
    use super::{service_line, strip_position};
    use clap::Parser;

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn the_service_line_reads_as_clap_reads_it() {
        for line in [
            "run --systemd web",
            "run --systemd=web",
            "--root /tmp/r run --systemd a.b-c_1",
            "--root=/tmp/r run --systemd web",
        ] {
            let (root, name) = service_line(&words(line)).expect(line);
            let mut argv = vec!["berth".into()];
            argv.extend(words(line));
            let cli = crate::cli::Cli::try_parse_from(argv).expect(line);
            let crate::cli::Command::Run(args) = cli.command else {
                panic!("{line}: not run")
            };
            assert_eq!(args.systemd.as_deref(), Some(name.as_str()), "{line}");
            assert!(args.flags.is_empty() && args.args.is_empty(), "{line}");
            assert_eq!(cli.root, root, "{line}");
        }
    }

    #[test]
    fn every_other_line_is_left_to_clap() {
        for line in [
            "",
            "run",
            "run --systemd",
            "run --systemd web extra",
            "run --systemd --help",
            "run --systemd=",
            "run -e A=1 --systemd web",
            "run --rm --systemd web",
            "--root run --systemd web",
            "--debug run --systemd web",
            "exec --systemd web",
            "run --systemd web --root /r",
        ] {
            assert!(service_line(&words(line)).is_none(), "{line}");
        }
    }

    #[test]
    fn diagnostics_lose_the_temporary_file_and_keep_the_key() {
        let f = "/tmp/berth-run-7/etc/berth/containers/run-7.toml";
        assert_eq!(
            strip_position(&format!("error: {f}:5:10: [resources] memory: bad"), f),
            "error: [resources] memory: bad"
        );
        assert_eq!(strip_position("error: other", f), "error: other");
    }
}
