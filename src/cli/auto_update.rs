//! `berth auto-update`: move containers whose definition says
//! `auto_update = true` to the image their reference names now, restart the
//! running ones through systemd, and roll back to the previous image when a
//! restarted container does not stay up.
//!
//! The decision of what to look at is pure ([`plan`]); pulling, `systemctl`
//! and the store's refs are the edge. A rollback re-points the image's ref at
//! the digest it had, which is still in the store: nothing is pruned here.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{self, Definition, ImageSource, Pull, Reference};
use crate::containers as ct;
use crate::store::Store;
use crate::supervise::journal::{self, Priority};
use crate::systemd::ctl::{self, Verb};

#[derive(Debug, clap::Args)]
#[command(
    about = "Move containers with auto_update = true to newer images, restarting them; roll back if one does not stay up",
    after_help = "A container is updated when its image reference (a tag) now names another digest in its\n\
registry. A running container is restarted with `systemctl restart berth@NAME`; if it does\n\
not stay active for --settle, its image goes back to the previous digest and it is\n\
restarted again. berth-auto-update.timer runs this daily once enabled:\n\
  systemctl enable --now berth-auto-update.timer\n\n\
Examples:\n  berth auto-update --dry-run     which containers have a newer image\n  berth auto-update web           update one container (it must set auto_update = true)"
)]
pub struct AutoUpdateArgs {
    /// Only say which containers have a newer image; pull and restart nothing
    #[arg(long)]
    pub dry_run: bool,
    /// How long a restarted container must stay active to count as updated
    #[arg(long, default_value = "10s", value_parser = parse_settle, value_name = "DURATION")]
    pub settle: Duration,
    /// Containers to update (default: every definition with auto_update = true)
    pub names: Vec<String>,
}

fn parse_settle(s: &str) -> Result<Duration, String> {
    config::values::parse_duration(s)
}

/// What auto-update does with one definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// Look for a newer image of `reference`.
    Check {
        name: String,
        reference: Reference,
        pull: Pull,
    },
    /// Named on the command line but not updatable, and why.
    Skip { name: String, reason: String },
}

/// Which definitions to look at: with no names, every one with
/// `auto_update = true` and an image from a registry; named ones are
/// reported when they cannot be updated.
pub fn plan(defs: &[Definition], names: &[String]) -> Vec<Planned> {
    let mut out = Vec::new();
    for d in defs {
        let named = names.contains(&d.name);
        if !names.is_empty() && !named {
            continue;
        }
        let skip = |reason: &str| Planned::Skip {
            name: d.name.clone(),
            reason: reason.to_string(),
        };
        let r = match &d.image {
            ImageSource::Image(r) => r,
            ImageSource::Rootfs(_) => {
                if named {
                    out.push(skip("it runs a rootfs directory, not an image"));
                }
                continue;
            }
            ImageSource::Build(_) => {
                if named {
                    out.push(skip(
                        "it runs an image built from its [build] context at each start",
                    ));
                }
                continue;
            }
        };
        if !d.service.auto_update {
            if named {
                out.push(skip(
                    "its definition does not set [service] auto_update = true",
                ));
            }
            continue;
        }
        if !r.is_remote() {
            out.push(skip(
                "its image is not from a registry (oci:, oci-archive: and docker-archive: images are updated by importing them again)",
            ));
            continue;
        }
        out.push(Planned::Check {
            name: d.name.clone(),
            reference: r.clone(),
            pull: d.service.pull,
        });
    }
    out
}

/// How one container fared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    UpToDate,
    Available {
        from: Option<String>,
        to: String,
    },
    /// Pulled; the container was not running, so it takes effect at its
    /// next start.
    Pulled {
        from: Option<String>,
        to: String,
    },
    Updated {
        from: Option<String>,
        to: String,
    },
    RolledBack {
        to: String,
        why: String,
    },
    Failed(String),
    Skipped(String),
}

impl Outcome {
    fn failed(&self) -> bool {
        matches!(self, Outcome::RolledBack { .. } | Outcome::Failed(_))
    }

