//! Validation: merged raw definition → [`Definition`], collecting every error
//! with its file, line, column and key.
//!
//! Pure: no file access (references to other containers and networks are
//! answered by the caller through [`References`]), no syscalls.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::container_keys::{self as ck, NetNs};
use super::definition::*;
use super::diag::{Diagnostic, Diagnostics};
use super::load::SourceFile;
use super::raw::{
    At, EnvMap, KeyMap, RawBuild, RawDefinition, RawHealth, RawNetwork, RawNetworkDef,
    RawResources, RawSecurity, RawService, RawTmpfs, Sp, StrOrInt,
};
use super::values;

/// More CPUs than any machine has; the bound keeps `CPUQuota=` a number systemd parses.
const MAX_CPUS: f64 = 100_000.0;

/// Answers about the rest of the configuration, for cross-references.
pub struct References<'a> {
    /// Whether a container definition of this name exists (and is not masked).
    pub container_exists: &'a dyn Fn(&str) -> bool,
    /// Whether a network of this name exists (`default` always does).
    pub network_exists: &'a dyn Fn(&str) -> bool,
    /// Whether a `timezone` name (already checked to be a plain relative
    /// name) is a file under /usr/share/zoneinfo on this host.
    pub zone_exists: &'a dyn Fn(&str) -> bool,
}

struct Ctx<'a> {
    files: &'a [SourceFile],
    diags: Diagnostics,
}

impl Ctx<'_> {
    fn err<T>(&mut self, at: &Sp<T>, key: &str, message: impl Into<String>) {
        let f = &self.files[at.file];
        self.diags.push(Diagnostic::at(
            &f.path,
            &f.text,
            at.span.clone(),
            key,
            message,
        ));
    }

    fn err_at(&mut self, at: &At, key: &str, message: impl Into<String>) {
        match &at.0 {
            Some((file, span)) => {
                let f = &self.files[*file];
                self.diags
                    .push(Diagnostic::at(&f.path, &f.text, span.clone(), key, message));
            }
            None => self.err_file(key, message),
        }
    }

    fn err_file(&mut self, key: &str, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::file(&self.files[0].path, key, message));
    }

    /// Parse a string-valued enum key.
    fn parse_enum<T>(
        &mut self,
        v: &Option<Sp<String>>,
        key: &str,
        parse: fn(&str) -> Option<T>,
        expected: fn() -> String,
        default: T,
    ) -> T {
        let Some(v) = v else { return default };
        match parse(&v.value) {
            Some(x) => x,
            None => {
                self.err(
                    v,
                    key,
                    format!(
                        "invalid value \"{}\": expected {}",
                        v.value.escape_debug(),
                        expected()
                    ),
                );
                default
            }
        }
    }

    /// An absolute path without `..` components or NUL bytes.
    fn abs_path(&mut self, v: &Sp<String>, key: &str) -> Option<PathBuf> {
        match check_abs_path(&v.value) {
            Ok(p) => Some(p),
            Err(why) => {
                self.err(v, key, why);
                None
            }
        }
    }

    fn size(&mut self, v: &Sp<StrOrInt>, key: &str) -> Option<u64> {
        let r = match &v.value {
            StrOrInt::Int(n) => u64::try_from(*n).map_err(|_| {
                format!("invalid size {n}: expected a non-negative number of bytes or a string such as \"256M\"")
            }),
            StrOrInt::Str(s) => {
                values::parse_size(s).map_err(|e| format!("invalid size \"{}\": {e}", s.escape_debug()))
            }
        };
        r.map_err(|e| self.err(v, key, e)).ok()
    }

    /// A permission mode, as an octal string: a TOML integer would read
    /// `755` as decimal and silently give other bits.
    fn mode(&mut self, v: &Sp<StrOrInt>, key: &str) -> Option<u32> {
        let r = match &v.value {
            StrOrInt::Int(n) => Err(format!(
                "invalid mode {n}: write it as an octal string, such as \"1777\" or \"0750\""
            )),
            StrOrInt::Str(s) => values::parse_mode(s)
                .map_err(|e| format!("invalid mode \"{}\": {e}", s.escape_debug())),
        };
        r.map_err(|e| self.err(v, key, e)).ok()
    }

    fn duration(&mut self, v: &Option<Sp<StrOrInt>>, key: &str, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        let r = match &v.value {
            StrOrInt::Int(n) => u64::try_from(*n).map(Duration::from_secs).map_err(|_| {
                format!("invalid duration {n}: expected a non-negative number of seconds or a string such as \"30s\"")
            }),
            StrOrInt::Str(s) => values::parse_duration(s)
                .map_err(|e| format!("invalid duration \"{}\": {e}", s.escape_debug())),
        };
        r.map_err(|e| self.err(v, key, e)).unwrap_or(default)
    }

    fn bool(&mut self, v: &Option<Sp<bool>>, default: bool) -> bool {
        v.as_ref().map_or(default, |v| v.value)
    }

    /// Each element through `f`, reporting failures at the element.
    fn each<T>(
        &mut self,
        list: &Option<Sp<Vec<Sp<String>>>>,
        key: &str,
        mut f: impl FnMut(&mut Self, &Sp<String>) -> Result<T, String>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for item in list.iter().flat_map(|l| l.value.iter()) {
            match f(self, item) {
                Ok(v) => out.push(v),
                Err(e) => self.err(item, key, e),
            }
        }
        out
    }
}

/// `Ok(path)` for an absolute path without `..` components or NUL bytes.
pub fn check_abs_path(s: &str) -> Result<PathBuf, String> {
    let p = Path::new(s);
    if !p.is_absolute() {
        return Err(format!(
            "relative path \"{}\": expected an absolute path (starting with \"/\")",
            s.escape_debug()
        ));
    }
    if s.contains('\0') {
        return Err(format!("path \"{}\" contains a NUL byte", s.escape_debug()));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "path \"{}\" contains \"..\": expected a path without parent-directory components",
            s.escape_debug()
        ));
    }
    Ok(p.to_path_buf())
}

/// Validate a merged definition. `files[0]` is the main file, the rest the
/// drop-ins in merge order; `hash` is their digest. Every error is collected
/// (each step below reports its own keys), then sorted by position.
pub fn validate_definition(
    name: &str,
    raw: RawDefinition,
    files: &[SourceFile],
    hash: String,
    refs: &References<'_>,
) -> Result<Definition, Diagnostics> {
    let mut cx = Ctx {
        files,
        diags: Diagnostics::default(),
    };
    let cx = &mut cx;
    let image = validate_image_source(cx, name, &raw);
    let (command, entrypoint) = validate_command(cx, &raw);
    let workdir = raw.workdir.as_ref().and_then(|w| cx.abs_path(w, "workdir"));
    let user = raw.user.as_ref().and_then(|u| {
        values::parse_user(&u.value)
            .map_err(|e| cx.err(u, "user", e))
            .ok()
    });
    let hostname = raw.hostname.as_ref().and_then(|h| {
        values::validate_hostname(&h.value)
            .map(|()| h.value.clone())
            .map_err(|e| cx.err(h, "hostname", e))
            .ok()
    });
    let environment = validate_environment(cx, &raw);
    let environment_files = cx.each(&raw.environment_files, "environment_files", |_, p| {
        check_abs_path(&p.value)
    });
    let read_only = cx.bool(&raw.read_only, false);
    let init = cx.bool(&raw.init, false);
    let network = validate_network(cx, name, raw.network.as_ref(), refs);
    // Volumes, tmpfs and secrets share one set of mount targets.
    let mut targets: HashSet<PathBuf> = HashSet::new();
    let volumes = validate_volumes(cx, &raw, &mut targets);
    let tmpfs = validate_tmpfs(cx, &raw, &mut targets);
    let resources = validate_resources(cx, raw.resources.as_ref());
    let mut security = validate_security(cx, raw.security.as_ref());
    validate_container_security(cx, raw.security.as_ref(), &network, &mut security);
    check_keep_id(cx, &raw, user.as_ref(), &security);
    let health = raw.health.as_ref().and_then(|h| validate_health(cx, h));
    let mut service = validate_service(cx, name, raw.service.as_ref(), refs);
    check_service_against_health(cx, &raw, &image, health.as_ref(), &mut service);
    let secrets = validate_secrets(cx, &raw, &mut targets);
    let labels = validate_labels(cx, raw.labels.as_ref(), "labels");
    let annotations = validate_labels(cx, raw.annotations.as_ref(), "annotations");
    let timezone = raw
        .timezone
        .as_ref()
        .and_then(|t| validate_timezone(cx, t, refs));

    match image {
        Some(image) if cx.diags.is_empty() => Ok(Definition {
            name: name.to_string(),
            source_path: files[0].path.clone(),
            dropins: files[1..].iter().map(|f| f.path.clone()).collect(),
            hash,
            image,
            command,
            entrypoint,
            workdir,
            user,
            hostname,
            environment,
            environment_files,
            read_only,
            init,
            network,
            volumes,
            tmpfs,
            resources,
            security,
            health,
            service,
            secrets,
            labels,
            annotations,
            timezone,
        }),
        _ => {
            let mut diags = std::mem::take(&mut cx.diags);
            diags.sort();
            Err(diags)
        }
    }
}

