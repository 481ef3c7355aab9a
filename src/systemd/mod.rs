//! systemd: the protocol pieces berth speaks to systemd — `sd_notify`
//! datagrams and kernel-log lines for the generator (here, best effort by
//! design: a notification that cannot be sent means we are not running under
//! systemd, which is not an error), and transient scopes over D-Bus:
//! `gvariant` (pure: GVariant text of `org.systemd.property.*` annotations),
//! `unit` (pure: a container's scope properties from its spec) and `bus`
//! (the zbus calls, each on a runtime it drops before returning); `machined`
//! registers a service container with systemd-machined; `ctl` is what the
//! `berth` commands ask of systemd.

pub mod bus;
pub mod ctl;
pub mod gvariant;
pub mod machined;
pub mod unit;

use std::io::Write;
use std::os::unix::net::UnixDatagram;

/// Send `state` (e.g. `"READY=1\nSTATUS=running"`) to `$NOTIFY_SOCKET`.
/// Returns false when there is no socket to send to or the send failed.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    let bytes = path.as_encoded_bytes();
    if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        match std::os::unix::net::SocketAddr::from_abstract_name(abstract_name) {
            Ok(addr) => sock.send_to_addr(state.as_bytes(), &addr).is_ok(),
            Err(_) => false,
        }
    } else {
        sock.send_to(state.as_bytes(), &path).is_ok()
    }
}

/// Write one line to the kernel log (`/dev/kmsg`) with a syslog priority, falling
/// back to stderr. Generators log this way because journald may not run yet.
pub fn kmsg(priority: u8, ident: &str, message: &str) {
    let line = format!("<{priority}>{ident}: {message}\n");
    let wrote = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .is_ok();
    if !wrote {
        eprintln!("{ident}: {message}");
    }
}
