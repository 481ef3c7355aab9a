//! Distribution commands: `tag`, `history` (and `login`, `logout`, `save`,
//! `load`, `push`). Thin: parse arguments, open the store, call `image`/`store`,
//! print.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::image::{find, human, open_store, StoreArgs};
use crate::config::load_globals;
use crate::image::hosts::Credentials;
use crate::image::{self, auth, Reference};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth tag nginx:1.27 nginx:stable\n  berth tag 3f2a9c1b registry.example.org/web/nginx:1.27   (by manifest digest prefix)\n\nThe new reference points at the same manifest; nothing is copied."
)]
pub struct TagArgs {
    /// Source: an image reference, or a manifest digest (or its first hex digits)
    pub source: String,
    /// New reference: NAME[:TAG]
    pub target: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth history nginx:1.27\n  berth history --no-trunc nginx:1.27\n  berth history --format json nginx:1.27 | jq '.[].created_by'\n\nNewest step first, as `docker history`. SIZE is the layer blob's size (compressed, as\nregistries count); steps that made no layer (ENV, CMD, …) show 0 B."
)]
pub struct HistoryArgs {
    /// Image reference, or a manifest digest (or its first hex digits)
    pub image: String,
    /// Do not shorten CREATED BY
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
    pub format: HistoryFormat,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryFormat {
    Table,
    Json,
}

pub fn tag(root: &Path, args: TagArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = open_store(root, &args.store)?;
    let (_, digest) = find(&store, &args.source)?;
    let target = Reference::parse(&args.target)
        .with_context(|| format!("invalid target reference '{}'", args.target))?;
    if target.as_registry().is_none() {
        anyhow::bail!(
            "'{}' is a local source; tag with a registry reference (NAME[:TAG])",
            args.target
        );
    }
    let canonical = target.canonical();
    // The manifest must be whole in the store before a second name points at it.
    store
        .image_by_digest(&canonical, &digest)
        .with_context(|| format!("cannot tag '{}'", args.source))?;
    store.set_ref(&target, &digest)?;
    println!("{canonical} {digest}");
    Ok(ExitCode::SUCCESS)
}

/// One row of `berth history`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryRow {
    /// The manifest digest on the newest row, as `docker history` shows the
    /// image ID there and `<missing>` below.
    pub id: Option<String>,
    pub created: Option<String>,
    pub created_by: String,
    pub size: u64,
    pub empty_layer: bool,
    pub comment: String,
}

/// The config's `history` with each non-empty step given the size of its
/// layer, newest first. A config without history (an import) gets one row per
/// layer, as Docker shows it.
pub fn history_rows(
    config: &serde_json::Value,
    layer_sizes: &[u64],
    digest: &str,
) -> Vec<HistoryRow> {
    let mut rows = Vec::new();
    let mut sizes = layer_sizes.iter();
    let entries = config
        .get("history")
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|s| s.as_str()).map(String::from);
    for h in &entries {
        let empty = h
            .get("empty_layer")
            .and_then(|e| e.as_bool())
            .unwrap_or(false);
        let size = if empty {
            0
        } else {
            sizes.next().copied().unwrap_or(0)
        };
        rows.push(HistoryRow {
            id: None,
            created: text(h, "created"),
            created_by: text(h, "created_by").unwrap_or_default(),
            size,
            empty_layer: empty,
            comment: text(h, "comment").unwrap_or_default(),
        });
    }
    // Layers the history does not account for (no history at all, or a
    // short one) still show.
    for s in sizes {
        rows.push(HistoryRow {
            id: None,
            created: None,
            created_by: String::new(),
            size: *s,
            empty_layer: false,
            comment: String::new(),
        });
    }
    rows.reverse();
    if let Some(first) = rows.first_mut() {
        first.id = Some(digest.to_string());
    }
    rows
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n - 1).collect();
        out.push('…');
        out
    }
}

