//! berth's own events as structured journal entries (`CONTAINER_NAME=`,
//! `BERTH_EVENT=`), sent with journald's native protocol (systemd.journal-fields(7),
//! sd_journal_sendv(3)): one datagram of `FIELD=value` lines.
//!
//! Best effort by design: without journald the line goes to stderr, which
//! systemd also forwards to the journal. Never fails the caller.

use std::os::unix::net::UnixDatagram;

/// journald's native socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// syslog priorities used by berth's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
}

/// Render the datagram: `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`,
/// `CONTAINER_NAME`, `BERTH_EVENT`, then `extra` fields. Values with a
/// newline use the protocol's binary form (name, `\n`, 64-bit LE length, data).
pub fn render_entry(
    priority: Priority,
    name: &str,
    event: &str,
    message: &str,
    extra: &[(&str, String)],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut field = |k: &str, v: &str| {
        if v.contains('\n') {
            out.extend_from_slice(k.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        } else {
            out.extend_from_slice(format!("{k}={v}\n").as_bytes());
        }
    };
    field("MESSAGE", message);
    field("PRIORITY", &(priority as u8).to_string());
    field("SYSLOG_IDENTIFIER", "berth");
    field("CONTAINER_NAME", name);
    // journald attributes an entry to a unit by reading the sender's cgroup;
    // a supervisor that exits right after its last event (a failed start) is
    // often gone by then and the entry would miss `journalctl -u`. That
    // command also matches OBJECT_SYSTEMD_UNIT= from root senders
    // (sd-journal's add_matches_for_unit), so name the unit explicitly.
    field("OBJECT_SYSTEMD_UNIT", &format!("berth@{name}.service"));
    field("BERTH_EVENT", event);
    for (k, v) in extra {
        field(k, v);
    }
    out
}

/// Log one event of container `name`.
pub fn event(priority: Priority, name: &str, event: &str, message: &str, extra: &[(&str, String)]) {
    let entry = render_entry(priority, name, event, message, extra);
    let sent = UnixDatagram::unbound()
        .and_then(|s| s.send_to(&entry, JOURNAL_SOCKET))
        .is_ok();
    if !sent {
        eprintln!("berth: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_binary_form() {
        let e = render_entry(
            Priority::Info,
            "web",
            "exited",
            "container \"web\" exited with code 3",
            &[("EXIT_CODE", "3".into()), ("NOTE", "a\nb".into())],
        );
        let text = String::from_utf8_lossy(&e);
        assert!(text.starts_with("MESSAGE=container \"web\" exited with code 3\nPRIORITY=6\nSYSLOG_IDENTIFIER=berth\nCONTAINER_NAME=web\nOBJECT_SYSTEMD_UNIT=berth@web.service\nBERTH_EVENT=exited\nEXIT_CODE=3\nNOTE\n"));
        assert!(e.ends_with(b"\x03\0\0\0\0\0\0\0a\nb\n"));
    }
}