/// Exactly one of `image` (parsed with the one reference grammar), `rootfs`
/// and `[build]`.
fn validate_image_source(cx: &mut Ctx<'_>, name: &str, raw: &RawDefinition) -> Option<ImageSource> {
    let files = cx.files;
    // Where each source was set, for "both are set" messages.
    let set_at = |file: usize, start: usize| {
        let f = &files[file];
        let (line, col) = super::diag::line_column(&f.text, start);
        format!("{}:{line}:{col}", f.path.display())
    };
    match (&raw.image, &raw.rootfs, &raw.build) {
        (Some(i), None, None) => match values::parse_image(&i.value) {
            Ok(r) => Some(ImageSource::Image(r)),
            Err(e) => {
                cx.err(i, "image", e);
                None
            }
        },
        (None, Some(r), None) => cx.abs_path(r, "rootfs").map(ImageSource::Rootfs),
        (None, None, Some(b)) => {
            validate_build(cx, name, b).map(|b| ImageSource::Build(Box::new(b)))
        }
        (Some(i), Some(r), _) => {
            cx.err(
                r,
                "rootfs",
                format!(
                    "both \"image\" (set at {}) and \"rootfs\" are set: expected exactly one image source",
                    set_at(i.file, i.span.start)
                ),
            );
            None
        }
        (Some(i), None, Some(b)) | (None, Some(i), Some(b)) => {
            let key = if raw.image.is_some() {
                "image"
            } else {
                "rootfs"
            };
            let other = set_at(i.file, i.span.start);
            cx.err_at(
                &b.at,
                "[build]",
                format!(
                    "both \"{key}\" (set at {other}) and [build] are set: expected exactly one image source (remove \"{key}\" to run the built image)"
                ),
            );
            None
        }
        (None, None, None) => {
            cx.err_file(
                "",
                "no image source: expected exactly one of \"image\" (an OCI image reference), \"rootfs\" (a directory) or [build] (a Containerfile built by berth)",
            );
            None
        }
    }
}

/// `[build]`: `context` (required, absolute), `file` (absolute or inside
/// the context), `args` (ARG names), `target` (a stage name). Whether the
/// context and the file exist is `berth check`'s to say: at boot the
/// context may sit on a file system not mounted yet when the generator runs.
fn validate_build(cx: &mut Ctx<'_>, name: &str, b: &RawBuild) -> Option<Build> {
    let files = cx.files;
    let at = |v: &Sp<String>| {
        let f = &files[v.file];
        let (line, column) = super::diag::line_column(&f.text, v.span.start);
        KeyAt {
            file: f.path.clone(),
            line,
            column,
        }
    };
    let Some(c) = &b.context else {
        cx.err_at(
            &b.at,
            "[build] context",
            "missing key \"context\": expected the absolute path of the directory to build from, e.g. context = \"/srv/app\"",
        );
        return None;
    };
    let context = cx.abs_path(c, "[build] context").filter(|_| {
        // The unit names the context (RequiresMountsFor=), one line.
        let ok = !c.value.chars().any(char::is_control);
        if !ok {
            cx.err(
                c,
                "[build] context",
                "the path holds a control character: expected a plain directory path",
            );
        }
        ok
    });
    let file = b.file.as_ref().and_then(|f| {
        let p = Path::new(&f.value);
        let why = if f.value.is_empty() || f.value.contains('\0') {
            Some("expected a file name")
        } else if p.components().any(|c| c == Component::ParentDir) {
            Some("expected a path inside the context (without \"..\") or an absolute path")
        } else {
            None
        };
        match why {
            Some(why) => {
                cx.err(
                    f,
                    "[build] file",
                    format!("invalid file \"{}\": {why}", f.value.escape_debug()),
                );
                None
            }
            None => Some(p.to_path_buf()),
        }
    });
    let mut args = BTreeMap::new();
    for (k, (key, v)) in b.args.iter().flat_map(|a| a.0.iter()) {
        if let Err(e) = values::validate_env_name(k) {
            cx.err(
                key,
                "[build] args",
                e.replace("environment variable", "build argument"),
            );
        } else if v.value.contains('\0') {
            cx.err(
                v,
                "[build] args",
                format!("value of \"{k}\" contains a NUL byte"),
            );
        } else {
            args.insert(k.clone(), v.value.clone());
        }
    }
    let target = b.target.as_ref().and_then(|t| {
        // Docker's stage names: `[a-zA-Z][a-zA-Z0-9_.-]*` (buildkit
        // `instructions/parse.go`, `validStageName`).
        let ok = t.value.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && t.value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if ok {
            Some(t.value.to_ascii_lowercase())
        } else {
            cx.err(
                t,
                "[build] target",
                format!(
                    "invalid stage name \"{}\": expected the name of a FROM ... AS NAME line (a letter, then letters, digits, \"_\", \".\" or \"-\")",
                    t.value.escape_debug()
                ),
            );
            None
        }
    });
    let image = match Reference::parse(&format!("{BUILD_REPOSITORY}:{name}")) {
        Ok(r) => r,
        Err(e) => {
            cx.err(c, "[build]", format!("cannot name the built image: {e}"));
            return None;
        }
    };
    Some(Build {
        context: context?,
        file,
        args,
        target,
        image,
        context_at: at(c),
        file_at: b.file.as_ref().map(at),
        target_at: b.target.as_ref().map(at),
    })
}

/// `command` (never empty) and `entrypoint`; no argument may hold a NUL.
fn validate_command(
    cx: &mut Ctx<'_>,
    raw: &RawDefinition,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let command = raw.command.as_ref().and_then(|c| {
        if c.value.is_empty() {
            cx.err(c, "command", "empty command: expected at least the program to run, e.g. [\"nginx\", \"-g\", \"daemon off;\"]");
            None
        } else {
            Some(c.value.clone())
        }
    });
    let entrypoint = raw.entrypoint.as_ref().map(|e| e.value.clone());
    for (v, key) in [(&raw.command, "command"), (&raw.entrypoint, "entrypoint")] {
        if let Some(v) = v {
            if v.value.iter().any(|a| a.contains('\0')) {
                cx.err(v, key, "an argument contains a NUL byte");
            }
        }
    }
    (command, entrypoint)
}

fn validate_environment(cx: &mut Ctx<'_>, raw: &RawDefinition) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::new();
    for (k, (key, v)) in raw.environment.iter().flat_map(|e| e.0.iter()) {
        if let Err(e) = values::validate_env_name(k) {
            cx.err(key, "environment", e);
        } else if v.value.contains('\0') {
            cx.err(
                v,
                "environment",
                format!("value of \"{k}\" contains a NUL byte"),
            );
        } else {
            environment.insert(k.clone(), v.value.clone());
        }
    }
    environment
}

/// `labels` and `annotations`: a key is any non-empty text without `=`
/// (so `ps --filter label=K=V` can split it, as Docker's filter does) and
/// neither a key nor a value holds a NUL or a newline (inspect and the OCI
/// spec carry them as JSON strings; a line break would forge lines in `ps`).
fn validate_labels(
    cx: &mut Ctx<'_>,
    raw: Option<&super::raw::EnvMap>,
    key: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, (at, v)) in raw.iter().flat_map(|m| m.0.iter()) {
        let bad = |c: char| c == '\0' || c == '\n' || c == '\r';
        if k.is_empty() || k.contains('=') || k.contains(bad) {
            cx.err(
                at,
                key,
                format!(
                    "invalid name \"{}\": expected a non-empty name without \"=\", NUL or line breaks, such as \"tier\" or \"org.example.owner\"",
                    k.escape_debug()
                ),
            );
        } else if v.value.contains(bad) {
            cx.err(
                v,
                key,
                format!("value of \"{k}\" contains a NUL byte or a line break"),
            );
        } else {
            out.insert(k.clone(), v.value.clone());
        }
    }
    out
}

/// `timezone`: `local`, or a zone name such as `Europe/Berlin`: letters,
/// digits, `_`, `-`, `+` in `/`-separated parts (tzdata's own rule for
/// names, which keeps it a plain path under /usr/share/zoneinfo: no `..`,
/// no leading `/`), that names a file there.
fn validate_timezone(cx: &mut Ctx<'_>, t: &Sp<String>, refs: &References<'_>) -> Option<Timezone> {
    let z = t.value.as_str();
    if z == "local" {
        return Some(Timezone::Local);
    }
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('-')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
    };
    if z.is_empty() || z.len() > 255 || !z.split('/').all(part_ok) {
        cx.err(
            t,
            "timezone",
            format!(
                "invalid time zone \"{}\": expected \"local\" or a zone name such as \"Europe/Berlin\" or \"UTC\"",
                z.escape_debug()
            ),
        );
        return None;
    }
    if !(refs.zone_exists)(z) {
        cx.err(
            t,
            "timezone",
            format!(
                "unknown time zone \"{}\": no file {}/{z} on this host (is tzdata installed? `timedatectl list-timezones` lists the names)",
                z.escape_debug(),
                ZONEINFO
            ),
        );
        return None;
    }
    Some(Timezone::Zone(z.to_string()))
}

fn validate_volumes(
    cx: &mut Ctx<'_>,
    raw: &RawDefinition,
    targets: &mut HashSet<PathBuf>,
) -> Vec<Volume> {
    let mut volumes = Vec::new();
    for v in raw.volume.iter().flat_map(|v| v.value.iter()) {
        let source = match &v.source {
            // Docker's `-v /data` and a Containerfile's VOLUME: an
            // anonymous volume.
            None => Some(VolumeSource::Anonymous),
            Some(s) if s.value.starts_with('/') => {
                cx.abs_path(s, "[[volume]] source").map(VolumeSource::Bind)
            }
            Some(s) => match values::validate_name(&s.value) {
                Ok(()) => Some(VolumeSource::Named(s.value.clone())),
                Err(e) => {
                    cx.err(
                        s,
                        "[[volume]] source",
                        format!("{e}; a bind mount source must be an absolute path"),
                    );
                    None
                }
            },
        };
        let target = required_target(cx, &v.target, &v.at, "[[volume]]", targets);
        let propagation = v.propagation.as_ref().map(|p| {
            cx.parse_enum(
                &Some(p.clone()),
                "[[volume]] propagation",
                Propagation::parse,
                Propagation::expected,
                Propagation::Rprivate,
            )
        });
        if let (Some(source), Some(target)) = (source, target) {
            volumes.push(Volume {
                source,
                target,
                read_only: cx.bool(&v.read_only, false),
                propagation,
                chown: cx.bool(&v.chown, false),
            });
        }
    }
    volumes
}