pub fn history(root: &Path, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = open_store(root, &args.store)?;
    let (reference, digest) = find(&store, &args.image)?;
    let m = store.manifest(&reference.canonical(), &digest)?;
    let raw = store.read_blob(
        &m.config.digest,
        "an image config",
        image::manifest::MAX_METADATA_BYTES,
    )?;
    let config: serde_json::Value = serde_json::from_slice(&raw)
        .with_context(|| format!("image config of '{}' is not JSON", args.image))?;
    let sizes: Vec<u64> = m.layers.iter().map(|l| l.size).collect();
    let rows = history_rows(&config, &sizes, &digest);
    if args.format == HistoryFormat::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:<22} {:<46} {:>10}  COMMENT",
        "IMAGE", "CREATED", "CREATED BY", "SIZE"
    );
    for r in &rows {
        let id = match &r.id {
            Some(d) if args.no_trunc => d.clone(),
            Some(d) => image::short(d).to_string(),
            None => "<missing>".to_string(),
        };
        let created_by = r.created_by.replace(['\n', '\t'], " ");
        let created_by = if args.no_trunc {
            created_by
        } else {
            shorten(&created_by, 45)
        };
        let created = r
            .created
            .as_deref()
            .map(|c| c.chars().take(19).collect::<String>());
        println!(
            "{:<14} {:<22} {:<46} {:>10}  {}",
            id,
            created.unwrap_or_else(|| "-".into()),
            created_by,
            human(r.size),
            r.comment
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth login -u alice registry.example.org            (asks for the password)\n  echo \"$TOKEN\" | berth login -u ci --password-stdin 127.0.0.1:5000\n\nThe credentials are checked against the registry first; only then are they written to\nthe auth file pulls and pushes read ([auth] file of /etc/berth/berth.toml, default\n/etc/berth/auth.json; docker config.json format, mode 0600)."
)]
pub struct LoginArgs {
    /// Registry host[:port] (docker.io for Docker Hub)
    pub registry: String,
    /// User name (asked for on a terminal when missing)
    #[arg(long, short)]
    pub username: Option<String>,
    /// Read the password from standard input (one line)
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth logout registry.example.org\n\nRemoves the registry's entry from the auth file; the other entries stay."
)]
pub struct LogoutArgs {
    /// Registry host[:port]
    pub registry: String,
}

fn auth_path(root: &Path) -> anyhow::Result<(crate::config::Globals, std::path::PathBuf)> {
    let globals = load_globals(root)?;
    let path = globals
        .auth_file
        .clone()
        .unwrap_or_else(|| root.join("etc/berth/auth.json"));
    Ok((globals, path))
}

