//! `berth build` carried out: the plan's stages in order, each from its base
//! (a pulled image, `scratch`, or an earlier stage), its config steps applied,
//! its COPY/ADD steps staged from the context and written as layers
//! (`store::layer`), cached by key, and the result stored as an OCI image
//! under each tag. ADD unpacks a local archive through `store::unpack`
//! (bounded as a pulled layer).
//!
//! The context is hostile input (DESIGN.md, "Security model"): a source that
//! names `..` is refused before any lookup, and every source is opened with
//! openat2(RESOLVE_BENEATH) from a descriptor of the context, so a symlink
//! that leads out of it fails (EXDEV) instead of being followed; inside a
//! copied directory, symlinks are copied as links, never followed.
//!
//! Reproducible by default: no timestamp goes into the config or its
//! history, and layer mtimes are clamped to `SOURCE_DATE_EPOCH` (or 0).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::config::{self, DEFAULT_SHELL};
use super::containerfile::{self, Copy, Op, ParseError, Pos};
use super::from::FromRoot;
use super::ignore::{clean, glob_match, Ignore};
use super::plan::{self, cache_key, content_hash, Base, Entry, Step};
use super::run_plan::RunNetwork;
use crate::config::Globals;
use crate::distribution::manifest::{self, Descriptor, Manifest, Platform};
use crate::distribution::reference::Reference;
use crate::image::{ImageError, NoProgress};
use crate::store::layer::{list_dir, open_node, reopen, Compression, TreeOptions};
use crate::store::{Store, StoreError};

/// Why a build failed: a step's failure names the Containerfile's line.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{file}:{line}:{column}: {source}")]
    Image {
        file: String,
        line: usize,
        column: usize,
        source: Box<ImageError>,
    },
    #[error("cannot read '{path}': {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions<'a> {
    pub context: &'a Path,
    /// The Containerfile (default: `Containerfile`, then `Dockerfile`, in
    /// the context).
    pub file: Option<&'a Path>,
    pub tags: &'a [Reference],
    pub build_args: BTreeMap<String, String>,
    pub target: Option<&'a str>,
    pub no_cache: bool,
    /// `SOURCE_DATE_EPOCH`: the latest mtime a layer holds (0 without it).
    pub source_date_epoch: u64,
    /// The network RUN steps get (`--network`).
    pub network: RunNetwork,
    /// How new layers are compressed (`--compression`): gzip or zstd.
    pub compression: Compression,
}

/// A stage being built: its manifest so far (layers), config and SHELL.
#[derive(Debug, Clone)]
struct State {
    manifest: Manifest,
    config: Value,
    shell: Vec<String>,
}

fn step_error(file: &str, pos: Pos, message: impl Into<String>) -> BuildError {
    BuildError::Parse(ParseError {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        message: message.into(),
    })
}

