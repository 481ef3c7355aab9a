//! The `berth` command line: clap structs and thin commands.
//!
//! Each command parses its arguments, builds an options struct and calls the
//! library; nothing here decides policy. One file per command group keeps merge
//! conflicts small: add a variant to [`Command`] and a file beside this one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::systemd::ctl::Verb;

pub mod auto_update;
pub mod build;
pub mod check;
pub mod cleanup;
pub mod compose;
pub mod containers;
pub mod cp;
pub mod dist;
pub mod docs;
pub mod events;
pub mod exec;
pub mod generate;
pub mod image;
pub mod kill;
pub mod logs;
pub mod network;
pub mod port;
pub mod run;
pub mod run_flags;
pub mod system;
pub mod volume;

/// berth — declarative system containers, run by systemd.
///
/// Drop one TOML file per container into /etc/berth/containers/ (vendor files go in
/// /usr/lib/berth/containers/), run `systemctl daemon-reload`, then
/// `systemctl start berth@NAME`. `berth check` tells you what is wrong with a
/// definition before systemd does.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, long_about = None, propagate_version = true)]
#[command(
    after_help = "Examples:\n  berth check                 validate every definition\n  berth generate --dry-run    show the systemd units berth would write\n  systemctl start berth@web   start /etc/berth/containers/web.toml\n  journalctl -u berth@web     read its logs\n\nSee berth(1) for the definition format."
)]
pub struct Cli {
    /// Treat DIR as the host's root: read DIR/etc/berth/... instead of /etc/berth/...
    /// (for tests and for checking a package's tree before it is installed;
    /// default: $BERTH_ROOT, else /)
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print berth's version
    Version,
    Check(check::CheckArgs),
    Generate(generate::GenerateArgs),
    Run(Box<run::RunArgs>),
    Cleanup(cleanup::CleanupArgs),
    /// Pull an image from a registry or load an offline source into the store
    Pull(image::PullArgs),
    /// List stored images
    Images(image::ImagesArgs),
    Inspect(containers::InspectArgs),
    /// Remove image references and the content only they used
    Rmi(image::RmiArgs),
    /// Remove blobs and layers no image reference or running container uses
    Prune(image::PruneArgs),
    /// Import a rootfs tarball as a one-layer image
    Import(image::ImportArgs),
    Build(build::BuildArgs),
    /// Give a stored image another reference
    Tag(dist::TagArgs),
    /// Show the steps that made an image, newest first
    History(dist::HistoryArgs),
    /// Check credentials for a registry and save them in the auth file
    Login(dist::LoginArgs),
    /// Remove a registry's credentials from the auth file
    Logout(dist::LogoutArgs),
    /// Write stored images to an OCI or docker archive
    Save(dist::SaveArgs),
    /// Read images from an OCI or docker archive into the store
    Load(dist::LoadArgs),
    /// Push a stored image to a registry
    Push(dist::PushArgs),
    Ps(containers::PsArgs),
    Logs(containers::LogsArgs),
    /// Start containers (`systemctl start berth@NAME`)
    Start(containers::UnitArgs),
    /// Stop containers (`systemctl stop berth@NAME`)
    Stop(containers::UnitArgs),
    /// Restart containers (`systemctl restart berth@NAME`)
    Restart(containers::UnitArgs),
    Exec(exec::ExecArgs),
    Kill(kill::KillArgs),
    Events(events::EventsArgs),
    System(system::SystemArgs),
    Top(containers::TopArgs),
    Stats(containers::StatsArgs),
    /// Freeze every process of a running container
    Pause(containers::PauseArgs),
    /// Thaw a paused container
    Unpause(containers::PauseArgs),
    Volume(volume::VolumeArgs),
    Network(network::NetworkArgs),
    Port(port::PortArgs),
    AutoUpdate(auto_update::AutoUpdateArgs),
    Compose(compose::ComposeArgs),
    Cp(cp::CpArgs),
    Commit(cp::CommitArgs),
    /// Serve names on bridge networks (run by berth-dns.service)
    ///
    /// Listens on port 53 of the gateway address of every network with
    /// dns = true; answers members' names and aliases to the members of the
    /// same networks and forwards other queries to the host's resolvers.
    Dns,
    Completion(docs::CompletionArgs),
    /// Write a man page per subcommand into DIR (used by `make`)
    #[command(name = "__man", hide = true)]
    Man {
        dir: PathBuf,
    },
}