    fn render(&self) -> String {
        let d = |x: &Option<String>| x.as_deref().map_or("none".to_string(), short);
        match self {
            Outcome::UpToDate => "up to date".into(),
            Outcome::Available { from, to } => {
                format!("newer image: {} -> {}", d(from), short(to))
            }
            Outcome::Pulled { from, to } => format!(
                "pulled {} -> {} (not running: used at its next start)",
                d(from),
                short(to)
            ),
            Outcome::Updated { from, to } => {
                format!("updated {} -> {}, restarted", d(from), short(to))
            }
            Outcome::RolledBack { to, why } => {
                format!("rolled back to {}: {why}", short(to))
            }
            Outcome::Failed(why) => format!("failed: {why}"),
            Outcome::Skipped(why) => format!("skipped: {why}"),
        }
    }
}

fn short(digest: &str) -> String {
    crate::image::short(digest).to_string()
}

pub fn run(root: &Path, args: AutoUpdateArgs) -> anyhow::Result<ExitCode> {
    let globals = config::load_globals(root).context("global settings")?;
    let loaded = config::load_all(root);
    for n in &args.names {
        if !loaded.definitions.iter().any(|d| &d.name == n) {
            if let Some((_, d)) = loaded.errors.iter().find(|(name, _)| name == n) {
                anyhow::bail!("definition \"{n}\" is invalid:\n{d}");
            }
            anyhow::bail!(
                "no container definition \"{n}\" (looked in /etc/berth/containers, /run/berth/containers and /usr/lib/berth/containers)"
            );
        }
    }
    let planned = plan(&loaded.definitions, &args.names);
    if planned.is_empty() {
        println!("berth auto-update: no definition sets [service] auto_update = true");
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(&globals.storage_root)
        .with_context(|| format!("image store {}", globals.storage_root.display()))?
        .with_limits(crate::store::LayerLimits::from_globals(&globals));
    let mut any_failed = false;
    for p in &planned {
        let (name, reference, outcome) = match p {
            Planned::Skip { name, reason } => {
                (name, "-".to_string(), Outcome::Skipped(reason.clone()))
            }
            Planned::Check {
                name,
                reference,
                pull,
            } => (
                name,
                reference.to_string(),
                update_one(&store, &globals, name, reference, *pull, &args),
            ),
        };
        any_failed |= outcome.failed();
        println!("{name}  {reference}  {}", outcome.render());
    }
    Ok(if any_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn update_one(
    store: &Store,
    globals: &config::Globals,
    name: &str,
    reference: &Reference,
    pull: Pull,
    args: &AutoUpdateArgs,
) -> Outcome {
    let old = match store.get_ref(reference) {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    if args.dry_run {
        return match crate::image::pull::remote_digest(globals, reference) {
            Ok(now) if old.as_deref() == Some(now.as_str()) => Outcome::UpToDate,
            Ok(now) => Outcome::Available { from: old, to: now },
            Err(e) => Outcome::Failed(e.to_string()),
        };
    }
    let new = match crate::image::pull(store, globals, reference, &crate::image::NoProgress) {
        Ok(img) => img.manifest_digest,
        Err(e) => return Outcome::Failed(format!("pull: {e}")),
    };
    if old.as_deref() == Some(new.as_str()) {
        return Outcome::UpToDate;
    }
    if !is_active(name) {
        return Outcome::Pulled { from: old, to: new };
    }
    let why = match restart_and_settle(name, args.settle) {
        Ok(()) => {
            journal::event(
                Priority::Notice,
                name,
                "auto-updated",
                &format!(
                    "container \"{name}\" updated to {reference} ({new}), previously {}",
                    old.as_deref().unwrap_or("none")
                ),
                &[("IMAGE", reference.to_string())],
            );
            return Outcome::Updated { from: old, to: new };
        }
        Err(why) => why,
    };
    // The new image does not stay up: back to the one that did.
    let Some(old) = old else {
        return Outcome::Failed(format!("{why}; there is no earlier image to go back to"));
    };
    if pull == Pull::Always {
        return Outcome::Failed(format!(
            "{why}; not rolled back: with pull = \"always\" every start pulls the newest image again"
        ));
    }
    if let Err(e) = store.set_ref(reference, &old) {
        return Outcome::Failed(format!("{why}; rolling back: {e}"));
    }
    let result = match restart_and_settle(name, args.settle) {
        Ok(()) => Outcome::RolledBack {
            to: old.clone(),
            why: why.clone(),
        },
        Err(again) => Outcome::Failed(format!(
            "{why}; rolled back to {} but it does not stay up either: {again}",
            short(&old)
        )),
    };
    journal::event(
        Priority::Warning,
        name,
        "auto-update-rolled-back",
        &format!("container \"{name}\": the image {reference} ({new}) {why}; rolled back to {old}"),
        &[("IMAGE", reference.to_string())],
    );
    result
}

fn is_active(name: &str) -> bool {
    ctl::is_active(&ct::unit_name(name)) == Some(true)
}

/// `systemctl restart`, then the unit must stay active, without a restart of
/// its own, for `settle`.
fn restart_and_settle(name: &str, settle: Duration) -> Result<(), String> {
    let names = [name.to_string()];
    let restarts = |props: &std::collections::HashMap<String, String>| {
        props
            .get("NRestarts")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let props = || {
        ct::show_units(&names)
            .map_err(|e| e.to_string())
            .map(|mut m| m.remove(name).unwrap_or_default())
    };
    ct::unit_jobs(Verb::Restart, &names).map_err(|e| format!("did not start ({e})"))?;
    let before = restarts(&props()?);
    let until = Instant::now() + settle;
    loop {
        let p = props()?;
        let state = p.get("ActiveState").map(String::as_str).unwrap_or("");
        if state != "active" || restarts(&p) != before {
            return Err(format!(
                "did not stay up (the unit went {})",
                if state == "active" {
                    "through a restart"
                } else {
                    state
                }
            ));
        }
        if Instant::now() >= until {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(text: &[(&str, &str)]) -> Vec<Definition> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("etc/berth/containers");
        std::fs::create_dir_all(&d).unwrap();
        for (name, body) in text {
            std::fs::write(d.join(format!("{name}.toml")), body).unwrap();
        }
        let loaded = config::load_all(dir.path());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut v = loaded.definitions;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    #[test]
    fn only_registry_images_that_opt_in_are_checked() {
        let d = defs(&[
            (
                "a",
                "image = \"reg:5000/a:1\"\n[service]\nauto_update = true\n",
            ),
            ("b", "image = \"reg:5000/b:1\"\n"),
            ("c", "rootfs = \"/srv/c\"\n"),
            (
                "d",
                "image = \"oci:/srv/d:1\"\n[service]\nauto_update = true\npull = \"never\"\n",
            ),
        ]);
        let all = plan(&d, &[]);
        assert_eq!(
            all,
            vec![
                Planned::Check {
                    name: "a".into(),
                    reference: Reference::parse("reg:5000/a:1").unwrap(),
                    pull: Pull::Missing
                },
                Planned::Skip {
                    name: "d".into(),
                    reason: "its image is not from a registry (oci:, oci-archive: and docker-archive: images are updated by importing them again)".into()
                },
            ]
        );
        let named = plan(&d, &["b".into(), "c".into()]);
        assert!(
            matches!(&named[0], Planned::Skip { name, reason } if name == "b" && reason.contains("auto_update = true"))
        );
        assert!(
            matches!(&named[1], Planned::Skip { name, reason } if name == "c" && reason.contains("rootfs"))
        );
    }

    #[test]
    fn outcomes_read_as_sentences() {
        let o = Outcome::Updated {
            from: Some("sha256:0123456789abcdef0123".into()),
            to: "sha256:fedcba9876543210fedc".into(),
        };
        assert_eq!(
            o.render(),
            "updated 0123456789ab -> fedcba987654, restarted"
        );
        assert!(!o.failed());
        assert!(Outcome::Failed("x".into()).failed());
    }
}
