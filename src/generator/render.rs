//! Rendering: one [`Definition`] → the text of its unit drop-in and its
//! `wanted_by` links.
//!
//! Pure: no file access, no syscalls, no processes. Whether the image is
//! already stored (which decides the network-online dependency) is answered by
//! the caller through [`RenderContext`].
//!
//! The drop-in extends `units/berth@.service` (Type=notify, Delegate=yes,
//! Slice=berth.slice, ExecStart=berth run --systemd %i, ExecStopPost=berth
//! cleanup %i) and never sets any of those, so the template stays the one
//! place that says how a container runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Build, Definition, ImageSource, NetworkMode, Pull, Reference, Reload};

/// Where the template unit is installed; `wanted_by` links point here.
pub const TEMPLATE_PATH: &str = "/usr/lib/systemd/system/berth@.service";

/// The drop-in's file name inside `berth@NAME.service.d/`. "50-" leaves room
/// for an admin's own drop-ins to sort before or after it.
pub const DROPIN_NAME: &str = "50-berth-generated.conf";

/// How much longer than `stop_timeout` systemd waits before it SIGKILLs the unit.
pub const STOP_MARGIN: Duration = Duration::from_secs(5);

/// What rendering needs to know beyond the definition.
pub struct RenderContext<'a> {
    /// Whether `image` is already in the image store, so that a start with
    /// `pull = "missing"` will not need the network.
    pub image_present: &'a dyn Fn(&Reference) -> bool,
    /// Whether network `name` has its names served (`dns`, true unless its
    /// file says `dns = false`), so that its members need berth-dns.service.
    pub network_dns: &'a dyn Fn(&str) -> bool,
    /// Whether credential `name` is in a `credstore.encrypted` directory, so
    /// that it needs `LoadCredentialEncrypted=`.
    pub credential_encrypted: &'a dyn Fn(&str) -> bool,
    /// Whether a `[build]` may pull: its Containerfile's FROM (or `COPY
    /// --from`) names a registry image that is not stored, or the file
    /// cannot be read to tell.
    pub build_may_pull: &'a dyn Fn(&Build) -> bool,
}

/// Where systemd looks for a credential named without a path in
/// `LoadCredentialEncrypted=` (`man systemd.exec`, "Credentials").
pub const ENCRYPTED_CREDSTORES: [&str; 3] = [
    "etc/credstore.encrypted",
    "run/credstore.encrypted",
    "usr/lib/credstore.encrypted",
];

/// How `systemctl reload` reaches a container with `reload_signal`: SIGHUP
/// to the supervisor (the unit's main process), which sends the
/// definition's reload signal to the container's main process.
pub const RELOAD_SIGNAL_COMMAND: &str = "/bin/kill -s HUP $MAINPID";

/// How systemd's start limit is counted when `start_limit_burst` is set:
/// twice the time `burst` immediate failures take with `restart_sec`
/// between them, and never less than systemd's 10s, so that a crash loop
/// reaches the burst inside one interval (with the default interval a
/// long `restart_sec` would never trip it).
pub fn start_limit_interval(burst: u32, restart_sec: Option<Duration>) -> Duration {
    let step = restart_sec.unwrap_or(Duration::from_millis(100));
    (step * burst * 2).max(Duration::from_secs(10))
}