fn validate_tmpfs(
    cx: &mut Ctx<'_>,
    raw: &RawDefinition,
    targets: &mut HashSet<PathBuf>,
) -> Vec<Tmpfs> {
    let mut tmpfs = Vec::new();
    for t in raw.tmpfs.iter().flat_map(|t| t.value.iter()) {
        let target = required_target(cx, &t.target, &t.at, "[[tmpfs]]", targets);
        let size = t.size.as_ref().and_then(|s| cx.size(s, "[[tmpfs]] size"));
        let mode = t.mode.as_ref().and_then(|m| cx.mode(m, "[[tmpfs]] mode"));
        let (options, uid, gid) = validate_tmpfs_options(cx, t);
        if let Some(target) = target {
            tmpfs.push(Tmpfs {
                target,
                size,
                mode,
                options,
                uid,
                gid,
            });
        }
    }
    tmpfs
}

/// What `[service]` says must agree with `[health]` and the image source.
fn check_service_against_health(
    cx: &mut Ctx<'_>,
    raw: &RawDefinition,
    image: &Option<ImageSource>,
    health: Option<&Health>,
    service: &mut Service,
) {
    // `on_failure = "restart"` kills the container and lets systemd's
    // Restart= bring it back: unset, restart becomes "on-failure" so the
    // key does what it says; set to "no", the two contradict each other.
    if health.is_some_and(|h| h.on_failure == OnFailure::Restart) {
        match raw.service.as_ref().and_then(|s| s.restart.as_ref()) {
            None => service.restart = Restart::OnFailure,
            Some(r) if service.restart == Restart::No => cx.err(
                r,
                "[service] restart",
                "restart = \"no\" contradicts [health] on_failure = \"restart\": use \"on-failure\" or \"always\", or on_failure = \"kill\"",
            ),
            Some(_) => {}
        }
    }

    if let Some(s) = raw.service.as_ref() {
        if service.notify == Notify::Healthy && health.is_none() && raw.health.is_none() {
            if let Some(n) = &s.notify {
                cx.err(
                    n,
                    "[service] notify",
                    "notify = \"healthy\" needs a [health] table with a command",
                );
            }
        }
        if service.auto_update {
            if let (Some(a), Some(ImageSource::Rootfs(_))) = (&s.auto_update, image) {
                cx.err(
                    a,
                    "[service] auto_update",
                    "auto_update needs an image from a registry, not a rootfs",
                );
            }
        }
        // A declared build is run at every start and pulls a FROM image
        // only when it is missing; `pull` and `auto_update` speak of a
        // registry image the definition does not name.
        if let Some(ImageSource::Build(_)) = image {
            if let (Some(a), true) = (&s.auto_update, service.auto_update) {
                cx.err(
                    a,
                    "[service] auto_update",
                    "auto_update needs an image from a registry, not a [build] (the image is rebuilt at each start)",
                );
            }
            if let Some(p) = &s.pull {
                cx.err(
                    p,
                    "[service] pull",
                    "pull does not apply to a [build]: each start builds, pulling a FROM image only when it is missing (remove \"pull\")",
                );
            }
        }
    }
}

/// `[[secret]]`: each credential once, each target a new mount target.
fn validate_secrets(
    cx: &mut Ctx<'_>,
    raw: &RawDefinition,
    targets: &mut HashSet<PathBuf>,
) -> Vec<Secret> {
    let mut secrets = Vec::new();
    let mut credentials = HashSet::new();
    let mut env_names = HashSet::new();
    for s in raw.secret.iter().flat_map(|s| s.value.iter()) {
        let Some(c) = &s.credential else {
            cx.err_at(
                &s.at,
                "[[secret]] credential",
                "missing key \"credential\": expected the name of a systemd credential",
            );
            continue;
        };
        if let Err(e) = values::validate_credential(&c.value) {
            cx.err(c, "[[secret]] credential", e);
            continue;
        }
        if !credentials.insert(c.value.clone()) {
            cx.err(
                c,
                "[[secret]] credential",
                format!("credential \"{}\" is listed twice", c.value),
            );
            continue;
        }
        let env = match secret_env(cx, s, raw) {
            Ok(env) => env,
            Err(()) => continue,
        };
        if let (Some(e), Some(n)) = (&env, &s.name) {
            if !env_names.insert(e.clone()) {
                cx.err(
                    n,
                    "[[secret]] name",
                    format!("variable \"{e}\" gets two secrets"),
                );
                continue;
            }
        }
        let target = match &s.target {
            Some(t) if env.is_some() => {
                cx.err(
                    t,
                    "[[secret]] target",
                    "a secret of type = \"env\" is no file: remove target, or the type",
                );
                continue;
            }
            Some(t) => match cx.abs_path(t, "[[secret]] target") {
                Some(p) => {
                    if !targets.insert(p.clone()) {
                        cx.err(
                            t,
                            "[[secret]] target",
                            format!("\"{}\" is already a mount target", p.display()),
                        );
                    }
                    p
                }
                None => continue,
            },
            None => PathBuf::from("/run/secrets").join(&c.value),
        };
        secrets.push(Secret {
            credential: c.value.clone(),
            target,
            env,
            encrypted: cx.bool(&s.encrypted, false),
        });
    }
    secrets
}

/// `type` and `name` of one `[[secret]]`: the variable of `type = "env"`
/// (never one `environment` sets too), `None` for a mounted file.
fn secret_env(
    cx: &mut Ctx<'_>,
    s: &super::raw::RawSecret,
    raw: &RawDefinition,
) -> Result<Option<String>, ()> {
    let env = match s.kind.as_ref().map(|k| k.value.as_str()) {
        None | Some("mount") => false,
        Some("env") => true,
        Some(other) => {
            let k = s.kind.as_ref().ok_or(())?;
            cx.err(
                k,
                "[[secret]] type",
                format!(
                    "invalid value \"{}\": expected \"mount\" or \"env\"",
                    other.escape_debug()
                ),
            );
            return Err(());
        }
    };
    match (&s.name, env) {
        (Some(n), false) => {
            cx.err(
                n,
                "[[secret]] name",
                "name is the variable of type = \"env\": add type = \"env\", or use target for a file",
            );
            Err(())
        }
        (None, true) => {
            cx.err_at(
                &s.at,
                "[[secret]] name",
                "missing key \"name\": type = \"env\" needs the environment variable, e.g. name = \"DB_PASSWORD\"",
            );
            Err(())
        }
        (None, false) => Ok(None),
        (Some(n), true) => {
            if let Err(e) = values::validate_env_name(&n.value) {
                cx.err(n, "[[secret]] name", e);
                return Err(());
            }
            let in_env = raw
                .environment
                .as_ref()
                .is_some_and(|e| e.0.contains_key(&n.value));
            if in_env {
                cx.err(
                    n,
                    "[[secret]] name",
                    format!("\"{}\" is also set by environment: keep one", n.value),
                );
                return Err(());
            }
            Ok(Some(n.value.clone()))
        }
    }
}

fn required_target(
    cx: &mut Ctx<'_>,
    target: &Option<Sp<String>>,
    at: &At,
    section: &str,
    seen: &mut HashSet<PathBuf>,
) -> Option<PathBuf> {
    let key = format!("{section} target");
    let Some(t) = target else {
        cx.err_at(
            at,
            &key,
            "missing key \"target\": expected an absolute path inside the container",
        );
        return None;
    };
    let p = cx.abs_path(t, &key)?;
    if !seen.insert(p.clone()) {
        cx.err(
            t,
            &key,
            format!("\"{}\" is already a mount target", p.display()),
        );
        return None;
    }
    Some(p)
}

/// `mode`, and with `container:NAME` the container whose network namespace
/// is joined: a defined one, not this one (`refs` knows which exist).
fn network_mode(
    cx: &mut Ctx<'_>,
    (own, raw): (&str, &RawNetwork),
    refs: &References<'_>,
) -> (NetworkMode, Option<String>) {
    const KEY: &str = "[network] mode";
    let Some(v) = &raw.mode else {
        return (NetworkMode::Bridge, None);
    };
    let Some(name) = v.value.strip_prefix("container:") else {
        let mode = cx.parse_enum(
            &raw.mode,
            KEY,
            |s| NetworkMode::parse(s).filter(|m| *m != NetworkMode::Container),
            NetworkMode::expected,
            NetworkMode::Bridge,
        );
        return (mode, None);
    };
    let problem = match values::validate_name(name) {
        Err(e) => Some(format!("\"container:{name}\": {e}")),
        Ok(()) if name == own => Some(format!(
            "\"container:{name}\" joins the container itself: name another container"
        )),
        Ok(()) if !(refs.container_exists)(name) => Some(format!(
            "\"container:{name}\": unknown container \"{name}\" (no definition of that name)"
        )),
        Ok(()) => None,
    };
    match problem {
        Some(p) => {
            cx.err(v, KEY, p);
            (NetworkMode::Bridge, None)
        }
        None => (NetworkMode::Container, Some(name.to_string())),
    }
}

