//! `berth events [-f] [--since …] [--filter container=NAME] [--filter
//! event=E]`: berth's own structured journal entries (`BERTH_EVENT=`,
//! written by `supervise::journal`), one line each, as `docker events`
//! prints them. The journal is the record: no daemon keeps a second one.
//!
//! Also the journal's JSON readers `berth logs` of several names uses
//! ([`field`], [`Entry::parse`]); they are pure and unit-tested.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::systemd::ctl::{self, JournalQuery};

/// Show berth's events (started, exited, oom-killed, unhealthy…) from the journal
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  berth events                          every event in the journal\n  berth events -f                       wait for new ones (Ctrl-C to stop)\n  berth events --since \"10 min ago\" --filter container=web\n  berth events --filter event=exited --format json\n\nEach line: time (UTC), container, event, and what berth said about it.\nEvents are journal entries with BERTH_EVENT= and CONTAINER_NAME= fields, so\n`journalctl BERTH_EVENT=exited CONTAINER_NAME=web` reads them too."
)]
pub struct EventsArgs {
    /// Keep printing new events as they happen
    #[arg(short, long)]
    pub follow: bool,
    /// Only events since this time (journalctl --since syntax: "10 min ago", "2026-01-01 10:00", "today")
    #[arg(long)]
    pub since: Option<String>,
    /// Only events until this time (same syntax)
    #[arg(long)]
    pub until: Option<String>,
    /// container=NAME or event=EVENT; the same key twice matches either
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: super::containers::Format,
}

/// One journal entry as berth reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Microseconds since the epoch (`__REALTIME_TIMESTAMP`).
    pub time_usec: u64,
    pub container: Option<String>,
    pub event: Option<String>,
    pub message: String,
    /// The entry's own fields besides those above (EXIT_CODE=, CONTAINER_PID=…),
    /// without the journal's trusted `_` ones.
    pub fields: BTreeMap<String, String>,
    /// `_SYSTEMD_UNIT`, `UNIT`, `OBJECT_SYSTEMD_UNIT`: who wrote it or whom it is about.
    #[serde(skip)]
    pub units: Vec<String>,
}

/// Fields every berth event or journal entry has, not shown as details.
const COMMON: &[&str] = &[
    "MESSAGE",
    "PRIORITY",
    "SYSLOG_IDENTIFIER",
    "SYSLOG_FACILITY",
    "SYSLOG_PID",
    "SYSLOG_TIMESTAMP",
    "CONTAINER_NAME",
    "BERTH_EVENT",
    "OBJECT_SYSTEMD_UNIT",
    "UNIT",
    "INVOCATION_ID",
    "CODE_FILE",
    "CODE_LINE",
    "CODE_FUNC",
    "MESSAGE_ID",
];

/// A field of a `journalctl -o json` object as text: journalctl writes a
/// string, an array of byte values for data that is not UTF-8 text, or an
/// array of those when the entry has the field more than once (the last wins).
pub fn field(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_u64()) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|i| i.as_u64())
                .map(|b| b as u8)
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        serde_json::Value::Array(items) => items.last().and_then(field),
        _ => None,
    }
}

impl Entry {
    /// One line of `journalctl -o json`; `None` for anything else.
    pub fn parse(line: &str) -> Option<Entry> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let obj = v.as_object()?;
        let get = |k: &str| obj.get(k).and_then(field);
        let mut fields = BTreeMap::new();
        for (k, val) in obj {
            if k.starts_with('_') || COMMON.contains(&k.as_str()) {
                continue;
            }
            if let Some(s) = field(val) {
                fields.insert(k.clone(), s);
            }
        }
        Some(Entry {
            time_usec: get("__REALTIME_TIMESTAMP")?.parse().ok()?,
            container: get("CONTAINER_NAME"),
            event: get("BERTH_EVENT"),
            message: get("MESSAGE").unwrap_or_default(),
            fields,
            units: ["_SYSTEMD_UNIT", "UNIT", "OBJECT_SYSTEMD_UNIT"]
                .iter()
                .filter_map(|k| get(k))
                .collect(),
        })
    }

    /// `2026-12-07T07:40:01.123456Z`.
    pub fn time(&self) -> String {
        let secs = (self.time_usec / 1_000_000) as i64;
        let rfc = crate::image::offline::rfc3339(secs);
        format!(
            "{}.{:06}Z",
            rfc.trim_end_matches('Z'),
            self.time_usec % 1_000_000
        )
    }
}

