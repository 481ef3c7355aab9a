//! log: where berth's `tracing` events go — stderr, which under systemd is the
//! unit's journal stream, filtered by `$BERTH_LOG` (`error`, `warn`, `info`,
//! `debug`, `trace` or `off`; default `warn`). Owns no other output: user-facing
//! messages and the supervisor's structured journal entries are written where
//! they are made.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::filter::LevelFilter;

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