fn validate_network(
    cx: &mut Ctx<'_>,
    name: &str,
    raw: Option<&RawNetwork>,
    refs: &References<'_>,
) -> Network {
    let empty = RawNetwork::default();
    let raw = raw.unwrap_or(&empty);
    let (mode, joined) = network_mode(cx, (name, raw), refs);
    if mode != NetworkMode::Bridge {
        // `ip` and `aliases` name a place on a bridge network: Docker refuses
        // them outside one too ("user specified IP address is supported on
        // user defined networks only", daemon/container_operations.go).
        // `dns`, `dns_search` and `extra_hosts` only write the container's
        // files, so they apply in every mode, as Docker's --dns and
        // --add-host do with --network host or none.
        for (v, key) in [
            (&raw.networks, "[network] networks"),
            (&raw.publish, "[network] publish"),
            (&raw.aliases, "[network] aliases"),
        ] {
            if let Some(v) = v {
                if !v.value.is_empty() {
                    cx.err(
                        v,
                        key,
                        format!("only allowed with mode = \"bridge\" (mode is \"{mode}\")"),
                    );
                }
            }
        }
        for (k, _) in raw.ip.iter().flat_map(|m| m.0.values()) {
            cx.err(
                k,
                "[network] ip",
                format!("only allowed with mode = \"bridge\" (mode is \"{mode}\")"),
            );
        }
    }
    if mode == NetworkMode::Container {
        // The joined container's /etc/hosts and resolv.conf are shared with
        // its network: Docker refuses --dns and --add-host with
        // --network container: too ("conflicting options").
        for (v, key) in [
            (&raw.dns, "[network] dns"),
            (&raw.dns_search, "[network] dns_search"),
            (&raw.extra_hosts, "[network] extra_hosts"),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.value.is_empty()) {
                cx.err(
                    v,
                    key,
                    "not allowed with mode = \"container:NAME\": the container shares the other's /etc/hosts and resolv.conf; set it there".to_string(),
                );
            }
        }
    }
    let mut seen = HashSet::new();
    let mut networks = cx.each(&raw.networks, "[network] networks", |_, n| {
        values::validate_name(&n.value)?;
        if !(refs.network_exists)(&n.value) {
            return Err(format!(
                "unknown network \"{}\": expected \"default\" or a network defined in networks/{}.toml",
                n.value, n.value
            ));
        }
        if !seen.insert(n.value.clone()) {
            return Err(format!("network \"{}\" is listed twice", n.value));
        }
        Ok(n.value.clone())
    });
    let mut bound = HashSet::new();
    let publish = cx.each(&raw.publish, "[network] publish", |_, p| {
        let m = values::parse_port(&p.value)
            .map_err(|e| format!("invalid port mapping \"{}\": {e}", p.value.escape_debug()))?;
        for (host_port, _) in m.pairs() {
            if !bound.insert((m.host_ip, host_port, m.protocol)) {
                return Err(format!(
                    "host port {host_port}/{} is published twice",
                    m.protocol
                ));
            }
        }
        Ok(m)
    });
    if mode == NetworkMode::Bridge && raw.networks.is_none() {
        networks.push(defaults::NETWORK.to_string());
    }
    if mode != NetworkMode::Bridge {
        networks.clear();
    }
    let bridge = mode == NetworkMode::Bridge;
    let (ip, ip_at) = match bridge {
        true => validate_fixed_ips(cx, raw, &networks),
        false => Default::default(),
    };
    let names = validate_name_keys(cx, raw);
    Network {
        mode,
        networks,
        publish: if bridge { publish } else { Vec::new() },
        container: joined,
        ip,
        ip_at,
        aliases: if bridge { names.aliases } else { Vec::new() },
        dns: names.dns,
        dns_search: names.dns_search,
        extra_hosts: names.extra_hosts,
    }
}

/// `[network] ip`, keyed by network name: each a network the container
/// joins, each value an address; whether it lies in that network's subnet
/// is `network::config::check_fixed_ips`'s to say (the subnet may be carved).
#[allow(clippy::type_complexity)]
fn validate_fixed_ips(
    cx: &mut Ctx<'_>,
    raw: &RawNetwork,
    networks: &[String],
) -> (
    BTreeMap<String, std::net::IpAddr>,
    BTreeMap<String, (PathBuf, usize, usize)>,
) {
    let mut ip = BTreeMap::new();
    let mut at = BTreeMap::new();
    for (name, (k, v)) in raw.ip.iter().flat_map(|m| m.0.iter()) {
        if !networks.iter().any(|n| n == name) {
            let joined = networks
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ");
            cx.err(
                k,
                "[network] ip",
                format!(
                    "\"{}\" is not a network this container joins: expected one of [network] networks ({joined})",
                    name.escape_debug()
                ),
            );
            continue;
        }
        match values::parse_ip(&v.value) {
            Ok(addr) => {
                let f = &cx.files[v.file];
                let (line, column) = super::diag::line_column(&f.text, v.span.start);
                ip.insert(name.clone(), addr);
                at.insert(name.clone(), (f.path.clone(), line, column));
            }
            Err(e) => cx.err(v, "[network] ip", e),
        }
    }
    (ip, at)
}

/// What `aliases`, `dns`, `dns_search` and `extra_hosts` hold once valid.
struct NameKeys {
    aliases: Vec<String>,
    dns: Vec<std::net::IpAddr>,
    dns_search: Vec<String>,
    extra_hosts: Vec<(String, std::net::IpAddr)>,
}

fn validate_name_keys(cx: &mut Ctx<'_>, raw: &RawNetwork) -> NameKeys {
    let mut seen = HashSet::new();
    let aliases = cx.each(&raw.aliases, "[network] aliases", |_, a| {
        // Peers look an alias up as they look a container NAME up.
        values::validate_name(&a.value)?;
        if !seen.insert(a.value.clone()) {
            return Err(format!("alias \"{}\" is listed twice", a.value));
        }
        Ok(a.value.clone())
    });
    let dns = cx.each(&raw.dns, "[network] dns", |_, d| values::parse_ip(&d.value));
    let dns_search = cx.each(&raw.dns_search, "[network] dns_search", |_, d| {
        values::validate_domain(&d.value).map(|()| d.value.clone())
    });
    let extra_hosts = cx.each(&raw.extra_hosts, "[network] extra_hosts", |_, h| {
        values::parse_extra_host(&h.value)
    });
    NameKeys {
        aliases,
        dns,
        dns_search,
        extra_hosts,
    }
}

fn validate_resources(cx: &mut Ctx<'_>, raw: Option<&RawResources>) -> Resources {
    let Some(raw) = raw else {
        return Resources::default();
    };
    let memory = raw.memory.as_ref().and_then(|m| {
        let v = cx.size(m, "[resources] memory")?;
        if v == 0 {
            cx.err(m, "[resources] memory", "memory must be greater than 0");
            return None;
        }
        Some(v)
    });
    let cpus = raw.cpus.as_ref().and_then(|c| {
        if c.value.is_finite() && (0.01..=MAX_CPUS).contains(&c.value) {
            Some(c.value)
        } else {
            cx.err(
                c,
                "[resources] cpus",
                format!(
                    "invalid cpus {}: expected a number from 0.01 to {MAX_CPUS}, e.g. 0.5 or 2",
                    c.value
                ),
            );
            None
        }
    });
    let pids = raw
        .pids
        .as_ref()
        .and_then(|p| match u64::try_from(p.value) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                cx.err(
                    p,
                    "[resources] pids",
                    format!("invalid pids {}: expected a number greater than 0", p.value),
                );
                None
            }
        });
    let io_weight = raw
        .io_weight
        .as_ref()
        .and_then(|w| match u16::try_from(w.value) {
            Ok(n) if (1..=10000).contains(&n) => Some(n),
            _ => {
                cx.err(
                    w,
                    "[resources] io_weight",
                    format!(
                        "invalid io_weight {}: expected a number from 1 to 10000",
                        w.value
                    ),
                );
                None
            }
        });
    let ulimits = validate_ulimits(cx, raw.ulimits.as_ref());
    let shm_size = raw.shm_size.as_ref().and_then(|m| {
        let v = cx.size(m, "[resources] shm_size")?;
        if v == 0 {
            cx.err(m, "[resources] shm_size", "shm_size must be greater than 0");
            return None;
        }
        Some(v)
    });
    let mut r = Resources {
        memory,
        cpus,
        pids,
        io_weight,
        ulimits,
        shm_size,
        ..Resources::default()
    };
    validate_more_resources(cx, raw, &mut r);
    r
}

/// `memory_swap`, `memory_reservation`, `cpuset`, `cpu_weight`, `io_max`.
fn validate_more_resources(cx: &mut Ctx<'_>, raw: &RawResources, r: &mut Resources) {
    r.memory_swap = raw
        .memory_swap
        .as_ref()
        .and_then(|m| cx.size(m, "[resources] memory_swap"));
    r.memory_reservation = raw.memory_reservation.as_ref().and_then(|m| {
        let v = cx.size(m, "[resources] memory_reservation")?;
        match r.memory {
            Some(limit) if v > limit => {
                // Docker refuses it too (daemon/daemon_unix.go: "Minimum
                // memory limit can not be less than memory reservation limit").
                cx.err(
                    m,
                    "[resources] memory_reservation",
                    format!("memory_reservation {v} is above memory {limit}: a reservation is the part of the limit kept under pressure"),
                );
                None
            }
            _ => Some(v),
        }
    });
    r.cpuset = raw.cpuset.as_ref().and_then(|c| {
        values::parse_cpu_list(&c.value)
            .map_err(|e| cx.err(c, "[resources] cpuset", format!("invalid cpuset: {e}")))
            .ok()
    });
    r.cpu_weight = raw
        .cpu_weight
        .as_ref()
        .and_then(|w| match u16::try_from(w.value) {
            Ok(n) if (1..=10000).contains(&n) => Some(n),
            _ => {
                cx.err(
                    w,
                    "[resources] cpu_weight",
                    format!(
                        "invalid cpu_weight {}: expected a number from 1 to 10000 (100 is the default share)",
                        w.value
                    ),
                );
                None
            }
        });
    for (dev, value) in raw.io_max.iter().flat_map(|m| m.0.values()) {
        let key = format!("[resources] io_max.\"{}\"", dev.value);
        if !dev.value.starts_with('/') {
            cx.err(
                dev,
                &key,
                "expected the absolute path of a block device (e.g. \"/dev/sda\") or of a file on its file system",
            );
            continue;
        }
        match values::parse_io_max(&value.value) {
            Ok([rbps, wbps, riops, wiops]) => r.io_max.push(IoMax {
                device: PathBuf::from(&dev.value),
                rbps,
                wbps,
                riops,
                wiops,
            }),
            Err(e) => cx.err(value, &key, format!("invalid io_max: {e}")),
        }
    }
}