/// The journalctl matches of `filters` (`container=NAME`, `event=E`).
pub fn plan_matches(filters: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = vec!["SYSLOG_IDENTIFIER=berth".to_string()];
    for f in filters {
        let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
        let field = match k {
            "container" | "name" => "CONTAINER_NAME",
            "event" => "BERTH_EVENT",
            _ => anyhow::bail!(
                "--filter \"{f}\": expected container=NAME or event=EVENT (e.g. --filter container=web)"
            ),
        };
        if v.is_empty() {
            anyhow::bail!("--filter \"{f}\": the value is empty (e.g. --filter {k}=web)");
        }
        out.push(format!("{field}={v}"));
    }
    Ok(out)
}

/// One line of `berth events`: time, container, event, details.
pub fn render_line(e: &Entry) -> String {
    format!(
        "{}  {}  {}  {}",
        e.time(),
        e.container.as_deref().unwrap_or("-"),
        e.event.as_deref().unwrap_or("-"),
        e.message
    )
}

pub fn run(_root: &Path, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let q = JournalQuery {
        matches: plan_matches(&args.filters)?,
        follow: args.follow,
        lines: None,
        since: args.since.clone(),
        until: args.until.clone(),
    };
    let mut child = ctl::journal_json(&q).context("cannot run journalctl")?;
    let stdout = child.stdout.take().context("journalctl's output")?;
    let json = args.format == super::containers::Format::Json;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(e) = Entry::parse(&line) else {
            continue;
        };
        if e.event.is_none() {
            continue;
        }
        let text = match json {
            true => serde_json::to_string(&e)?,
            false => render_line(&e),
        };
        // Flushed per line: `-f` is read by people and by scripts as it comes.
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait()?;
    Ok(match status.success() || args.follow {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_event_line() {
        let line = r#"{"__REALTIME_TIMESTAMP":"1796629201123456","MESSAGE":"container \"web\" exited with code 3","CONTAINER_NAME":"web","BERTH_EVENT":"exited","EXIT_CODE":"3","_PID":"42","PRIORITY":"6","SYSLOG_IDENTIFIER":"berth","OBJECT_SYSTEMD_UNIT":"berth@web.service"}"#;
        let e = Entry::parse(line).unwrap();
        assert_eq!(e.container.as_deref(), Some("web"));
        assert_eq!(e.event.as_deref(), Some("exited"));
        assert_eq!(e.fields.len(), 1);
        assert_eq!(e.fields["EXIT_CODE"], "3");
        assert_eq!(e.time(), "2026-12-07T07:40:01.123456Z");
        assert_eq!(
            render_line(&e),
            "2026-12-07T07:40:01.123456Z  web  exited  container \"web\" exited with code 3"
        );
    }

    #[test]
    fn binary_and_repeated_fields() {
        let v: serde_json::Value = serde_json::from_str("[104, 105]").unwrap();
        assert_eq!(field(&v).as_deref(), Some("hi"));
        let v: serde_json::Value = serde_json::from_str(r#"["a", "b"]"#).unwrap();
        assert_eq!(field(&v).as_deref(), Some("b"));
    }

    #[test]
    fn filters_become_matches() {
        let m = plan_matches(&["container=web".into(), "event=exited".into()]).unwrap();
        assert_eq!(
            m,
            [
                "SYSLOG_IDENTIFIER=berth",
                "CONTAINER_NAME=web",
                "BERTH_EVENT=exited"
            ]
        );
        assert!(plan_matches(&["image=x".into()]).is_err());
        assert!(plan_matches(&["container=".into()]).is_err());
    }
}