fn read(path: &Path) -> Result<String, BuildError> {
    std::fs::read_to_string(path).map_err(|source| BuildError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The Containerfile to use: `-f`, or `Containerfile`/`Dockerfile` in the context.
fn containerfile_path(o: &BuildOptions) -> PathBuf {
    if let Some(f) = o.file {
        return f.to_path_buf();
    }
    let c = o.context.join("Containerfile");
    if c.is_file() {
        c
    } else {
        o.context.join("Dockerfile")
    }
}

/// Build; progress lines go to `out`. Returns the manifest digest.
pub fn build(
    store: &Store,
    globals: &Globals,
    o: &BuildOptions,
    out: &mut dyn Write,
) -> Result<String, BuildError> {
    let path = containerfile_path(o);
    let file = path.display().to_string();
    let cf = containerfile::parse(&file, &read(&path)?)?;
    let p = plan::plan(&file, &cf, &o.build_args, o.target)?;
    for a in p.unused_args() {
        let _ = writeln!(out, "warning: --build-arg {a} was not used by any ARG");
    }
    let ignore = [".containerignore", ".dockerignore"]
        .iter()
        .map(|n| o.context.join(n))
        .find(|p| p.is_file())
        .map(|p| read(&p).map(|t| Ignore::parse(&t)))
        .transpose()?
        .unwrap_or_default();
    let ctx = crate::sys::at::openat2_cwd(o.context, libc::O_PATH | libc::O_DIRECTORY).map_err(
        |source| BuildError::Read {
            path: o.context.to_path_buf(),
            source,
        },
    )?;
    // Held until the refs are set, so a prune cannot take the new blobs.
    let _shared = store.lock_shared()?;
    let mut built: BTreeMap<usize, State> = BTreeMap::new();
    let total = p.order.len();
    for (n, &i) in p.order.iter().enumerate() {
        let stage = &p.stages[i];
        let _ = writeln!(
            out,
            "[{}/{total}] FROM {}",
            n + 1,
            base_name(&stage.base, &p)
        );
        let mut state = match &stage.base {
            Base::Scratch => scratch(),
            Base::Stage(b) => built
                .get(b)
                .cloned()
                .ok_or_else(|| step_error(&file, stage.pos, "the base stage was not built"))?,
            Base::Image(r) => {
                from_image(store, globals, r).map_err(|source| BuildError::Image {
                    file: file.clone(),
                    line: stage.pos.line,
                    column: stage.pos.column,
                    source: Box::new(source),
                })?
            }
        };
        let env: Vec<String> = state.config["config"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let steps = p.steps(&file, i, &env)?;
        let ctx_fd = ctx.as_fd();
        let steps_total = steps.len();
        for (k, step) in steps.iter().enumerate() {
            let _ = write!(
                out,
                "[{}/{total}] STEP {}/{steps_total}: {}",
                n + 1,
                k + 1,
                step.text
            );
            let from_root;
            let no_ignore = Ignore::default();
            let (src, src_ignore) = match &step.op {
                Op::Copy(Copy { from: Some(f), .. }) => {
                    from_root = copy_from(store, globals, &file, step, f, &p, i, &built)?;
                    (from_root.fd.as_fd(), &no_ignore)
                }
                _ => (ctx_fd, &ignore),
            };
            let label = format!("STEP {}/{steps_total}", k + 1);
            let r = run_step(
                store,
                &file,
                o,
                &mut state,
                step,
                (src, src_ignore),
                out,
                &label,
            )?;
            let _ = writeln!(out, "{r}");
            if crate::trace::enabled() {
                crate::trace::step(&format!("build: done {}", step.text));
            }
        }
        built.insert(i, state);
    }
    let last = p.order.last().copied().unwrap_or(0);
    let state = built
        .remove(&last)
        .ok_or_else(|| step_error(&file, Pos { line: 1, column: 1 }, "no stage was built"))?;
    let digest = commit(store, &state, o.tags)?;
    let _ = writeln!(out, "{digest}");
    Ok(digest)
}

/// The tree a `COPY --from=NAME` reads: an earlier stage (by name or
/// index) as built, else an image.
#[allow(clippy::too_many_arguments)]
fn copy_from(
    store: &Store,
    globals: &Globals,
    file: &str,
    step: &Step,
    from: &str,
    p: &plan::Plan,
    current: usize,
    built: &BTreeMap<usize, State>,
) -> Result<FromRoot, BuildError> {
    let lower = from.to_ascii_lowercase();
    let stage = p.stages[..current]
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
        .map(|s| s.index)
        .or_else(|| from.parse::<usize>().ok().filter(|i| *i < current));
    let state = match stage {
        Some(i) => built
            .get(&i)
            .cloned()
            .ok_or_else(|| step_error(file, step.pos, format!("--from={from}: stage not built")))?,
        None => from_image(store, globals, from).map_err(|source| BuildError::Image {
            file: file.to_string(),
            line: step.pos.line,
            column: step.pos.column,
            source: Box::new(source),
        })?,
    };
    FromRoot::open(store, &diff_ids(&state), step.pos.line)
        .map_err(|m| step_error(file, step.pos, format!("COPY --from={from}: {m}")))
}

fn base_name(base: &Base, p: &plan::Plan) -> String {
    match base {
        Base::Scratch => "scratch".into(),
        Base::Image(r) => r.clone(),
        Base::Stage(i) => p.stages[*i]
            .name
            .clone()
            .unwrap_or_else(|| format!("stage {i}")),
    }
}

fn scratch() -> State {
    let host = Platform::host();
    State {
        manifest: Manifest {
            schema_version: 2,
            media_type: manifest::OCI_MANIFEST.into(),
            config: Descriptor {
                media_type: manifest::OCI_CONFIG.into(),
                digest: String::new(),
                size: 0,
                platform: None,
                annotations: None,
            },
            layers: Vec::new(),
            annotations: None,
        },
        config: json!({
            "architecture": host.architecture,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }),
        shell: DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
    }
}

fn from_image(store: &Store, globals: &Globals, r: &str) -> Result<State, ImageError> {
    let reference = Reference::parse(r).map_err(|e| ImageError::Task(format!("FROM {r}: {e}")))?;
    let img = match store.image(&reference)? {
        Some(img) => img,
        None => crate::image::pull(store, globals, &reference, &NoProgress)?,
    };
    let m = store.manifest(&img.reference, &img.manifest_digest)?;
    let raw = store.read_blob(
        &m.config.digest,
        "an image config",
        manifest::MAX_METADATA_BYTES,
    )?;
    let mut config: Value = serde_json::from_slice(&raw)
        .map_err(|e| ImageError::Task(format!("the config of '{r}' is not JSON: {e}")))?;
    // No timestamp of the base's build is carried into ours.
    if let Some(c) = config.as_object_mut() {
        c.remove("created");
    }
    Ok(State {
        manifest: m,
        config,
        shell: DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
    })
}

/// The parent of the next step's cache key: the config (its diff ids and
/// history included) and the layer blobs so far.
fn parent_key(state: &State) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&state.config).unwrap_or_default());
    for l in &state.manifest.layers {
        h.update(l.digest.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

fn history(state: &mut State, created_by: &str, empty: bool) {
    if !state.config["history"].is_array() {
        state.config["history"] = json!([]);
    }
    let mut h = json!({"created_by": created_by, "comment": "berth build"});
    if empty {
        h["empty_layer"] = json!(true);
    }
    if let Some(a) = state.config["history"].as_array_mut() {
        a.push(h);
    }
}

/// One step; returns what to print after its progress line.
#[allow(clippy::too_many_arguments)]
fn run_step(
    store: &Store,
    file: &str,
    o: &BuildOptions,
    state: &mut State,
    step: &Step,
    (ctx, ignore): (BorrowedFd, &Ignore),
    out: &mut dyn Write,
    label: &str,
) -> Result<String, BuildError> {
    let mut shell = state.shell.clone();
    if let Op::Workdir(w) = &step.op {
        let cur = state.config["config"]["WorkingDir"]
            .as_str()
            .filter(|c| !c.is_empty())
            .unwrap_or("/");
        let dir = config::join_path(cur, w);
        if let Some(r) = workdir_step(store, file, o, state, step, &dir)? {
            config::apply(&mut state.config, &step.op, &mut shell);
            return Ok(r);
        }
    }
    if config::apply(&mut state.config, &step.op, &mut shell) {
        state.shell = shell;
        if !matches!(step.op, Op::Arg(_)) {
            history(state, &step.text, true);
        }
        return Ok(String::new());
    }
    match &step.op {
        Op::Copy(c) => copy_step(store, file, o, state, step, c, ctx, ignore),
        Op::Run(_) => run_step_run(store, file, o, state, step, out, label),
        _ => Err(step_error(file, step.pos, "unexpected instruction")),
    }
}

#[allow(clippy::too_many_arguments)]
fn copy_step(
    store: &Store,
    file: &str,
    o: &BuildOptions,
    state: &mut State,
    step: &Step,
    c: &Copy,
    ctx: BorrowedFd,
    ignore: &Ignore,
) -> Result<String, BuildError> {
    let err = |m: String| step_error(file, step.pos, m);
    let owner = match c.chown.as_deref() {
        None => (0, 0),
        Some(s) => match parse_owner(s) {
            Some(o) => o,
            None => owner_by_name(store, state, step.pos.line, s)
                .map_err(|m| err(format!("--chown={s}: {m}")))?,
        },
    };
    let chmod = match c.chmod.as_deref() {
        None => None,
        Some(s) => Some(
            u32::from_str_radix(s, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| err(format!("--chmod={s}: not an octal mode")))?,
        ),
    };
    let workdir = state.config["config"]["WorkingDir"]
        .as_str()
        .filter(|w| !w.is_empty())
        .unwrap_or("/")
        .to_string();
    let staging = store
        .root()
        .join(format!("tmp/build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = (|| {
        let copier = |dry: bool| Copier {
            ctx,
            ignore,
            owner,
            chmod,
            entries: Vec::new(),
            add: c.add,
            limits: store.unpack_limits(true),
            dry,
        };
        let sources = copier(true).sources(&c.sources).map_err(err)?;
        let dest = config::join_path(&workdir, &c.dest);
        let into_dir = c.dest.ends_with('/') || sources.len() + c.heredocs.len() > 1;
        let copy_all = |copier: &mut Copier| -> Result<(), BuildError> {
            for (rel, fd) in &sources {
                copier
                    .copy_source(rel, fd.as_fd(), &staging, &dest, into_dir)
                    .map_err(|e| err(format!("COPY {rel}: {e}")))?;
            }
            for h in &c.heredocs {
                copier
                    .write_inline(&h.name, h.text().as_bytes(), &staging, &dest, into_dir)
                    .map_err(|e| err(format!("COPY {}: {e}", h.word)))?;
            }
            Ok(())
        };
        // The key first, from the sources read and hashed where they are:
        // a cache hit then writes nothing (a cached rebuild of a big
        // context only reads it; staging 2000 files and removing them
        // again took seconds here, benches/build-results.md).
        let mut hashed = copier(true);
        copy_all(&mut hashed)?;
        crate::trace::step("copy: sources hashed");
        // The clamp is part of what the layer holds (its mtimes).
        let content = format!(
            "{} mtime<={}",
            content_hash(&hashed.entries),
            o.source_date_epoch
        );
        let key = cache_key(&parent_key(state), step, Some(&content));
        if let Some(layer) = cache_lookup(store, &key, o) {
            add_layer(state, &layer, &step.text);
            return Ok(" (cached)".to_string());
        }
        std::fs::create_dir_all(&staging).map_err(|source| BuildError::Read {
            path: staging.clone(),
            source,
        })?;
        let mut staged = copier(false);
        copy_all(&mut staged)?;
        crate::trace::step("copy: staged");
        let (layer, hit) = cached_layer(store, &key, o, &staging)?;
        add_layer(state, &layer, &step.text);
        Ok(if hit {
            " (cached)".to_string()
        } else {
            String::new()
        })
    })();
    let _ = std::fs::remove_dir_all(&staging);
    crate::trace::step("copy: staging removed");
    result
}

/// `layer` on top of the stage, with its history entry.
fn add_layer(state: &mut State, layer: &CachedLayer, created_by: &str) {
    if layer.zstd {
        to_oci_manifest(&mut state.manifest);
    }
    state.manifest.layers.push(Descriptor {
        media_type: if layer.zstd {
            manifest::OCI_LAYER_ZSTD
        } else if state.manifest.media_type == manifest::DOCKER_MANIFEST {
            manifest::DOCKER_LAYER_GZIP
        } else {
            manifest::OCI_LAYER_GZIP
        }
        .into(),
        digest: layer.digest.clone(),
        size: layer.size,
        platform: None,
        annotations: None,
    });
    if !state.config["rootfs"]["diff_ids"].is_array() {
        state.config["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    if let Some(ids) = state.config["rootfs"]["diff_ids"].as_array_mut() {
        ids.push(json!(layer.diff_id));
    }
    history(state, created_by, false);
}

/// A Docker schema 2 manifest as an OCI one: Docker's has no zstd layer
/// type, so a zstd layer over a Docker base makes the image OCI (as
/// `podman build --compression-format zstd` does); the base's layers keep
/// their bytes under the OCI names of the same formats.
fn to_oci_manifest(m: &mut Manifest) {
    if m.media_type != manifest::DOCKER_MANIFEST {
        return;
    }
    m.media_type = manifest::OCI_MANIFEST.into();
    for l in &mut m.layers {
        if l.media_type == manifest::DOCKER_LAYER_GZIP {
            l.media_type = manifest::OCI_LAYER_GZIP.into();
        } else if l.media_type == manifest::DOCKER_LAYER_TAR {
            l.media_type = manifest::OCI_LAYER_TAR.into();
        }
    }
}

/// The layer diff ids of a stage, lowest first.
fn diff_ids(state: &State) -> Vec<String> {
    state.config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// WORKDIR makes its directory when the stage lacks it, as Docker does:
/// a layer with the missing directories (0755, root), their existing
/// parents copied with their modes and owners so the layer changes nothing
/// else. Returns the progress suffix, or None when nothing was missing.
fn workdir_step(
    store: &Store,
    file: &str,
    o: &BuildOptions,
    state: &mut State,
    step: &Step,
    dir: &str,
) -> Result<Option<String>, BuildError> {
    let err = |m: String| step_error(file, step.pos, format!("WORKDIR {dir}: {m}"));
    let root = FromRoot::open(store, &diff_ids(state), step.pos.line).map_err(err)?;
    let staging = store
        .root()
        .join(format!("tmp/build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = (|| -> Result<Option<String>, BuildError> {
        std::fs::create_dir_all(&staging).map_err(|e| err(e.to_string()))?;
        let mut rel = String::new();
        let mut missing = false;
        for c in dir.split('/').filter(|c| !c.is_empty()) {
            rel = if rel.is_empty() {
                c.to_string()
            } else {
                format!("{rel}/{c}")
            };
            let target = staging.join(&rel);
            std::fs::create_dir(&target).map_err(|e| err(e.to_string()))?;
            let found = crate::sys::at::openat2(
                root.fd.as_fd(),
                Path::new(&rel),
                libc::O_PATH,
                RESOLVE_IN_ROOT,
            )
            .ok()
            .and_then(|fd| crate::sys::at::fstat(fd.as_fd()).ok())
            .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
            let (mode, uid, gid) = match found {
                Some(st) => (st.st_mode & 0o7777, st.st_uid, st.st_gid),
                None => {
                    missing = true;
                    (0o755, 0, 0)
                }
            };
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .and_then(|()| {
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                })
                .map_err(|e| err(e.to_string()))?;
        }
        if !missing {
            return Ok(None);
        }
        let content = format!("mtime<={}", o.source_date_epoch);
        let key = cache_key(&parent_key(state), step, Some(&content));
        let (layer, hit) = cached_layer(store, &key, o, &staging)?;
        add_layer(state, &layer, &step.text);
        Ok(Some(if hit {
            " (cached)".into()
        } else {
            String::new()
        }))
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// `--chown=NAME[:GROUP]`, looked up in the stage's /etc/passwd and
/// /etc/group (read inside its root). Docker: without a group, the GID is
/// the UID.
fn owner_by_name(store: &Store, state: &State, n: usize, spec: &str) -> Result<(u32, u32), String> {
    let (passwd, group) = id_files(store, state, n)?;
    let u = crate::spec::resolve_user(spec, passwd.as_deref(), group.as_deref())?;
    let has_group = spec.split_once(':').is_some_and(|(_, g)| !g.is_empty());
    Ok((u.uid, if has_group { u.gid } else { u.uid }))
}

/// The stage's /etc/passwd and /etc/group, read inside its root.
fn id_files(
    store: &Store,
    state: &State,
    n: usize,
) -> Result<(Option<String>, Option<String>), String> {
    let root = FromRoot::open(store, &diff_ids(state), n)?;
    let read = |rel: &str| -> Option<String> {
        let fd = crate::sys::at::openat2(
            root.fd.as_fd(),
            Path::new(rel),
            libc::O_RDONLY | libc::O_NONBLOCK,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        )
        .ok()?;
        let mut text = String::new();
        File::from(fd)
            .take(crate::rootfile::MAX_ID_FILE)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    };
    Ok((read("etc/passwd"), read("etc/group")))
}

/// RUN: a cache hit reuses the layer without running; otherwise the
/// command runs over the stage's layers (`build::run`) and its upper dir
/// becomes the layer. A non-zero exit fails the build with the step and
/// the status. `label` names the step in the progress and errors.
fn run_step_run(
    store: &Store,
    file: &str,
    o: &BuildOptions,
    state: &mut State,
    step: &Step,
    out: &mut dyn Write,
    label: &str,
) -> Result<String, BuildError> {
    let Op::Run(command) = &step.op else {
        return Err(step_error(file, step.pos, "not a RUN step"));
    };
    let err = |m: String| step_error(file, step.pos, format!("{label}: {}: {m}", step.text));
    // The network is part of what the command saw, so of its result.
    let content = format!(
        "network={} mtime<={}",
        o.network.name(),
        o.source_date_epoch
    );
    let key = cache_key(&parent_key(state), step, Some(&content));
    if let Some(l) = cache_lookup(store, &key, o) {
        add_layer(state, &l, &step.text);
        return Ok(" (cached)".into());
    }
    let (passwd, group) = id_files(store, state, step.pos.line).map_err(&err)?;
    let lowers = diff_ids(state)
        .iter()
        .map(|d| store.layer_path(d))
        .collect::<Result<Vec<PathBuf>, StoreError>>()?;
    let dir = store
        .root()
        .join(format!("tmp/build-{}-run", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    // The command's output starts on a line of its own.
    let _ = writeln!(out);
    let result = (|| {
        let r = super::run::Run {
            lowers,
            config: &state.config,
            shell: &state.shell,
            command,
            args: &step.args,
            network: o.network,
            storage_root: store.root(),
            dir: &dir,
            passwd,
            group,
        };
        let ran = super::run::run(&r, out, "  | ").map_err(&err)?;
        crate::trace::step("run: command done");
        if ran.status != 0 {
            return Err(err(format!(
                "the command exited with status {}",
                ran.status
            )));
        }
        let opts = TreeOptions {
            overlay_whiteouts: true,
            clamp_mtime: Some(o.source_date_epoch),
            ..TreeOptions::default()
        };
        store_layer(store, &key, o, &ran.upper, &opts)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    crate::trace::step("run: step dir removed");
    let layer = result?;
    add_layer(state, &layer, &step.text);
    Ok(format!(
        "  --> {}",
        &layer.digest[..19.min(layer.digest.len())]
    ))
}

fn parse_owner(s: &str) -> Option<(u32, u32)> {
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    Some((u.parse().ok()?, g.parse().ok()?))
}

/// A layer as the cache remembers it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CachedLayer {
    digest: String,
    diff_id: String,
    size: u64,
    /// A zstd blob (else gzip).
    #[serde(default)]
    zstd: bool,
}

/// The layer of `key` from the cache, or `staging` written as a new one.
fn cached_layer(
    store: &Store,
    key: &str,
    o: &BuildOptions,
    staging: &Path,
) -> Result<(CachedLayer, bool), BuildError> {
    if let Some(l) = cache_lookup(store, key, o) {
        return Ok((l, true));
    }
    let opts = TreeOptions {
        overlay_whiteouts: false,
        clamp_mtime: Some(o.source_date_epoch),
        ..TreeOptions::default()
    };
    Ok((store_layer(store, key, o, staging, &opts)?, false))
}

/// Where the cache keeps the layer of `key`: the same content compressed
/// another way is another blob, cached apart.
fn cache_path(store: &Store, key: &str, o: &BuildOptions) -> PathBuf {
    let name = key.trim_start_matches("sha256:");
    store.root().join("build-cache").join(match o.compression {
        Compression::Zstd => format!("{name}-zstd"),
        _ => name.to_string(),
    })
}

/// The layer of `key` when the cache has it (and its blob and unpacked
/// layer are still in the store); never with `--no-cache`.
fn cache_lookup(store: &Store, key: &str, o: &BuildOptions) -> Option<CachedLayer> {
    if o.no_cache {
        return None;
    }
    std::fs::read(cache_path(store, key, o))
        .ok()
        .and_then(|b| serde_json::from_slice::<CachedLayer>(&b).ok())
        .filter(|l| store.has_blob(&l.digest) && store.has_layer(&l.diff_id))
}

/// `dir` written as a layer (compressed as `o` says) that becomes the
/// layer directory itself (`dir` is gone afterwards), and remembered as the
/// result of `key`.
fn store_layer(
    store: &Store,
    key: &str,
    o: &BuildOptions,
    dir: &Path,
    opts: &TreeOptions,
) -> Result<CachedLayer, BuildError> {
    let blob = store.adopt_layer(dir, opts, o.compression)?;
    let l = CachedLayer {
        digest: blob.digest,
        diff_id: blob.diff_id,
        size: blob.size,
        zstd: o.compression == Compression::Zstd,
    };
    // The cache is an optimisation: failing to record it fails nothing.
    let path = cache_path(store, key, o);
    if path
        .parent()
        .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
    {
        if let Ok(b) = serde_json::to_vec(&l) {
            let _ = std::fs::write(&path, b);
        }
    }
    Ok(l)
}

/// Copies context sources into the staging tree, recording what it copied.
struct Copier<'a> {
    ctx: BorrowedFd<'a>,
    ignore: &'a Ignore,
    owner: (u32, u32),
    chmod: Option<u32>,
    entries: Vec<Entry>,
    add: bool,
    limits: crate::store::unpack::Limits,
    /// Read and hash the sources, write nothing (the cache key's pass).
    dry: bool,
}

const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

impl Copier<'_> {
    /// The sources, globs expanded (in their last component), each opened
    /// beneath the context.
    fn sources(&self, sources: &[String]) -> Result<Vec<(String, OwnedFd)>, String> {
        let mut out = Vec::new();
        for s in sources {
            if s.contains("://") {
                return Err(format!(
                    "{s}: a URL source is not supported (download it with RUN)"
                ));
            }
            let rel = clean(s.trim_start_matches('/'));
            if rel == ".." || rel.starts_with("../") {
                return Err(format!("{s}: outside the build context"));
            }
            let names = if rel.contains(['*', '?', '[']) {
                let (dir, pat) = rel.rsplit_once('/').unwrap_or((".", &rel));
                let d = self.open(dir)?;
                let d = reopen(d.as_fd(), true).map_err(|e| format!("{dir}: {e}"))?;
                let names: Vec<String> = list_dir(&d)
                    .map_err(|e| format!("{dir}: {e}"))?
                    .into_iter()
                    .filter_map(|n| n.to_str().map(str::to_string))
                    .filter(|n| glob_match(pat, n))
                    .map(|n| if dir == "." { n } else { format!("{dir}/{n}") })
                    .filter(|n| !self.ignore.ignored(n))
                    .collect();
                if names.is_empty() {
                    return Err(format!("{s}: no file in the build context matches"));
                }
                names
            } else {
                if rel != "." && self.ignore.ignored(&rel) {
                    return Err(format!("{s}: excluded by the context's ignore file"));
                }
                vec![rel]
            };
            for n in names {
                let fd = self.open(&n)?;
                out.push((n, fd));
            }
        }
        Ok(out)
    }

    fn open(&self, rel: &str) -> Result<OwnedFd, String> {
        crate::sys::at::openat2(
            self.ctx,
            Path::new(rel),
            libc::O_PATH,
            RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EXDEV) => format!("{rel}: a symlink leads outside the build context"),
            Some(libc::ENOENT) => format!("{rel}: no such file in the build context"),
            _ => format!("{rel}: {e}"),
        })
    }

    /// Copy one source: a directory's contents into `dest`; a file to
    /// `dest`, or into it when `into_dir`.
    fn copy_source(
        &mut self,
        rel: &str,
        fd: BorrowedFd,
        staging: &Path,
        dest: &str,
        into_dir: bool,
    ) -> io::Result<()> {
        let st = crate::sys::at::fstat(fd)?;
        let target = staging.join(dest.trim_start_matches('/'));
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            self.mkdirs(staging, dest)?;
            return self.copy_dir(rel, fd, &target, dest);
        }
        let name = Path::new(rel).file_name().unwrap_or(OsStr::new(rel));
        let dest_dir = dest;
        let (target, dest) = if into_dir {
            self.mkdirs(staging, dest)?;
            let d = format!("{}/{}", dest.trim_end_matches('/'), name.to_string_lossy());
            (target.join(name), d)
        } else {
            if let Some(parent) = Path::new(dest).parent() {
                self.mkdirs(staging, &parent.to_string_lossy())?;
            }
            (target, dest.to_string())
        };
        if self.add && is_archive(fd)? {
            return self.unpack(rel, fd, staging, dest_dir);
        }
        self.copy_node(fd, &target, &dest)
    }

    /// A here-document as the file `name` in `dest` (`into_dir`), else as
    /// `dest`; 0664 unless `--chmod` (BuildKit's `llb.Mkfile` mode).
    fn write_inline(
        &mut self,
        name: &str,
        data: &[u8],
        staging: &Path,
        dest: &str,
        into_dir: bool,
    ) -> io::Result<()> {
        if name.contains('/') || name == "." || name == ".." {
            return Err(io::Error::other(format!("{name:?} is no file name")));
        }
        let dest = if into_dir {
            self.mkdirs(staging, dest)?;
            format!("{}/{name}", dest.trim_end_matches('/'))
        } else {
            if let Some(parent) = Path::new(dest).parent() {
                self.mkdirs(staging, &parent.to_string_lossy())?;
            }
            dest.to_string()
        };
        let target = staging.join(dest.trim_start_matches('/'));
        let mode = self.chmod.unwrap_or(0o664);
        if !self.dry {
            std::fs::write(&target, data)?;
            std::os::unix::fs::lchown(&target, Some(self.owner.0), Some(self.owner.1))?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
        }
        self.entries.push(Entry {
            path: dest,
            mode: libc::S_IFREG | mode,
            uid: self.owner.0,
            gid: self.owner.1,
            data: format!("sha256:{}", hex::encode(Sha256::digest(data))),
        });
        Ok(())
    }

    /// ADD of a local archive: unpacked into the directory `dest` (Docker:
    /// the destination is a directory whatever its spelling), bounded as a
    /// pulled layer is; the archive's owners are kept.
    fn unpack(&mut self, rel: &str, fd: BorrowedFd, staging: &Path, dest: &str) -> io::Result<()> {
        self.mkdirs(staging, dest)?;
        let target = staging.join(dest.trim_start_matches('/'));
        let mut h = Sha256::new();
        io::copy(&mut reopen(fd, false)?, &mut h)?;
        if !self.dry {
            crate::store::unpack::unpack_layer_limited(reopen(fd, false)?, &target, self.limits)
                .map_err(|e| {
                    io::Error::other(format!(
                        "{rel}: {}",
                        crate::log::error_chain(&anyhow::Error::new(e))
                    ))
                })?;
        }
        self.entries.push(Entry {
            path: format!("{dest} <- {rel}"),
            mode: 0,
            uid: 0,
            gid: 0,
            data: format!("sha256:{}", hex::encode(h.finalize())),
        });
        Ok(())
    }

    /// Directories of `dest` (absolute, in the image), made in staging.
    fn mkdirs(&mut self, staging: &Path, dest: &str) -> io::Result<()> {
        if self.dry {
            return Ok(());
        }
        let mut p = staging.to_path_buf();
        for c in dest.split('/').filter(|c| !c.is_empty()) {
            p.push(c);
            if !p.is_dir() {
                std::fs::create_dir(&p)?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        Ok(())
    }

    fn copy_dir(&mut self, rel: &str, fd: BorrowedFd, target: &Path, dest: &str) -> io::Result<()> {
        let dir = reopen(fd, true)?;
        for name in list_dir(&dir)? {
            let child_rel = if rel == "." {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            let ignored = self.ignore.ignored(&child_rel);
            let node = open_node(dir.as_fd(), &name)?;
            let st = crate::sys::at::fstat(node.as_fd())?;
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            if ignored && !(is_dir && self.ignore.has_exclusions()) {
                continue;
            }
            let t = target.join(&name);
            let d = format!("{}/{}", dest.trim_end_matches('/'), name.to_string_lossy());
            if is_dir {
                self.copy_node(node.as_fd(), &t, &d)?;
                self.copy_dir(&child_rel, node.as_fd(), &t, &d)?;
            } else if !ignored {
                self.copy_node(node.as_fd(), &t, &d)?;
            }
        }
        Ok(())
    }

    /// One node (not a directory's contents) at `target`, owned and moded.
    fn copy_node(&mut self, fd: BorrowedFd, target: &Path, dest: &str) -> io::Result<()> {
        let st = crate::sys::at::fstat(fd)?;
        let kind = st.st_mode & libc::S_IFMT;
        let mode = self.chmod.unwrap_or(st.st_mode & 0o7777);
        let dry = self.dry;
        let data = match kind {
            libc::S_IFDIR => {
                if !dry && !target.is_dir() {
                    std::fs::create_dir(target)?;
                }
                String::new()
            }
            libc::S_IFREG => {
                let mut src = reopen(fd, false)?;
                let mut dst = if dry {
                    None
                } else {
                    Some(File::create(target)?)
                };
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = src.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                    if let Some(d) = dst.as_mut() {
                        d.write_all(&buf[..n])?;
                    }
                }
                format!("sha256:{}", hex::encode(h.finalize()))
            }
            libc::S_IFLNK => {
                let link = crate::sys::at::readlinkat(fd, OsStr::new(""))?;
                if !dry {
                    let _ = std::fs::remove_file(target);
                    std::os::unix::fs::symlink(&link, target)?;
                }
                link.as_os_str().to_string_lossy().into_owned()
            }
            _ => {
                return Err(io::Error::other(format!(
                    "{dest}: not a regular file, directory or symlink"
                )))
            }
        };
        if !dry {
            std::os::unix::fs::lchown(target, Some(self.owner.0), Some(self.owner.1))?;
            if kind != libc::S_IFLNK {
                std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))?;
            }
        }
        self.entries.push(Entry {
            path: dest.to_string(),
            mode: (st.st_mode & libc::S_IFMT) | mode,
            uid: self.owner.0,
            gid: self.owner.1,
            data,
        });
        Ok(())
    }
}

/// Whether a file starts like a tar or a compressed tar (ADD unpacks those).
fn is_archive(fd: BorrowedFd) -> io::Result<bool> {
    let st = crate::sys::at::fstat(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(false);
    }
    let mut f = reopen(fd, false)?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let magic = head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']);
    Ok(magic || (n == 512 && &head[257..262] == b"ustar"))
}

/// Write the final config and manifest, and point every tag at it.
fn commit(store: &Store, state: &State, tags: &[Reference]) -> Result<String, BuildError> {
    let config = serde_json::to_vec(&state.config).unwrap_or_default();
    let config_digest = store.put_blob(&config, None)?;
    let mut m = state.manifest.clone();
    m.config = Descriptor {
        media_type: if m.media_type == manifest::DOCKER_MANIFEST {
            manifest::DOCKER_CONFIG
        } else {
            manifest::OCI_CONFIG
        }
        .into(),
        digest: config_digest,
        size: config.len() as u64,
        platform: None,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&m).unwrap_or_default();
    let digest = store.put_blob(&bytes, None)?;
    for t in tags {
        store.set_ref(t, &digest)?;
    }
    Ok(digest)
}