fn validate_security(cx: &mut Ctx<'_>, raw: Option<&RawSecurity>) -> Security {
    let empty = RawSecurity::default();
    let raw = raw.unwrap_or(&empty);
    let cap_add = cx.each(&raw.cap_add, "[security] cap_add", |_, c| {
        values::parse_capability(&c.value)
    });
    let cap_drop = cx.each(&raw.cap_drop, "[security] cap_drop", |_, c| {
        values::parse_capability(&c.value)
    });
    let seccomp = match &raw.seccomp {
        None => Seccomp::Default,
        Some(s) => match values::parse_seccomp(&s.value) {
            Ok(Seccomp::Profile(p)) => match check_abs_path(&p.to_string_lossy()) {
                Ok(p) => Seccomp::Profile(p),
                Err(e) => {
                    cx.err(s, "[security] seccomp", e);
                    Seccomp::Default
                }
            },
            Ok(v) => v,
            Err(e) => {
                cx.err(
                    s,
                    "[security] seccomp",
                    format!("invalid value \"{}\": {e}", s.value.escape_debug()),
                );
                Seccomp::Default
            }
        },
    };
    let userns = cx.parse_enum(
        &raw.userns,
        "[security] userns",
        Userns::parse,
        Userns::expected,
        Userns::Host,
    );
    let uid_map = validate_id_map(cx, &raw.uid_map, "[security] uid_map");
    let mut gid_map = validate_id_map(cx, &raw.gid_map, "[security] gid_map");
    if raw.gid_map.is_none() {
        gid_map = uid_map.clone();
    }
    if userns != Userns::Host {
        for m in [&raw.uid_map, &raw.gid_map].into_iter().flatten() {
            cx.err(
                m,
                "[security] uid_map",
                format!("explicit ID maps cannot be combined with userns = \"{userns}\": remove one (the maps make a user namespace of their own)"),
            );
        }
    }
    Security {
        cap_add,
        cap_drop,
        no_new_privileges: cx.bool(&raw.no_new_privileges, true),
        seccomp,
        userns,
        devices: Vec::new(),
        sysctls: BTreeMap::new(),
        mask: Vec::new(),
        unmask: Unmask::default(),
        group_add: Vec::new(),
        uid_map,
        gid_map,
    }
}

/// `[[tmpfs]] options`, `uid`, `gid`.
fn validate_tmpfs_options(
    cx: &mut Ctx<'_>,
    t: &RawTmpfs,
) -> (Vec<String>, Option<u32>, Option<u32>) {
    let options = cx.each(&t.options, "[[tmpfs]] options", |_, o| {
        ck::check_tmpfs_option(&o.value).map(|()| o.value.clone())
    });
    let mut id = |v: &Option<Sp<i64>>, key: &str| {
        let v = v.as_ref()?;
        u32::try_from(v.value)
            .map_err(|_| {
                cx.err(
                    v,
                    key,
                    format!(
                        "invalid id {}: expected a number from 0 to 4294967295",
                        v.value
                    ),
                )
            })
            .ok()
    };
    let uid = id(&t.uid, "[[tmpfs]] uid");
    let gid = id(&t.gid, "[[tmpfs]] gid");
    (options, uid, gid)
}

/// `[resources] ulimits`: Docker's names, "SOFT:HARD" or one number.
fn validate_ulimits(cx: &mut Ctx<'_>, raw: Option<&KeyMap<StrOrInt>>) -> BTreeMap<String, Ulimit> {
    let mut out = BTreeMap::new();
    for (name, (k, v)) in raw.iter().flat_map(|m| m.0.iter()) {
        let key = format!("[resources] ulimits {name}");
        if let Err(e) = ck::check_ulimit_name(name) {
            cx.err(k, &key, e);
            continue;
        }
        let text = match &v.value {
            StrOrInt::Str(s) => s.clone(),
            StrOrInt::Int(n) => n.to_string(),
        };
        match ck::parse_ulimit(&text) {
            Ok(u) => {
                out.insert(name.clone(), u);
            }
            Err(e) => cx.err(
                v,
                &key,
                format!("{name} = \"{}\": {e}", text.escape_debug()),
            ),
        }
    }
    out
}

/// `[security] devices`, `sysctls`, `mask`, `unmask`, `group_add`.
fn validate_container_security(
    cx: &mut Ctx<'_>,
    raw: Option<&RawSecurity>,
    network: &Network,
    security: &mut Security,
) {
    let Some(raw) = raw else { return };
    let userns = security.userns;
    security.devices = cx.each(&raw.devices, "[security] devices", |_, d| {
        let dev = ck::parse_device(&d.value)?;
        // In a user namespace mknod is refused and a node is bound from the
        // host's path of the same name (runc's bindMountDeviceNode).
        if userns != Userns::Host && dev.container != dev.host {
            return Err(format!(
                "device \"{}\": with userns = \"{userns}\" a device keeps its host path (it is bound from there); drop \"{}\"",
                d.value.escape_debug(),
                dev.container.display()
            ));
        }
        Ok(dev)
    });
    let net = match network.mode {
        NetworkMode::Host => NetNs::Host,
        NetworkMode::Container => NetNs::Joined,
        _ => NetNs::Own,
    };
    security.sysctls = validate_sysctls(cx, raw.sysctls.as_ref(), net);
    security.mask = cx.each(&raw.mask, "[security] mask", |_, p| {
        check_abs_path(&p.value)
    });
    let unmask = cx.each(&raw.unmask, "[security] unmask", |_, p| {
        match p.value.as_str() {
            "ALL" => Ok(None),
            other => {
                let path = check_abs_path(other)?;
                // Only what berth masks or makes read-only can be unmasked;
                // any other path would be a key that does nothing.
                let defaults = crate::spec::MASKED_PATHS
                    .iter()
                    .chain(crate::spec::READONLY_PATHS);
                if defaults.clone().any(|d| path == Path::new(d)) {
                    Ok(Some(path))
                } else {
                    let list: Vec<&str> = defaults.copied().collect();
                    Err(format!(
                        "\"{other}\" is not masked or read-only by default: expected \"ALL\" or one of {}",
                        values::one_of(&list)
                    ))
                }
            }
        }
    });
    security.unmask = Unmask {
        all: unmask.iter().any(Option::is_none),
        paths: unmask.into_iter().flatten().collect(),
    };
    for g in raw.group_add.iter().flat_map(|l| l.value.iter()) {
        let r = match &g.value {
            StrOrInt::Str(s) => ck::parse_group(s),
            StrOrInt::Int(n) => u32::try_from(*n)
                .map(GroupRef::Id)
                .map_err(|_| format!("invalid gid {n}: expected a number from 0 to 4294967295")),
        };
        match r {
            Ok(g) => security.group_add.push(g),
            Err(e) => cx.err(g, "[security] group_add", e),
        }
    }
}

fn validate_sysctls(
    cx: &mut Ctx<'_>,
    raw: Option<&EnvMap>,
    net: NetNs,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, (k, v)) in raw.iter().flat_map(|m| m.0.iter()) {
        match ck::check_sysctl(name, net) {
            // One write of one line to procfs: a newline would start another.
            Ok(()) if v.value.is_empty() || v.value.contains(['\n', '\0']) => cx.err(
                v,
                "[security] sysctls",
                format!(
                    "invalid value \"{}\" for sysctl \"{name}\": expected one non-empty line",
                    v.value.escape_debug()
                ),
            ),
            Ok(()) => {
                out.insert(name.clone(), v.value.clone());
            }
            Err(e) => cx.err(k, "[security] sysctls", e),
        }
    }
    out
}

/// `userns = "keep-id"` keeps the container user's host ID, so it needs
/// that user as numbers (the image's /etc/passwd is not read here) and not
/// root: root keeping host root would be no user namespace at all.
fn check_keep_id(cx: &mut Ctx<'_>, raw: &RawDefinition, user: Option<&User>, sec: &Security) {
    if sec.userns != Userns::KeepId {
        return;
    }
    let Some(at) = raw.security.as_ref().and_then(|s| s.userns.as_ref()) else {
        return;
    };
    match user {
        Some(User::Id { uid, .. }) if *uid != 0 => {}
        Some(User::Id { .. }) => cx.err(
            at,
            "[security] userns",
            "userns = \"keep-id\" with user 0: root keeping host root is no user namespace; use userns = \"auto\", or a non-root user",
        ),
        _ => cx.err(
            at,
            "[security] userns",
            "userns = \"keep-id\" needs user = \"UID[:GID]\" (numbers, not root): the ID the container's user keeps on the host",
        ),
    }
}

/// `uid_map`/`gid_map`: `"CONTAINER:HOST:SIZE"` each, sizes above 0, ends
/// within 2^32, and no two extents overlapping on either side (the kernel
/// refuses such a map when it is written: say so at the line instead).
fn validate_id_map(
    cx: &mut Ctx<'_>,
    raw: &Option<Sp<Vec<Sp<String>>>>,
    key: &str,
) -> Vec<IdMapping> {
    let maps = cx.each(raw, key, |_, s| values::parse_id_mapping(&s.value));
    for (i, a) in maps.iter().enumerate() {
        for b in &maps[..i] {
            let overlap = |x: u32, y: u32| {
                let (x, y) = (u64::from(x), u64::from(y));
                x < y + u64::from(b.size) && y < x + u64::from(a.size)
            };
            let side = if overlap(a.container, b.container) {
                Some("container")
            } else if overlap(a.host, b.host) {
                Some("host")
            } else {
                None
            };
            if let (Some(side), Some(list)) = (side, raw) {
                let at = &list.value[i];
                cx.err(
                    at,
                    key,
                    format!(
                        "\"{}\" overlaps \"{}:{}:{}\" on the {side} side: expected disjoint ranges",
                        at.value, b.container, b.host, b.size
                    ),
                );
            }
        }
    }
    if maps.len() > 340 {
        if let Some(list) = raw {
            cx.err(
                list,
                key,
                format!("{} extents: the kernel takes at most 340", maps.len()),
            );
        }
    }
    maps
}

