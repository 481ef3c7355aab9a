//! A declared build (`[build]`) at start: the definition's context built
//! into `localhost/berth-build:NAME` by `build::builder`, every start. The
//! build cache decides what runs: an unchanged context is all cache hits
//! and the same digest, a changed file rebuilds from its step on. This is
//! Quadlet's `.build` unit (`podman build` in a oneshot service the
//! container's unit requires), done in the container's own start.
//!
//! The build runs in a forked child: what it does to its process (a
//! private mount namespace for `COPY --from`, a tokio runtime for a FROM
//! pull, the builder's heap) never reaches the supervisor, which stays
//! single-threaded and small for as long as the container runs (issue 13).
//! Its progress lines come back through a pipe; the supervisor, the unit's
//! main process and so the only one systemd hears (NotifyAccess=main),
//! sends each as `STATUS=` (with more start time, as a pull does) and logs
//! it to the journal.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};

use super::journal::{self, Priority};
use super::{notify, RunOptions, SuperviseError};
use crate::build::builder::{build, BuildOptions};
use crate::config::{Build, Definition, Globals};
use crate::image::NotifyProgress;
use crate::store::{LayerLimits, Store};

/// How the child's last line says the build failed.
const FAILED: &str = "\u{1}berth-build-failed: ";

/// Build `b` for `def`; returns once the image is in the store.
pub(super) fn build_image(
    opts: &RunOptions,
    def: &Definition,
    b: &Build,
    globals: &Globals,
) -> Result<(), SuperviseError> {
    let image = b.image.to_string();
    let failed = |reason: String| SuperviseError::Build {
        name: def.name.clone(),
        context: b.context.clone(),
        reason,
    };
    let (rd, wr) = pipe().map_err(|e| failed(format!("cannot make a pipe: {e}")))?;
    notify(
        opts,
        &format!(
            "STATUS=building {image} from {}\nEXTEND_TIMEOUT_USEC={}",
            b.context.display(),
            NotifyProgress::EXTEND_USEC
        ),
    );
    // SAFETY: the supervisor is single-threaded here (nothing it ran so
    // far left a thread: see `start`); the child runs the build and leaves
    // with _exit, never returning into the supervisor's code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(rd);
            // The build dies with its supervisor (a stop during a build).
            // SAFETY: prctl with plain integer arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            let code = child(b, globals, wr);
            // SAFETY: _exit skips the parent's atexit handlers and buffers.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            let mut error = None;
            for line in BufReader::new(std::fs::File::from(rd))
                .lines()
                .map_while(Result::ok)
            {
                if let Some((_, e)) = line.split_once(FAILED) {
                    error = Some(e.to_string());
                    continue;
                }
                if line.is_empty() {
                    continue;
                }
                notify(
                    opts,
                    &format!(
                        "STATUS=building {image}: {line}\nEXTEND_TIMEOUT_USEC={}",
                        NotifyProgress::EXTEND_USEC
                    ),
                );
                journal::event(
                    Priority::Info,
                    &def.name,
                    "build",
                    &format!("build {image}: {line}"),
                    &[("IMAGE", image.clone())],
                );
            }
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) if error.is_none() => Ok(()),
                Ok(status) => {
                    Err(failed(error.unwrap_or_else(|| {
                        format!("the build process ended: {status:?}")
                    })))
                }
                Err(e) => Err(failed(format!("cannot wait for the build process: {e}"))),
            }
        }
        Err(e) => Err(failed(format!("cannot fork the build process: {e}"))),
    }
}

/// The child's side: the build, its lines and at worst its error into `out`.
fn child(b: &Build, globals: &Globals, out: OwnedFd) -> i32 {
    let mut out = std::fs::File::from(out);
    let result = Store::open(&globals.storage_root)
        .map(|s| s.with_limits(LayerLimits::from_globals(globals)))
        .map_err(|e| e.to_string())
        .and_then(|store| {
            let file = b.containerfile(|p| p.is_file());
            let tags = [b.image.clone()];
            let o = BuildOptions {
                context: &b.context,
                file: Some(&file),
                tags: &tags,
                build_args: b.args.clone(),
                target: b.target.as_deref(),
                no_cache: false,
                // Reproducible, as `berth build` without SOURCE_DATE_EPOCH.
                source_date_epoch: 0,
                compression: crate::store::layer::Compression::Gzip,
                // A declared build's RUN steps get no network but lo, as
                // `berth build`'s default.
                network: crate::build::run_plan::RunNetwork::None,
            };
            build(&store, globals, &o, &mut out).map_err(|e| e.to_string())
        });
    match result {
        Ok(_) => 0,
        Err(e) => {
            // A line of its own (the failed step's line has no end yet),
            // one line (the parent reads lines).
            let _ = writeln!(out, "\n{FAILED}{}", e.replace('\n', " "));
            1
        }
    }
}
