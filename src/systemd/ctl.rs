//! What the `berth` commands ask of systemd about units, in one place: jobs
//! (start, stop, restart), properties and whether a unit is active over
//! D-Bus (`bus.rs`, as `systemctl` itself does), and the journal through
//! `journalctl`, the one reader of it berth has (no D-Bus API serves the
//! journal). Nothing else in berth runs `systemctl` or `journalctl`.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

pub use super::bus::{BusError, Verb};

/// Whether systemd is the init system under `root` (sd_booted(3)'s test).
pub fn booted(root: &Path) -> bool {
    root.join("run/systemd/system").is_dir()
}

/// `systemctl VERB UNIT…`: the jobs run together and each must end `done`.
pub fn jobs(verb: Verb, units: &[String]) -> Result<(), BusError> {
    super::bus::unit_jobs(verb, units)
}

/// `systemctl show -p PROPS UNIT…`: each unit's properties, in the order of
/// `units`, rendered as systemctl prints them.
pub fn show(units: &[String], props: &[&str]) -> Result<Vec<HashMap<String, String>>, BusError> {
    super::bus::unit_properties(units, props)
}

/// `systemctl is-active UNIT`: active or reloading. A unit systemd cannot
/// be asked about counts as `unknown`, which the caller chooses how to read.
pub fn is_active(unit: &str) -> Option<bool> {
    let props = show(&[unit.to_string()], &["ActiveState"]).ok()?;
    let state = props.first()?.get("ActiveState")?.clone();
    Some(matches!(
        state.as_str(),
        "active" | "reloading" | "refreshing"
    ))
}

/// The journal's entries of this boot with `FIELD=VALUE` (`match_`), as
/// JSON lines holding `fields`. Best effort: no journal is no entries.
pub fn journal_entries(match_: &str, fields: &[&str]) -> Vec<String> {
    let out = Command::new("journalctl")
        .args(["--no-pager", "-b", "-q", "-o", "json"])
        .arg(format!("--output-fields={}", fields.join(",")))
        .arg(match_)
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether the journal has any entry of `unit` (say, a container removed
/// since).
pub fn journal_has(unit: &str) -> bool {
    Command::new("journalctl")
        .args(["--no-pager", "-q", "-n", "1", "-o", "cat", "-u", unit])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}

/// How `berth logs` shows a unit's journal.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub timestamps: bool,
    pub follow: bool,
    pub lines: Option<u64>,
    pub since: Option<String>,
}

/// Replace this process with `journalctl` showing `unit`'s log; returns only
/// if it could not be run.
pub fn exec_logs(unit: &str, o: &LogOptions) -> std::io::Error {
    let mut cmd = Command::new("journalctl");
    cmd.args(["--no-pager", "-u", unit]);
    cmd.args(["-o", if o.timestamps { "short-iso" } else { "cat" }]);
    if o.follow {
        cmd.arg("-f");
    }
    if let Some(n) = o.lines {
        cmd.arg(format!("--lines={n}"));
    }
    if let Some(s) = &o.since {
        cmd.arg(format!("--since={s}"));
    }
    cmd.exec()
}

/// What `berth events` and `berth logs` of several containers read: entries
/// matching `matches` (journalctl's `FIELD=VALUE` matches and `-u UNIT`
/// options, in order: the same field twice is OR, different fields AND), as
/// `journalctl -o json` lines on the child's stdout.
#[derive(Debug, Clone, Default)]
pub struct JournalQuery {
    pub matches: Vec<String>,
    pub follow: bool,
    pub lines: Option<u64>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Spawn `journalctl -o json` for `q`, its stdout piped. Following with no
/// `--since` and no line count starts at the end, as `docker events` does
/// (journalctl would replay the last 10 entries first).
pub fn journal_json(q: &JournalQuery) -> std::io::Result<std::process::Child> {
    let mut cmd = Command::new("journalctl");
    cmd.args(["--no-pager", "-q", "-o", "json"]);
    if q.follow {
        cmd.arg("-f");
        if q.since.is_none() && q.lines.is_none() {
            cmd.arg("--lines=0");
        }
    }
    if let Some(n) = q.lines {
        cmd.arg(format!("--lines={n}"));
    }
    if let Some(s) = &q.since {
        cmd.arg(format!("--since={s}"));
    }
    if let Some(s) = &q.until {
        cmd.arg(format!("--until={s}"));
    }
    cmd.args(&q.matches);
    cmd.stdout(std::process::Stdio::piped());
    cmd.spawn()
}
