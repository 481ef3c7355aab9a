//! log: where berth's `tracing` events go — stderr, which under systemd is the
//! unit's journal stream, filtered by `$BERTH_LOG` (`error`, `warn`, `info`,
//! `debug`, `trace` or `off`; default `warn`). Owns no other output: user-facing
//! messages and the supervisor's structured journal entries are written where
//! they are made.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::filter::LevelFilter;

/// An error and its causes on one line, `outer: inner: root`, for the
/// binaries' last word. A cause is printed once: many library errors end
/// their message with their cause (`"open '/x': No such file or
/// directory"`, so a bare `to_string()` in the journal still says it) and
/// hold it as `source` too; a cause the text so far already ends with is
/// skipped.
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The level `$BERTH_LOG` asks for, and a complaint when it is not a level.
fn level(value: Option<&str>) -> (LevelFilter, Option<String>) {
    match value.map(str::trim) {
        None | Some("") => (LevelFilter::WARN, None),
        Some(v) => match LevelFilter::from_str(v) {
            Ok(l) => (l, None),
            Err(_) => (
                LevelFilter::WARN,
                Some(format!(
                    "berth: warning: BERTH_LOG={v:?} is not a level (error, warn, info, debug, trace, off); using warn"
                )),
            ),
        },
    }
}

/// Install the subscriber once, early in `main`.
pub fn init() {
    let (filter, complaint) = level(std::env::var("BERTH_LOG").ok().as_deref());
    if let Some(c) = complaint {
        eprintln!("{c}");
    }
    // journald stamps each line itself.
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if under_journal {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_printed_once() {
        // A library error whose message ends with its source, under context.
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let inner = crate::runtime::RuntimeError::io("open", "/x", io);
        let err = anyhow::Error::new(inner).context("starting 'web'");
        assert_eq!(
            super::error_chain(&err),
            "starting 'web': open '/x': entity not found"
        );
        let plain = anyhow::anyhow!("root cause")
            .context("middle")
            .context("top");
        assert_eq!(super::error_chain(&plain), "top: middle: root cause");
    }

    use super::*;

    #[test]
    fn levels_come_from_berth_log() {
        assert_eq!(level(None).0, LevelFilter::WARN);
        assert_eq!(level(Some("debug")).0, LevelFilter::DEBUG);
        assert_eq!(level(Some("OFF")).0, LevelFilter::OFF);
        let (l, complaint) = level(Some("loud"));
        assert_eq!(l, LevelFilter::WARN);
        assert!(complaint
            .unwrap()
            .contains("BERTH_LOG=\"loud\" is not a level"));
    }
}