/// Whether `args` (without argv[0]) is berth@.service's own line, `run
/// --systemd NAME`: a service start, which decides itself whether to run
/// from a protected copy.
pub fn is_service_line(args: &[std::ffi::OsString]) -> bool {
    run::service_line(args).is_some()
}

/// Entry point of the `berth` personality.
pub fn main() -> ExitCode {
    docs::complete_if_asked();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some((root, name)) = run::service_line(&argv) {
        crate::log::init();
        let root = root.unwrap_or_else(crate::generator::root_from_env);
        // No protected copy up front: the start decides whether its
        // container needs one (supervise/start.rs, runtime/trampoline.rs).
        return run::service(&root, &name);
    }
    let cli = Cli::parse();
    crate::log::init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("berth: error: {}", crate::log::error_chain(&err));
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let root = cli
        .root
        .clone()
        .unwrap_or_else(crate::generator::root_from_env);
    match cli.command {
        Command::Version => {
            println!("berth {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => check::run(&root, args),
        Command::Generate(args) => generate::run(&root, args),
        // Commands that clone container processes (`run`, service mode and its
        // health checks, `exec`) run from a copy of this binary the container
        // cannot write (CVE-2019-5736, runtime/exe.rs): re-executed once here.
        Command::Run(args) => {
            crate::runtime::ensure_protected()?;
            run::run(&root, *args)
        }
        Command::Cleanup(args) => cleanup::run(&root, args),
        Command::Pull(a) => image::pull(&root, a),
        Command::Images(a) => image::images(&root, a),
        Command::Inspect(a) => containers::inspect(&root, a),
        Command::Rmi(a) => image::rmi(&root, a),
        Command::Prune(a) => image::prune(&root, a),
        Command::Import(a) => image::import(&root, a),
        // RUN steps clone container processes.
        Command::Build(a) => {
            crate::runtime::ensure_protected()?;
            build::run(&root, a)
        }
        Command::Tag(a) => dist::tag(&root, a),
        Command::History(a) => dist::history(&root, a),
        Command::Login(a) => dist::login(&root, a),
        Command::Logout(a) => dist::logout(&root, a),
        Command::Save(a) => dist::save(&root, a),
        Command::Load(a) => dist::load(&root, a),
        Command::Push(a) => dist::push(&root, a),
        Command::Ps(a) => containers::ps(&root, a),
        Command::Logs(a) => containers::logs(&root, a),
        Command::Start(a) => containers::unit_verb(&root, Verb::Start, a),
        Command::Stop(a) => containers::unit_verb(&root, Verb::Stop, a),
        Command::Restart(a) => containers::unit_verb(&root, Verb::Restart, a),
        Command::Exec(a) => {
            crate::runtime::ensure_protected()?;
            exec::run(&root, a)
        }
        Command::Kill(a) => kill::run(&root, a),
        Command::Events(a) => events::run(&root, a),
        Command::System(a) => system::run(&root, a),
        Command::Top(a) => containers::top(&root, a),
        Command::Stats(a) => containers::stats(&root, a),
        Command::Pause(a) => containers::pause(&root, a, true),
        Command::Unpause(a) => containers::pause(&root, a, false),
        Command::Volume(a) => volume::run(&root, a),
        Command::Network(a) => network::run(&root, a),
        Command::Port(a) => port::run(&root, a),
        Command::AutoUpdate(args) => auto_update::run(&root, args),
        Command::Compose(a) => compose::run(&root, a),
        Command::Cp(a) => cp::cp(&root, a),
        Command::Commit(a) => cp::commit(&root, a),
        Command::Dns => {
            crate::network::dns::run(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion(a) => docs::completion(a),
        Command::Man { dir } => docs::write_man_pages(&dir),
    }
}