/// A line from the terminal, echo off for a password.
fn prompt(what: &str, secret: bool) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    eprint!("{what}: ");
    std::io::stderr().flush().ok();
    let saved = if secret { tcgetattr(&stdin).ok() } else { None };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).ok();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = &saved {
        tcsetattr(&stdin, SetArg::TCSANOW, t).ok();
        eprintln!();
    }
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn login(root: &Path, args: LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = auth::registry_key(&args.registry);
    let tty = std::io::stdin().is_terminal();
    let username = match args.username {
        Some(u) => u,
        None if tty && !args.password_stdin => prompt("Username", false)?,
        None => anyhow::bail!("no user name for '{registry}': give -u USER"),
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if tty {
        prompt("Password", true)?
    } else {
        anyhow::bail!(
            "no password for '{registry}': standard input is not a terminal; use --password-stdin"
        )
    };
    if username.is_empty() || password.is_empty() {
        anyhow::bail!("user name and password for '{registry}' must not be empty");
    }
    let (globals, path) = auth_path(root)?;
    let creds = Credentials { username, password };
    auth::verify(&globals, &registry, &creds)
        .with_context(|| format!("login to '{registry}' failed; nothing was written"))?;
    auth::save(&path, &registry, &creds)?;
    println!("Login Succeeded ({registry}, saved in {})", path.display());
    Ok(ExitCode::SUCCESS)
}

pub fn logout(root: &Path, args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let registry = auth::registry_key(&args.registry);
    let (_, path) = auth_path(root)?;
    if !auth::remove(&path, &registry)? {
        anyhow::bail!(
            "not logged in to '{registry}' (no entry in '{}')",
            path.display()
        );
    }
    println!(
        "Removed login credentials for '{registry}' from {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormat {
    OciArchive,
    DockerArchive,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth save -o web.tar registry.example.org/web:1.2\n  berth save -o all.tar --format docker-archive nginx:1.27 nginx:stable   (for docker load)\n  berth load -i web.tar\n\noci-archive (the default) keeps the images byte for byte, manifest digests included;\ndocker-archive is what `docker save` writes (layers uncompressed), for `docker load`."
)]
pub struct SaveArgs {
    /// Archive to write (replaced when complete)
    #[arg(long, short, value_name = "FILE")]
    pub output: std::path::PathBuf,
    /// Archive format
    #[arg(long, value_enum, default_value_t = ArchiveFormat::OciArchive)]
    pub format: ArchiveFormat,
    /// Images: references or manifest digest prefixes
    #[arg(required = true)]
    pub images: Vec<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth load -i web.tar\n  podman save -o bb.tar busybox && berth load -i bb.tar\n\nBoth kinds are recognised: an OCI layout archive (index.json; `podman save --format\noci-archive`, `skopeo copy … oci-archive:`, Docker 25+) and a docker archive (manifest.json;\n`docker save`, `podman save`). Images are filed under the names the archive carries."
)]
pub struct LoadArgs {
    /// Archive to read
    #[arg(long, short, value_name = "FILE")]
    pub input: std::path::PathBuf,
    /// Print only the manifest digests
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn save(root: &Path, args: SaveArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = open_store(root, &args.store)?;
    let mut images = Vec::new();
    for what in &args.images {
        let (reference, digest) = find(&store, what)?;
        // A name typed by the user is the name saved (a digest prefix saves
        // under the ref it matched).
        let reference = Reference::parse(what)
            .ok()
            .filter(|r| store.get_ref(r).ok().flatten().as_deref() == Some(digest.as_str()))
            .unwrap_or(reference);
        images.push(image::archive::Saved { reference, digest });
    }
    let format = match args.format {
        ArchiveFormat::OciArchive => image::archive::Format::OciArchive,
        ArchiveFormat::DockerArchive => image::archive::Format::DockerArchive,
    };
    image::archive::save(&store, &images, format, &args.output)
        .with_context(|| format!("cannot save to '{}'", args.output.display()))?;
    eprintln!(
        "saved {} image(s) to {}",
        images.len(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn load(root: &Path, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let (store, _) = open_store(root, &args.store)?;
    let progress = super::image::CliProgress::new(args.quiet);
    let loaded = image::archive::load(&store, &args.input, &progress)
        .with_context(|| format!("cannot load '{}'", args.input.display()))?;
    progress.finish();
    for l in &loaded {
        if args.quiet {
            println!("{}", l.digest);
        } else {
            for n in &l.names {
                println!("Loaded image: {n} {}", l.digest);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth push registry.example.org/web:1.2\n  berth push web:build 127.0.0.1:5000/web:1.2     (a stored image to another name)\n  berth login registry.example.org && berth push registry.example.org/team/app:3\n\nBlobs the registry has are skipped, blobs of a repository on the same registry the image\nwas pulled from are mounted, the rest uploaded (in 16 MiB chunks when big); the manifest\ngoes last. Credentials come from the auth file (berth login)."
)]
pub struct PushArgs {
    /// Stored image: a reference or a manifest digest prefix
    pub image: String,
    /// Destination NAME[:TAG] (default: IMAGE itself)
    pub destination: Option<String>,
    /// Print only the manifest digest
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

struct PushLines {
    quiet: bool,
}

impl image::push::PushProgress for PushLines {
    fn blob(&self, digest: &str, size: u64, fate: image::push::BlobFate) {
        if self.quiet {
            return;
        }
        let what = match fate {
            image::push::BlobFate::Exists => "already there",
            image::push::BlobFate::Mounted => "mounted",
            image::push::BlobFate::Uploaded => "pushed",
        };
        eprintln!("{}: {what} ({})", image::short(digest), human(size));
    }
    fn retry(&self, digest: &str, attempt: u32, error: &str) {
        eprintln!(
            "{}: upload failed: {error}; retrying it with a new upload session (attempt {} of {})",
            image::short(digest),
            attempt + 1,
            crate::image::push::BLOB_ATTEMPTS
        );
    }
}

pub fn push(root: &Path, args: PushArgs) -> anyhow::Result<ExitCode> {
    let (store, globals) = open_store(root, &args.store)?;
    let (_, digest) = find(&store, &args.image)?;
    let dest_text = args.destination.as_deref().unwrap_or(&args.image);
    let dest = Reference::parse(dest_text)
        .with_context(|| format!("invalid destination '{dest_text}'"))?;
    let Some(dest) = dest.as_registry().cloned() else {
        anyhow::bail!(
            "'{dest_text}' is not a registry reference; push to NAME[:TAG] (save writes archives)"
        );
    };
    if dest.digest.is_some() {
        anyhow::bail!("push to a tag, not a digest: '{dest_text}'");
    }
    // Repositories of the same registry this image was pulled from hold its
    // blobs: they can be mounted instead of uploaded.
    let mount_from: Vec<String> = store
        .refs()?
        .into_iter()
        .filter(|r| r.manifest_digest == digest)
        .filter_map(|r| Reference::parse(&r.reference).ok())
        .filter_map(|r| r.as_registry().cloned())
        .filter(|r| r.registry == dest.registry && r.repository != dest.repository)
        .map(|r| r.repository)
        .collect();
    let plan = image::push::PushPlan {
        manifest_digest: &digest,
        dest: &dest,
        mount_from,
    };
    let shown = Reference::Registry(dest.clone()).canonical();
    let report = image::push::push(&store, &globals, &plan, &PushLines { quiet: args.quiet })
        .with_context(|| format!("cannot push '{}' to '{shown}'", args.image))?;
    use image::push::BlobFate;
    if args.quiet {
        println!("{}", report.manifest_digest);
    } else {
        eprintln!(
            "{} blobs: {} pushed, {} mounted, {} already there",
            report.blobs.len(),
            report.count(BlobFate::Uploaded),
            report.count(BlobFate::Mounted),
            report.count(BlobFate::Exists)
        );
        println!("{shown} {}", report.manifest_digest);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_pairs_layers_with_non_empty_steps_newest_first() {
        let config = serde_json::json!({"history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs.tar /"},
            {"created_by": "ENV A=1", "empty_layer": true},
            {"created_by": "RUN touch /x", "comment": "buildkit"},
            {"created_by": "CMD [\"sh\"]", "empty_layer": true},
        ]});
        let rows = history_rows(&config, &[100, 7], "sha256:abc");
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.created_by.as_str(), r.size, r.empty_layer))
            .collect();
        assert_eq!(
            got,
            [
                ("CMD [\"sh\"]", 0, true),
                ("RUN touch /x", 7, false),
                ("ENV A=1", 0, true),
                ("ADD rootfs.tar /", 100, false)
            ]
        );
        assert_eq!(rows[0].id.as_deref(), Some("sha256:abc"));
        assert_eq!(rows[1].id, None);
        assert_eq!(rows[1].comment, "buildkit");
    }

    #[test]
    fn history_without_entries_shows_each_layer() {
        let rows = history_rows(&serde_json::json!({}), &[5, 6], "sha256:d");
        assert_eq!(rows.iter().map(|r| r.size).collect::<Vec<_>>(), [6, 5]);
    }

    #[test]
    fn shorten_marks_the_cut() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
    }
}