/// One argument of an Exec*= line, quoted as systemd reads it
/// (`man systemd.service`, "Command lines"): `$` and `%` would otherwise
/// be expanded, and quotes and backslashes are escaped.
pub fn systemd_quote(arg: &str) -> String {
    let mut out = String::from("\"");
    for c in arg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path in a unit setting that takes a list of paths
/// (RequiresMountsFor=): `%` doubled (specifier), and the path quoted when
/// it holds a space, quote or backslash, since systemd splits the list as
/// shell-like words (`extract_first_word(…, EXTRACT_UNQUOTE)`). Validation
/// keeps control characters out of a build context.
fn systemd_path(p: &std::path::Path) -> String {
    let text = p.display().to_string().replace('%', "%%");
    if !text.contains([' ', '"', '\'', '\\']) {
        return text;
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The unit of `berth dns`, the name server of bridge networks.
pub const DNS_UNIT: &str = "berth-dns.service";

/// The files and links for one definition, relative to the generator's
/// output directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    /// Relative path → content.
    pub files: BTreeMap<PathBuf, String>,
    /// (relative link path, absolute target).
    pub links: Vec<(PathBuf, PathBuf)>,
    /// Files every member of a group renders alike (`berth-GROUP.target`):
    /// relative path → content. A generator run writes each once, after the
    /// definitions, so that threads never race on one file.
    pub shared: BTreeMap<PathBuf, String>,
}

impl Generated {
    /// Add another definition's output.
    pub fn extend(&mut self, other: Generated) {
        self.files.extend(other.files);
        self.links.extend(other.links);
        self.shared.extend(other.shared);
    }
}

/// `berth-GROUP.target`, the unit that starts and stops a group as one.
pub fn group_unit(group: &str) -> String {
    format!("berth-{group}.target")
}

/// The text of `berth-GROUP.target`. It names no member: each member adds
/// itself (a `.wants/` link and `PartOf=`), so the text is the same whichever
/// definition renders it. A target is ordered after the units it wants
/// (DefaultDependencies, `man systemd.target`), so `systemctl start` returns
/// once every member is up, members in the order their own After= give.
pub fn render_group_target(group: &str) -> String {
    format!(
        "# generated by berth-generator for the definitions with [service] group = \"{group}\"\n\
         # do not edit: change the definitions and run `systemctl daemon-reload`\n\n\
         [Unit]\n\
         Description=berth containers of group {group}\n\
         Documentation=man:berth.container(5)\n"
    )
}

/// `berth@NAME.service`. Container names need no unit-name escaping: their
/// alphabet (`[A-Za-z0-9_.-]`) is valid in an instance name as it is.
pub fn unit_name(name: &str) -> String {
    format!("berth@{name}.service")
}

/// A time span as systemd reads it (`man systemd.time`), exact to the microsecond.
pub fn systemd_time(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

pub use crate::cgroup::limits::cpu_quota;

/// Whether starting may pull (DESIGN.md §1: only then does the unit wait for
/// network-online.target, which can delay boot by many seconds).
pub fn may_pull(def: &Definition, ctx: &RenderContext<'_>) -> bool {
    match &def.image {
        ImageSource::Rootfs(_) => false,
        // The built image is never pulled; the build pulls a base only
        // when it is missing.
        ImageSource::Build(b) => (ctx.build_may_pull)(b),
        ImageSource::Image(image) if !image.is_remote() => false,
        ImageSource::Image(image) => match def.service.pull {
            Pull::Always | Pull::Newer => true,
            Pull::Never => false,
            Pull::Missing => !(ctx.image_present)(image),
        },
    }
}

/// The [Unit] section's dependencies and ordering.
fn render_unit_dependencies(def: &Definition, ctx: &RenderContext<'_>, t: &mut String) {
    for other in &def.service.requires {
        let u = unit_name(other);
        let _ = writeln!(t, "Requires={u}\nAfter={u}");
    }
    // A sidecar (`mode = "container:NAME"`) lives in the other's network
    // namespace: it starts after it, stops with it and restarts with it.
    if let Some(other) = &def.network.container {
        let u = unit_name(other);
        let _ = writeln!(t, "BindsTo={u}\nPartOf={u}\nAfter={u}");
    }
    let s = &def.service;
    for u in &s.after {
        let _ = writeln!(t, "Wants={u}\nAfter={u}");
    }
    // wants, part_of and before are systemd's own; binds_to is ordered
    // after its unit as requires is, since a BindsTo= without After= lets
    // the container start while its unit is still starting.
    for u in &s.wants {
        let _ = writeln!(t, "Wants={u}");
    }
    for u in &s.binds_to {
        let _ = writeln!(t, "BindsTo={u}\nAfter={u}");
    }
    for u in &s.part_of {
        let _ = writeln!(t, "PartOf={u}");
    }
    for u in &s.before {
        let _ = writeln!(t, "Before={u}");
    }
    if let Some(b) = s.start_limit_burst {
        let _ = writeln!(
            t,
            "StartLimitBurst={b}\nStartLimitIntervalSec={}",
            systemd_time(start_limit_interval(b, s.restart_sec))
        );
    }
    // A member of a network with dns asks berth-dns at its gateway: it is
    // started first (Wants=, not Requires=: a container without name service
    // still runs, as one whose network has `dns = false` does).
    let bridge = def.network.mode == NetworkMode::Bridge;
    if bridge && def.network.networks.iter().any(|n| (ctx.network_dns)(n)) {
        let _ = writeln!(t, "Wants={DNS_UNIT}\nAfter={DNS_UNIT}");
    }
    if may_pull(def, ctx) {
        t.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    }
    // A build reads its context at each start: the file system holding it
    // is mounted first (`man systemd.unit`, RequiresMountsFor=).
    if let ImageSource::Build(b) = &def.image {
        let _ = writeln!(t, "RequiresMountsFor={}", systemd_path(&b.context));
    }
    // PartOf= carries the target's stop and restart to the member; the
    // target's Wants= (the link below) carries its start.
    if let Some(g) = &def.service.group {
        let _ = writeln!(t, "PartOf={}", group_unit(g));
    }
}

/// Render the drop-in and links for one definition.
pub fn render(def: &Definition, ctx: &RenderContext<'_>) -> Generated {
    let unit = unit_name(&def.name);
    let mut t = String::new();
    // Writing into a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        t,
        "# generated by berth-generator from {}",
        def.source_path.display()
    );
    for d in &def.dropins {
        let _ = writeln!(t, "# with drop-in {}", d.display());
    }
    t.push_str("# do not edit: change the definition and run `systemctl daemon-reload`\n\n");

    t.push_str("[Unit]\n");
    let _ = writeln!(t, "SourcePath={}", def.source_path.display());
    render_unit_dependencies(def, ctx, &mut t);

    t.push_str("\n[Service]\n");
    let _ = writeln!(t, "Environment=BERTH_DEFINITION_HASH={}", def.hash);
    let _ = writeln!(t, "Restart={}", def.service.restart);
    let s = &def.service;
    if let Some(d) = s.restart_sec {
        let _ = writeln!(t, "RestartSec={}", systemd_time(d));
    }
    match &s.reload {
        None => {}
        Some(Reload::Signal(sig)) => {
            let _ = writeln!(
                t,
                "# reload_signal {sig}: the supervisor sends it to the container\nExecReload={RELOAD_SIGNAL_COMMAND}"
            );
        }
        Some(Reload::Command(argv)) => {
            let args: Vec<String> = argv.iter().map(|a| systemd_quote(a)).collect();
            let _ = writeln!(t, "ExecReload=/usr/bin/berth exec %i -- {}", args.join(" "));
        }
    }
    // The template has KillMode=mixed: SIGTERM reaches the supervisor alone,
    // which stops the container itself and escalates to SIGKILL after
    // stop_timeout. systemd's own deadline must come later, or it would kill
    // the supervisor at the very moment it escalates, before it records the
    // exit status.
    let _ = writeln!(
        t,
        "# stop_timeout {} plus {} for berth to stop the container itself\nTimeoutStopSec={}",
        systemd_time(def.service.stop_timeout),
        systemd_time(STOP_MARGIN),
        systemd_time(def.service.stop_timeout + STOP_MARGIN)
    );
    // The container's limits are the unit's alone (systemd owns them;
    // `systemctl set-property` changes them live), memory and tasks with
    // the supervisor's share added (cgroup/limits.rs).
    use crate::cgroup::limits;
    let r = &def.resources;
    if r.memory.is_some() || r.pids.is_some() {
        let _ = writeln!(
            t,
            "# memory and pids plus the supervisor's share ({} bytes, {} task)",
            limits::SUPERVISOR_MEMORY,
            limits::SUPERVISOR_TASKS
        );
    }
    for l in limits::unit_limits(r) {
        let _ = writeln!(t, "{}={}", l.name(), l.text());
    }
    for c in &def.secrets {
        // Without a path systemd searches its credential stores
        // (/etc/credstore, /run/credstore, …; systemd ≥ 250), the
        // credstore.encrypted ones for LoadCredentialEncrypted=.
        let key = match c.encrypted || (ctx.credential_encrypted)(&c.credential) {
            true => "LoadCredentialEncrypted",
            false => "LoadCredential",
        };
        let _ = writeln!(t, "{key}={}", c.credential);
    }

    let mut out = Generated::default();
    out.files
        .insert(PathBuf::from(format!("{unit}.d/{DROPIN_NAME}")), t);
    for target in &def.service.wanted_by {
        out.links.push((
            PathBuf::from(format!("{target}.wants/{unit}")),
            PathBuf::from(TEMPLATE_PATH),
        ));
    }
    if let Some(g) = &def.service.group {
        let target = group_unit(g);
        out.links.push((
            PathBuf::from(format!("{target}.wants/{unit}")),
            PathBuf::from(TEMPLATE_PATH),
        ));
        out.shared
            .insert(PathBuf::from(target), render_group_target(g));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_quotas() {
        assert_eq!(systemd_time(Duration::from_secs(10)), "10s");
        assert_eq!(systemd_time(Duration::from_millis(1500)), "1500ms");
        assert_eq!(systemd_time(Duration::from_micros(3)), "3us");
        assert_eq!(cpu_quota(0.5), "50%");
        assert_eq!(cpu_quota(2.0), "200%");
        assert_eq!(cpu_quota(0.333), "33.3%");
        assert_eq!(cpu_quota(0.0125), "1.25%");
    }

    #[test]
    fn quoting_and_start_limits() {
        assert_eq!(systemd_quote("nginx"), "\"nginx\"");
        assert_eq!(
            systemd_quote("a \"b\" $X 50% \\"),
            "\"a \\\"b\\\" $$X 50%% \\\\\""
        );
        assert_eq!(start_limit_interval(3, None), Duration::from_secs(10));
        assert_eq!(
            start_limit_interval(5, Some(Duration::from_secs(3))),
            Duration::from_secs(30)
        );
    }
}