fn validate_health(cx: &mut Ctx<'_>, raw: &RawHealth) -> Option<Health> {
    let command = match &raw.command {
        None => {
            cx.err_at(&raw.at, "[health] command", "missing key \"command\": expected the check to run, e.g. [\"wget\", \"-qO-\", \"http://127.0.0.1/\"]");
            None
        }
        Some(c) if c.value.is_empty() => {
            cx.err(
                c,
                "[health] command",
                "empty command: expected at least the program to run",
            );
            None
        }
        Some(c) => Some(c.value.clone()),
    };
    let interval = cx.duration(
        &raw.interval,
        "[health] interval",
        defaults::HEALTH_INTERVAL,
    );
    if interval.is_zero() {
        if let Some(i) = &raw.interval {
            cx.err(i, "[health] interval", "interval must be greater than 0");
        }
    }
    let timeout = cx.duration(&raw.timeout, "[health] timeout", defaults::HEALTH_TIMEOUT);
    if timeout.is_zero() {
        if let Some(t) = &raw.timeout {
            cx.err(t, "[health] timeout", "timeout must be greater than 0");
        }
    }
    let start_period = cx.duration(&raw.start_period, "[health] start_period", Duration::ZERO);
    let start_interval = cx.duration(
        &raw.start_interval,
        "[health] start_interval",
        defaults::HEALTH_START_INTERVAL,
    );
    if start_interval.is_zero() {
        if let Some(i) = &raw.start_interval {
            cx.err(
                i,
                "[health] start_interval",
                "start_interval must be greater than 0",
            );
        }
    }
    let retries = match &raw.retries {
        None => defaults::HEALTH_RETRIES,
        Some(r) => match u32::try_from(r.value) {
            Ok(n) if n > 0 => n,
            _ => {
                cx.err(
                    r,
                    "[health] retries",
                    format!(
                        "invalid retries {}: expected a number greater than 0",
                        r.value
                    ),
                );
                defaults::HEALTH_RETRIES
            }
        },
    };
    let on_failure = cx.parse_enum(
        &raw.on_failure,
        "[health] on_failure",
        OnFailure::parse,
        OnFailure::expected,
        OnFailure::None,
    );
    Some(Health {
        command: command?,
        interval,
        timeout,
        retries,
        start_period,
        on_failure,
        start_interval,
    })
}

fn validate_service(
    cx: &mut Ctx<'_>,
    name: &str,
    raw: Option<&RawService>,
    refs: &References<'_>,
) -> Service {
    let empty = RawService::default();
    let raw = raw.unwrap_or(&empty);
    let restart = cx.parse_enum(
        &raw.restart,
        "[service] restart",
        Restart::parse,
        Restart::expected,
        Restart::No,
    );
    let notify = cx.parse_enum(
        &raw.notify,
        "[service] notify",
        Notify::parse,
        Notify::expected,
        Notify::Started,
    );
    let pull = cx.parse_enum(
        &raw.pull,
        "[service] pull",
        Pull::parse,
        Pull::expected,
        Pull::Missing,
    );
    let mut seen = HashSet::new();
    let requires = cx.each(&raw.requires, "[service] requires", |_, r| {
        values::validate_name(&r.value)?;
        if r.value == name {
            return Err(format!("container \"{name}\" requires itself"));
        }
        if !(refs.container_exists)(&r.value) {
            return Err(format!(
                "unknown container \"{}\": expected the name of a definition in containers/ (NAME.toml)",
                r.value
            ));
        }
        if !seen.insert(r.value.clone()) {
            return Err(format!("container \"{}\" is listed twice", r.value));
        }
        Ok(r.value.clone())
    });
    let after = cx.each(&raw.after, "[service] after", |_, u| {
        dependency_unit(name, &u.value, refs)
    });
    let wanted_by = cx.each(&raw.wanted_by, "[service] wanted_by", |_, u| {
        values::validate_unit_name(&u.value)?;
        if !u.value.ends_with(".target") && !u.value.ends_with(".service") {
            return Err(format!(
                "\"{}\" cannot pull in a container: expected a target (e.g. \"multi-user.target\")",
                u.value
            ));
        }
        Ok(u.value.clone())
    });
    let deps = |cx: &mut Ctx<'_>, list, key| {
        cx.each(list, key, |_, u| dependency_unit(name, &u.value, refs))
    };
    let (wants, binds_to) = (
        deps(cx, &raw.wants, "[service] wants"),
        deps(cx, &raw.binds_to, "[service] binds_to"),
    );
    let (part_of, before) = (
        deps(cx, &raw.part_of, "[service] part_of"),
        deps(cx, &raw.before, "[service] before"),
    );
    Service {
        wants,
        binds_to,
        part_of,
        before,
        stop_signal: raw
            .stop_signal
            .as_ref()
            .and_then(|s| signal(cx, s, "[service] stop_signal")),
        reload: validate_reload(cx, raw),
        restart_sec: raw
            .restart_sec
            .as_ref()
            .map(|_| cx.duration(&raw.restart_sec, "[service] restart_sec", Duration::ZERO)),
        start_limit_burst: raw
            .start_limit_burst
            .as_ref()
            .and_then(|b| start_limit_burst(cx, b)),
        restart,
        requires,
        after,
        wanted_by,
        stop_timeout: cx.duration(
            &raw.stop_timeout,
            "[service] stop_timeout",
            defaults::STOP_TIMEOUT,
        ),
        notify,
        pull,
        auto_update: cx.bool(&raw.auto_update, false),
        group: raw.group.as_ref().and_then(|g| {
            // The group names a unit, berth-GROUP.target: the container
            // name grammar keeps it a valid unit name.
            match values::validate_name(&g.value) {
                Ok(()) => Some(g.value.clone()),
                Err(e) => {
                    cx.err(g, "[service] group", e);
                    None
                }
            }
        }),
    }
}

/// An entry of `after`, `wants`, `binds_to`, `part_of` or `before`: a name
/// with a unit suffix is that unit, as systemd spells it; another name is a
/// container, `berth@NAME.service`, whose definition must exist (a typo
/// would otherwise be a dependency on a unit that never starts).
fn dependency_unit(own: &str, value: &str, refs: &References<'_>) -> Result<String, String> {
    if values::validate_unit_name(value).is_ok() {
        return Ok(value.to_string());
    }
    values::validate_name(value).map_err(|_| {
        format!(
            "invalid dependency \"{}\": expected a container's name or a systemd unit such as \"postgresql.service\"",
            value.escape_debug()
        )
    })?;
    if value == own {
        return Err(format!("container \"{own}\" depends on itself"));
    }
    if !(refs.container_exists)(value) {
        return Err(format!(
            "unknown container \"{value}\": expected the name of a definition in containers/ (NAME.toml), or a unit name with its suffix"
        ));
    }
    Ok(format!("berth@{value}.service"))
}

/// `start_limit_burst`: a count of starts, at least 1.
fn start_limit_burst(cx: &mut Ctx<'_>, b: &Sp<i64>) -> Option<u32> {
    match u32::try_from(b.value) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            cx.err(
                b,
                "[service] start_limit_burst",
                format!(
                    "invalid start_limit_burst {}: expected a number of starts greater than 0",
                    b.value
                ),
            );
            None
        }
    }
}

/// A signal name or number, normalised (`hup` → `SIGHUP`).
fn signal(cx: &mut Ctx<'_>, s: &Sp<String>, key: &str) -> Option<String> {
    match values::parse_signal_name(&s.value) {
        Ok(n) => Some(n),
        Err(e) => {
            cx.err(s, key, e);
            None
        }
    }
}

/// `reload_signal` or `reload_command`, not both.
fn validate_reload(cx: &mut Ctx<'_>, raw: &RawService) -> Option<Reload> {
    match (&raw.reload_signal, &raw.reload_command) {
        (Some(_), Some(c)) => {
            cx.err(
                c,
                "[service] reload_command",
                "reload_signal and reload_command are both set: keep one",
            );
            None
        }
        (Some(s), None) => signal(cx, s, "[service] reload_signal").map(Reload::Signal),
        (None, Some(c)) if c.value.is_empty() || c.value[0].is_empty() => {
            cx.err(
                c,
                "[service] reload_command",
                "empty command: expected at least the program to run",
            );
            None
        }
        (None, Some(c)) => Some(Reload::Command(c.value.clone())),
        (None, None) => None,
    }
}

