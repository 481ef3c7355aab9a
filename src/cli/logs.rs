//! `berth logs NAME NAME…`: the journals of several containers in one stream,
//! in time order, each line prefixed with its container's name as `docker
//! compose logs` does (`web  | …`). journalctl merges the units' entries by
//! time itself (`-u A -u B`); this file only names each line. One name is
//! `containers::logs`, which hands the terminal to journalctl.

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;

use anyhow::Context;

use super::events::Entry;
use crate::containers as ct;
use crate::systemd::ctl::{self, JournalQuery, LogOptions};

/// The container of `names` an entry belongs to: the one berth named
/// (`CONTAINER_NAME=`), else the one whose unit wrote it or is its subject.
pub fn owner<'a>(e: &Entry, names: &'a [String]) -> Option<&'a String> {
    if let Some(c) = &e.container {
        if let Some(n) = names.iter().find(|n| *n == c) {
            return Some(n);
        }
    }
    names
        .iter()
        .find(|n| e.units.iter().any(|u| *u == ct::unit_name(n)))
}

/// `web  | hello`: the name padded to the longest of `names`, as compose
/// aligns its prefixes; with `timestamps`, the entry's time after the bar.
pub fn render_line(name: &str, width: usize, e: &Entry, timestamps: bool) -> String {
    match timestamps {
        true => format!("{name:<width$} | {} {}", e.time(), e.message),
        false => format!("{name:<width$} | {}", e.message),
    }
}

/// Print the interleaved logs of `names`; `-f` follows them all.
pub fn interleaved(names: &[String], o: &LogOptions) -> anyhow::Result<ExitCode> {
    let mut matches = Vec::new();
    for n in names {
        matches.push("-u".to_string());
        matches.push(ct::unit_name(n));
    }
    let q = JournalQuery {
        matches,
        follow: o.follow,
        // `-f` alone shows the last lines first, as journalctl -f does.
        lines: o.lines.or(o.follow.then_some(10)),
        since: o.since.clone(),
        until: None,
    };
    let mut child = ctl::journal_json(&q).context("cannot run journalctl")?;
    let stdout = child.stdout.take().context("journalctl's output")?;
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(e) = Entry::parse(&line) else {
            continue;
        };
        let Some(name) = owner(&e, names) else {
            continue;
        };
        let text = render_line(name, width, &e, o.timestamps);
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    let _ = child.kill();
    let status = child.wait()?;
    Ok(match status.success() || o.follow {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Entry {
        Entry::parse(json).unwrap()
    }

    #[test]
    fn names_each_line_by_unit_or_container() {
        let names = vec!["web".to_string(), "db".to_string()];
        let out = entry(
            r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"hello","_SYSTEMD_UNIT":"berth@db.service"}"#,
        );
        assert_eq!(owner(&out, &names).map(String::as_str), Some("db"));
        assert_eq!(render_line("db", 3, &out, false), "db  | hello");
        let systemd = entry(
            r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"Started x","_SYSTEMD_UNIT":"init.scope","UNIT":"berth@web.service"}"#,
        );
        assert_eq!(owner(&systemd, &names).map(String::as_str), Some("web"));
        let event = entry(
            r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"exited","CONTAINER_NAME":"web","_SYSTEMD_UNIT":"berth@web.service"}"#,
        );
        assert_eq!(owner(&event, &names).map(String::as_str), Some("web"));
        let other = entry(
            r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"x","_SYSTEMD_UNIT":"berth@web2.service"}"#,
        );
        assert_eq!(owner(&other, &names), None);
    }
}
