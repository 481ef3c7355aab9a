//! `berth build`: the flags, then `build::builder` does the work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use super::image::{open_store, StoreArgs};
use crate::build::builder::{build as run_build, BuildOptions};
use crate::build::run_plan::RunNetwork;
use crate::distribution::reference::Reference;
use crate::store::layer::Compression;

/// Build an image from a Containerfile and a context directory
///
/// Runs the Containerfile's steps into an OCI image in berth's store, shown
/// by `berth images` and runnable by `berth run`. FROM takes a registry
/// reference, `oci:DIR[:TAG]`, `oci-archive:FILE`, `scratch` or an earlier
/// stage; COPY and ADD read only inside CONTEXT (no `..`, no symlink leading
/// out), minus what `.containerignore` or `.dockerignore` excludes. Each step
/// prints a line; a COPY whose parent and content did not change is reused
/// from the cache ("(cached)"). Builds are reproducible: no timestamp enters
/// the image, and file times are clamped to $SOURCE_DATE_EPOCH (or 0), so the
/// same Containerfile and context give the same digest. `COPY --from` reads
/// an earlier stage or an image; ADD unpacks a local tar archive.
///
/// RUN runs in berth's own runtime, confined as a container with default
/// settings (default capabilities, no_new_privileges, the default seccomp
/// profile; its own PID, mount, IPC, UTS, cgroup and network namespaces),
/// over an overlay of the stage's layers; what it changes (deletions as
/// whiteouts) is the step's layer. Its output is printed under the step's
/// line, each line after "  | "; a RUN whose parent layers, text and ARG
/// values are unchanged is not run again ("(cached)"). A RUN that exits
/// non-zero fails the build with the step, the instruction and the status.
/// RUN has no network by default (`--network none`: only lo), unlike
/// Docker, whose default is a bridge; `--network host` shares the host's.
/// Here-documents work as in BuildKit: `RUN <<EOF`, `COPY <<NAME DEST`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    berth build -t localhost/app:1 .\n  \
    berth build -t app -f deploy/Containerfile --build-arg VERSION=2 src/\n  \
    berth build -t app:test --target test --no-cache .\n  \
    berth build -t localhost/app:zstd --compression zstd .")]
pub struct BuildArgs {
    /// The build context: the directory COPY and ADD read from
    pub context: PathBuf,
    /// Name the image (repeatable)
    #[arg(long, short = 't', value_name = "REF", required = true)]
    pub tag: Vec<String>,
    /// The Containerfile (default: CONTEXT/Containerfile, else CONTEXT/Dockerfile)
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set an ARG (repeatable)
    #[arg(long, value_name = "NAME=VALUE")]
    pub build_arg: Vec<String>,
    /// Build this stage (and what it needs) instead of the last
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Rebuild every step instead of reusing cached layers
    #[arg(long)]
    pub no_cache: bool,
    /// The network of RUN steps: "none" (only lo; the default, where
    /// Docker's is a bridge) or "host" (the host's network namespace)
    #[arg(long, value_name = "none|host", default_value = "none")]
    pub network: String,
    /// Compress new layers with gzip (default, read everywhere) or zstd
    /// (smaller, faster to unpack; Podman, containerd ≥ 1.5 and berth read
    /// it, Docker 20.10 does not)
    #[arg(long, value_name = "FORMAT", default_value = "gzip", value_parser = ["gzip", "zstd"])]
    pub compression: String,
    /// Print only the image's manifest digest
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn run(root: &Path, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let (store, globals) = open_store(root, &args.store)?;
    let tags = args
        .tag
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("-t {t}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut build_args = BTreeMap::new();
    for a in &args.build_arg {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            // Docker: `--build-arg NAME` takes NAME's value from the environment.
            None => match std::env::var(a) {
                Ok(v) => build_args.insert(a.clone(), v),
                Err(_) => continue,
            },
        };
    }
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.is_empty() => s
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={s}: not a number of seconds"))?,
        _ => 0,
    };
    if !args.context.is_dir() {
        bail!(
            "build context '{}' is not a directory",
            args.context.display()
        );
    }
    let network = RunNetwork::parse(&args.network).map_err(anyhow::Error::msg)?;
    let o = BuildOptions {
        context: &args.context,
        file: args.file.as_deref(),
        tags: &tags,
        build_args,
        target: args.target.as_deref(),
        no_cache: args.no_cache,
        source_date_epoch: epoch,
        network,
        compression: match args.compression.as_str() {
            "zstd" => Compression::Zstd,
            _ => Compression::Gzip,
        },
    };
    let digest = if args.quiet {
        run_build(&store, &globals, &o, &mut std::io::sink())?
    } else {
        run_build(&store, &globals, &o, &mut std::io::stdout())?
    };
    if args.quiet {
        println!("{digest}");
    }
    Ok(ExitCode::SUCCESS)
}