/// Validate a network definition file. Clashes between files (overlapping
/// subnets) are `crate::network::config`'s to find.
pub fn validate_network_def(
    name: &str,
    raw: RawNetworkDef,
    files: &[SourceFile],
) -> Result<NetworkDefinition, Diagnostics> {
    let mut cx = Ctx {
        files,
        diags: Diagnostics::default(),
    };
    let subnet = network_subnet(&mut cx, &raw.subnet, "subnet", false);
    let subnet6 = network_subnet(&mut cx, &raw.subnet6, "subnet6", true);
    let gateway = raw.gateway.as_ref().and_then(|g| {
        let ip: std::net::IpAddr = match g.value.parse() {
            Ok(ip) => ip,
            Err(_) => {
                cx.err(
                    g,
                    "gateway",
                    format!(
                        "invalid address \"{}\": expected an IPv4 address inside \"subnet\"",
                        g.value.escape_debug()
                    ),
                );
                return None;
            }
        };
        match subnet {
            Some(s) if !s.contains(ip) => {
                cx.err(
                    g,
                    "gateway",
                    format!("gateway {ip} is outside subnet {s}: expected an address inside it, or no gateway (the first host, {})", s.nth_host(1).map_or_else(String::new, |h| h.to_string())),
                );
                None
            }
            Some(s) if !s.is_host(ip) => {
                cx.err(
                    g,
                    "gateway",
                    format!("gateway {ip} is the network or broadcast address of {s}: expected a host address inside it"),
                );
                None
            }
            None if raw.subnet.is_none() => {
                cx.err(
                    g,
                    "gateway",
                    "a gateway needs a \"subnet\" to belong to: add subnet = \"A.B.C.0/24\" or remove gateway",
                );
                None
            }
            _ => Some(ip),
        }
    });
    let mtu = raw.mtu.as_ref().and_then(|m| {
        // 68: the smallest IPv4 link MTU (RFC 791); IPv6 needs 1280 (RFC 8200).
        let min = if subnet6.is_some() { 1280 } else { 68 };
        match u32::try_from(m.value) {
            Ok(v) if (min..=65535).contains(&v) => Some(v),
            _ => {
                cx.err(
                    m,
                    "mtu",
                    format!(
                        "invalid mtu {}: expected a number from {min} to 65535{}",
                        m.value,
                        if min == 1280 {
                            " (IPv6, subnet6, needs 1280 or more)"
                        } else {
                            ""
                        }
                    ),
                );
                None
            }
        }
    });
    let at = |v: &Option<Sp<String>>| {
        v.as_ref()
            .map(|v| super::diag::line_column(&files[v.file].text, v.span.start))
    };
    if cx.diags.is_empty() {
        Ok(NetworkDefinition {
            name: name.to_string(),
            source_path: Some(files[0].path.clone()),
            subnet,
            gateway,
            subnet6,
            internal: cx.bool(&raw.internal, false),
            mtu,
            dns: cx.bool(&raw.dns, true),
            subnet_at: at(&raw.subnet),
            subnet6_at: at(&raw.subnet6),
        })
    } else {
        cx.diags.sort();
        Err(cx.diags)
    }
}

/// A network file's `subnet` (IPv4) or `subnet6` (IPv6): the right family,
/// no host bits set, and room for a gateway and at least one member.
fn network_subnet(
    cx: &mut Ctx<'_>,
    v: &Option<Sp<String>>,
    key: &str,
    v6: bool,
) -> Option<values::Subnet> {
    let v = v.as_ref()?;
    let s = match values::parse_subnet(&v.value) {
        Ok(s) => s,
        Err(e) => {
            cx.err(v, key, e);
            return None;
        }
    };
    let problem = if s.addr.is_ipv6() != v6 {
        Some(if v6 {
            "an IPv4 prefix in subnet6: expected an IPv6 prefix (e.g. \"fd00:89:1::/64\"); put IPv4 in \"subnet\"".to_string()
        } else {
            "an IPv6 prefix in subnet: expected an IPv4 prefix (e.g. \"10.89.1.0/24\"); put IPv6 in \"subnet6\"".to_string()
        })
    } else if s.network() != s {
        Some(format!(
            "host bits set in \"{}\": expected \"{}\"",
            v.value,
            s.network()
        ))
    } else if s.nth_host(2).is_none() {
        let max = if v6 { 126 } else { 30 };
        Some(format!(
            "subnet {s} has no room for a gateway and a member: expected a prefix of at most /{max}"
        ))
    } else {
        None
    };
    match problem {
        Some(p) => {
            cx.err(v, key, p);
            None
        }
        None => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::parse_definition;

    fn check(text: &str) -> Result<Definition, Diagnostics> {
        let files = vec![SourceFile {
            path: PathBuf::from("/etc/berth/containers/web.toml"),
            text: text.to_string(),
        }];
        let (raw, errs) = parse_definition(text, 0);
        assert!(errs.is_empty(), "{errs:?}");
        let exists = |n: &str| n == "db";
        let net = |n: &str| n == "default" || n == "back";
        let zone = |z: &str| z == "Europe/Berlin" || z == "UTC";
        let refs = References {
            zone_exists: &zone,
            container_exists: &exists,
            network_exists: &net,
        };
        validate_definition("web", raw, &files, "h".into(), &refs)
    }

    fn errors(text: &str) -> Vec<String> {
        check(text)
            .unwrap_err()
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn network_name_keys() {
        let d = check(
            "image = \"a\"\n[network]\nnetworks = [\"back\"]\nip = { back = \"10.89.1.20\" }\n\
             aliases = [\"www\"]\ndns = [\"192.0.2.53\", \"2001:db8::53\"]\n\
             dns_search = [\"example.org\"]\nextra_hosts = [\"gw:192.0.2.1\", \"v6:2001:db8::1\"]\n",
        )
        .unwrap();
        let n = &d.network;
        assert_eq!(n.ip["back"].to_string(), "10.89.1.20");
        assert_eq!(
            n.ip_at["back"],
            (PathBuf::from("/etc/berth/containers/web.toml"), 4, 15)
        );
        assert_eq!(n.aliases, vec!["www"]);
        assert_eq!(n.dns.len(), 2);
        assert_eq!(n.dns_search, vec!["example.org"]);
        assert_eq!(n.extra_hosts[1].0, "v6");
        assert_eq!(n.extra_hosts[1].1.to_string(), "2001:db8::1");
        // dns, dns_search and extra_hosts only write files: every mode
        // takes them (Docker's --dns and --add-host with --network host).
        let d = check("image = \"a\"\n[network]\nmode = \"none\"\ndns = [\"192.0.2.53\"]\nextra_hosts = [\"gw:192.0.2.1\"]\n").unwrap();
        assert_eq!(d.network.dns.len(), 1);
        assert_eq!(d.network.extra_hosts.len(), 1);
        let e =
            errors("image = \"a\"\n[network]\nmode = \"none\"\nip = { default = \"10.89.0.2\" }\n");
        assert!(
            e[0].contains("[network] ip: only allowed with mode = \"bridge\""),
            "{e:?}"
        );
    }

    #[test]
    fn full_example_validates() {
        let d = check(
            r#"image = "registry.example.org/library/nginx:1.27"
command = ["nginx", "-g", "daemon off;"]
entrypoint = ["/docker-entrypoint.sh"]
workdir = "/"
user = "101:101"
hostname = "web"
environment = { TZ = "UTC" }
environment_files = ["/etc/berth/web.env"]
read_only = false
init = true
[network]
mode = "bridge"
networks = ["default", "back"]
publish = ["8080:80", "127.0.0.1:8443:443/tcp", "5353:53/udp"]
[[volume]]
source = "webdata"
target = "/usr/share/nginx/html"
[[volume]]
source = "/srv/web/conf"
target = "/etc/nginx/conf.d"
read_only = true
[[tmpfs]]
target = "/tmp"
size = "64M"
[resources]
memory = "256M"
cpus = 0.5
pids = 200
io_weight = 100
[security]
cap_add = ["NET_BIND_SERVICE"]
cap_drop = ["ALL"]
no_new_privileges = true
seccomp = "default"
userns = "auto"
[health]
command = ["wget", "-qO-", "http://127.0.0.1/"]
interval = "30s"
timeout = "5s"
retries = 3
start_period = "10s"
on_failure = "restart"
[service]
restart = "on-failure"
requires = ["db"]
after = []
wanted_by = ["multi-user.target"]
stop_timeout = "10s"
notify = "healthy"
pull = "missing"
auto_update = true
[[secret]]
credential = "db-password"
target = "/run/secrets/db-password"
"#,
        )
        .unwrap();
        assert_eq!(d.resources.memory, Some(256 << 20));
        assert_eq!(d.volumes[0].source, VolumeSource::Named("webdata".into()));
        assert_eq!(
            d.volumes[1].source,
            VolumeSource::Bind("/srv/web/conf".into())
        );
        assert_eq!(d.tmpfs[0].size, Some(64 << 20));
        assert_eq!(d.security.cap_add, vec!["CAP_NET_BIND_SERVICE"]);
        assert_eq!(d.security.userns, Userns::Auto);
        assert_eq!(d.health.as_ref().unwrap().timeout, Duration::from_secs(5));
        assert_eq!(d.service.restart, Restart::OnFailure);
        assert_eq!(d.network.publish.len(), 3);
        assert_eq!(
            d.user,
            Some(User::Id {
                uid: 101,
                gid: Some(101)
            })
        );
    }

    #[test]
    fn defaults() {
        let d = check("rootfs = \"/srv/root\"\n").unwrap();
        assert_eq!(d.image, ImageSource::Rootfs("/srv/root".into()));
        assert_eq!(d.network.mode, NetworkMode::Bridge);
        assert_eq!(d.network.networks, vec!["default"]);
        assert_eq!(d.service.stop_timeout, Duration::from_secs(10));
        assert_eq!(d.service.restart, Restart::No);
        assert_eq!(d.security.seccomp, Seccomp::Default);
        assert!(d.health.is_none());
        let d = check("image = \"a\"\n[network]\nmode = \"host\"\n").unwrap();
        assert!(d.network.networks.is_empty());
        let d = check("image = \"a\"\n[[secret]]\ncredential = \"pw\"\n").unwrap();
        assert_eq!(d.secrets[0].target, PathBuf::from("/run/secrets/pw"));
    }

    #[test]
    fn image_source_rules() {
        assert_eq!(errors(""), vec!["error: /etc/berth/containers/web.toml: no image source: expected exactly one of \"image\" (an OCI image reference), \"rootfs\" (a directory) or [build] (a Containerfile built by berth)"]);
        let e = errors("image = \"a\"\nrootfs = \"/r\"\n");
        assert!(
            e[0].contains(
                ":2:10: rootfs: both \"image\" (set at /etc/berth/containers/web.toml:1:9)"
            ),
            "{e:?}"
        );
        assert!(errors("rootfs = \"r\"\n")[0].contains("relative path"));
        // [build]: the built image is named after the container.
        let d = check("[build]\ncontext = \"/srv/app\"\nfile = \"ci/Containerfile\"\nargs = { V = \"1\" }\ntarget = \"Final\"\n").unwrap();
        let ImageSource::Build(b) = &d.image else {
            panic!("{:?}", d.image)
        };
        assert_eq!(b.image.to_string(), "localhost/berth-build:web");
        assert_eq!(
            b.containerfile(|_| true),
            Path::new("/srv/app/ci/Containerfile")
        );
        assert_eq!(b.target.as_deref(), Some("final"));
        assert_eq!(b.args.get("V").map(String::as_str), Some("1"));
        assert_eq!((b.context_at.line, b.context_at.column), (2, 11));
        let e = errors("rootfs = \"/r\"\n[build]\ncontext = \"/a\"\n");
        assert!(
            e[0].contains(":2:1: [build]: both \"rootfs\" (set at"),
            "{e:?}"
        );
        assert!(errors("image = \"UPPER\"\n")[0].contains("invalid image"));
    }

    #[test]
    fn timezone_names() {
        let tz = |v: &str| check(&format!("image = \"a\"\ntimezone = \"{v}\"\n"));
        assert_eq!(tz("local").unwrap().timezone, Some(Timezone::Local));
        assert_eq!(
            tz("Europe/Berlin").unwrap().timezone,
            Some(Timezone::Zone("Europe/Berlin".into()))
        );
        for bad in [
            "/etc/passwd",
            "../../etc/shadow",
            "Europe//Berlin",
            "",
            "a b",
            "Europe/..",
        ] {
            let e = errors(&format!("image = \"a\"\ntimezone = \"{bad}\"\n")).join("\n");
            assert!(
                e.contains("2:12: timezone: invalid time zone"),
                "{bad}: {e}"
            );
        }
        let e = errors("image = \"a\"\ntimezone = \"Mars/Olympus\"\n").join("\n");
        assert!(
            e.contains("timezone: unknown time zone \"Mars/Olympus\": no file /usr/share/zoneinfo/Mars/Olympus"),
            "{e}"
        );
    }

    #[test]
    fn every_error_is_reported() {
        let e = errors(
            "image = \"a\"\nworkdir = \"rel\"\nuser = \"1:x\"\nhostname = \"-h\"\nenvironment = { \"1A\" = \"x\" }\n\
             [network]\npublish = [\"99999:80\"]\nnetworks = [\"nope\"]\n\
             [resources]\nmemory = \"256Q\"\ncpus = 0\npids = 0\nio_weight = 10001\n\
             [security]\ncap_add = [\"FLY\"]\nseccomp = \"strict\"\nuserns = \"private\"\n\
             [health]\ninterval = \"30x\"\nretries = 0\non_failure = \"explode\"\n\
             [service]\nrestart = \"sometimes\"\nrequires = [\"web\", \"ghost\"]\nafter = [\"x\"]\nwanted_by = [\"a.socket\"]\nstop_timeout = -1\nnotify = \"never\"\npull = \"maybe\"\n\
             [[volume]]\nsource = \"bad name\"\ntarget = \"/v\"\n[[volume]]\ntarget = \"/v\"\npropagation = \"up\"\n[[tmpfs]]\nsize = \"1Q\"\n[[tmpfs]]\ntarget = \"/m1\"\nmode = 755\n[[tmpfs]]\ntarget = \"/m2\"\nmode = \"rwx\"\n[[secret]]\ncredential = \"a/b\"\n",
        );
        let text = e.join("\n");
        for want in [
            "workdir: relative path",
            "user: invalid gid",
            "hostname: invalid hostname",
            "environment: invalid environment variable name \"1A\"",
            "[network] publish: invalid port mapping \"99999:80\"",
            "[network] networks: unknown network \"nope\"",
            ":10:10: [resources] memory: invalid size \"256Q\": expected a number with an optional unit K, M, G or T (e.g. \"256M\")",
            "[resources] cpus: invalid cpus 0",
            "[resources] pids: invalid pids 0",
            "[resources] io_weight: invalid io_weight 10001",
            "[security] cap_add: unknown capability \"FLY\"",
            "[security] seccomp: invalid value \"strict\"",
            "[security] userns: invalid value \"private\": expected \"host\", \"auto\" or \"keep-id\"",
            "[health] command: missing key \"command\"",
            "[health] interval: invalid duration \"30x\"",
            "[health] retries: invalid retries 0",
            "[health] on_failure: invalid value \"explode\"",
            "[service] restart: invalid value \"sometimes\": expected \"no\", \"on-failure\" or \"always\"",
            "[service] requires: container \"web\" requires itself",
            "[service] requires: unknown container \"ghost\"",
            "[service] after: unknown container \"x\"",
            "[service] wanted_by: \"a.socket\" cannot pull in a container",
            "[service] stop_timeout: invalid duration -1",
            "[service] notify: invalid value \"never\"",
            "[service] pull: invalid value \"maybe\"",
            "[[volume]] source: invalid name \"bad name\"",
            "[[volume]] propagation: invalid value \"up\": expected \"private\", \"rprivate\"",
            "[[volume]] target: \"/v\" is already a mount target",
            "[[tmpfs]] target: missing key \"target\"",
            "[[tmpfs]] size: invalid size \"1Q\"",
            "[[tmpfs]] mode: invalid mode 755: write it as an octal string, such as \"1777\" or \"0750\"",
            "[[tmpfs]] mode: invalid mode \"rwx\": expected up to four octal digits",
            "[[secret]] credential: invalid credential name \"a/b\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(e.len(), 33, "{text}");
        // Sorted by position.
        let lines: Vec<usize> = check("image = \"a\"\nworkdir = \"rel\"\n[resources]\npids = 0\n")
            .unwrap_err()
            .iter()
            .map(|d| d.line)
            .collect();
        assert_eq!(lines, vec![2, 4]);
    }

    #[test]
    fn mode_conflicts() {
        let e = errors("image = \"a\"\n[network]\nmode = \"host\"\npublish = [\"80:80\"]\n");
        assert!(
            e[0].contains("only allowed with mode = \"bridge\""),
            "{e:?}"
        );
        let e = errors("image = \"a\"\n[service]\nnotify = \"healthy\"\n");
        assert!(e[0].contains("needs a [health] table"), "{e:?}");
        let e = errors("rootfs = \"/r\"\n[service]\nauto_update = true\n");
        assert!(e[0].contains("auto_update needs an image"), "{e:?}");
        let e = errors("image = \"a\"\n[network]\npublish = [\"80:80\", \"80:81\"]\n");
        assert!(e[0].contains("published twice"), "{e:?}");
    }

    #[test]
    fn paths_with_parent_components_are_refused() {
        assert!(check_abs_path("/a/../b").is_err());
        assert!(check_abs_path("/a/b").is_ok());
        assert!(check_abs_path("a").is_err());
    }

    #[test]
    fn health_restart_implies_a_restart_policy() {
        let d = check("image = \"a\"\n[health]\ncommand = [\"true\"]\non_failure = \"restart\"\n")
            .unwrap();
        assert_eq!(d.service.restart, Restart::OnFailure);
        let d = check(
            "image = \"a\"\n[health]\ncommand = [\"true\"]\non_failure = \"restart\"\n[service]\nrestart = \"always\"\n",
        )
        .unwrap();
        assert_eq!(d.service.restart, Restart::Always);
        let d = check("image = \"a\"\n[health]\ncommand = [\"true\"]\non_failure = \"kill\"\n")
            .unwrap();
        assert_eq!(d.service.restart, Restart::No);
        let e = errors(
            "image = \"a\"\n[health]\ncommand = [\"true\"]\non_failure = \"restart\"\n[service]\nrestart = \"no\"\n",
        );
        assert!(
            e.iter().any(|l| l.contains(":6:11: [service] restart: restart = \"no\" contradicts [health] on_failure = \"restart\"")),
            "{e:?}"
        );
    }
}

/// Dependency cycles among `requires` (each as the names along it, first name
/// repeated at the end). They are not errors: systemd breaks ordering cycles
/// at start and logs it; `berth check` warns so the admin hears first.
pub fn requires_cycles(defs: &[Definition]) -> Vec<Vec<String>> {
    use std::collections::HashMap;
    let edges: HashMap<&str, &[String]> = defs
        .iter()
        .map(|d| (d.name.as_str(), d.service.requires.as_slice()))
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state: HashMap<&str, u8> = HashMap::new();
    let mut cycles = Vec::new();
    fn visit<'a>(
        n: &'a str,
        edges: &HashMap<&'a str, &'a [String]>,
        state: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        state.insert(n, 1);
        path.push(n);
        for next in edges.get(n).copied().unwrap_or_default() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                0 => visit(next, edges, state, path, cycles),
                1 => {
                    let start = path.iter().position(|p| *p == next).unwrap_or(0);
                    let mut c: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                    c.push(next.clone());
                    cycles.push(c);
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n, 2);
    }
    let mut names: Vec<&str> = edges.keys().copied().collect();
    names.sort_unstable();
    for n in names {
        if state.get(n).copied().unwrap_or(0) == 0 {
            visit(n, &edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

#[cfg(test)]
mod cycle_tests {
    use super::*;
    use crate::config::load::load_all;

    #[test]
    fn finds_cycles() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("etc/berth/containers");
        std::fs::create_dir_all(&dir).unwrap();
        for (n, req) in [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a"), ("e", "")] {
            let req = if req.is_empty() {
                String::new()
            } else {
                format!("[service]\nrequires = [\"{req}\"]\n")
            };
            std::fs::write(
                dir.join(format!("{n}.toml")),
                format!("image = \"x\"\n{req}"),
            )
            .unwrap();
        }
        let defs = load_all(t.path()).definitions;
        assert_eq!(requires_cycles(&defs), vec![vec!["a", "b", "c", "a"]]);
    }
}
