//! systemd's D-Bus API, for the few calls berth makes: start a transient
//! scope for a process and stop a unit, each waiting for its job to finish;
//! start, stop or restart units and read their properties, for the `berth`
//! commands (through `ctl.rs`).
//!
//! Every call is blocking and self-contained: it builds a current-thread
//! tokio runtime, connects, calls, waits, and drops it all before returning,
//! so no thread and no connection outlive it (the runtime clones only from a
//! single-threaded process). It must not decide properties (that is
//! `unit.rs`, pure) nor touch cgroupfs.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use zbus::message::Type as MessageType;
use zbus::zvariant::{self, OwnedObjectPath, Value};
use zbus::{Connection, MatchRule, MessageStream};

use zbus::connection::socket::{BoxedSplit, ReadHalf, Split};

use super::gvariant::{GType, GValue};
use super::unit::Property;

/// The system bus, unless `DBUS_SYSTEM_BUS_ADDRESS` says otherwise.
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";
/// systemd's own peer-to-peer socket (root only), for hosts without a bus
/// daemon: runc (go-systemd) falls back to it the same way.
pub const SYSTEMD_PRIVATE_SOCKET: &str = "/run/systemd/private";

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// How long a job may take (runc waits 30 s too).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors talking to systemd; each names the unit it was about.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot reach systemd over D-Bus: system bus '{system_address}': {system}; systemd's private socket '{SYSTEMD_PRIVATE_SOCKET}': {private}")]
    Unreachable {
        system_address: String,
        system: Box<zbus::Error>,
        private: Box<zbus::Error>,
    },
    #[error("systemd {method} '{unit}': {source}")]
    Call {
        method: &'static str,
        unit: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error(
        "systemd job to {verb} unit '{unit}' finished with result '{result}', expected 'done'"
    )]
    JobFailed {
        verb: &'static str,
        unit: String,
        result: String,
    },
    #[error("systemd job to {verb} unit '{unit}' did not finish within {} s", JOB_TIMEOUT.as_secs())]
    JobTimeout { verb: &'static str, unit: String },
    #[error("systemd jobs to {verb}: {}", failed.iter().map(|(u, r)| format!("unit '{u}' finished with result '{}'", r.as_deref().unwrap_or("none (still running)"))).collect::<Vec<_>>().join("; "))]
    JobsFailed {
        verb: &'static str,
        failed: Vec<(String, Option<String>)>,
    },
    #[error("property '{name}' of unit '{unit}': {reason}")]
    Property {
        unit: String,
        name: String,
        reason: String,
    },
    #[error("start an event loop for D-Bus: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What `stop_unit` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A stop job ran and finished.
    Stopped,
    /// systemd did not know the unit (it had already stopped and been
    /// collected): nothing to do.
    NotLoaded,
}

/// Start transient unit `unit` with `properties` plus `PIDs=[pids]`, and
/// wait until systemd reports its start job done. A failed unit of the same
/// name left from an earlier run is reset and the start tried once more
/// (as runc does).
pub fn start_transient_unit(
    unit: &str,
    properties: &[Property],
    pids: &[u32],
) -> Result<(), BusError> {
    let mut props = properties.to_vec();
    props.push(Property::new("PIDs", GValue::u32_array(pids)));
    block_on(async {
        let conn = connect().await?;
        let mut values = Vec::with_capacity(props.len());
        for p in &props {
            values.push((
                p.name.as_str(),
                to_value(&p.value).map_err(|reason| BusError::Property {
                    unit: unit.to_string(),
                    name: p.name.clone(),
                    reason,
                })?,
            ));
        }
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let body = (unit, "replace", values, aux);
        let mut jobs = job_stream(&conn, unit).await?;
        let mut reply = call(&conn, "StartTransientUnit", unit, &body).await;
        if matches!(&reply, Err(BusError::Call { source, .. }) if error_name(source) == Some("org.freedesktop.systemd1.UnitExists"))
        {
            // Only a failed or inactive unit can be reset; an active one
            // makes the retry fail with the same error, which is reported.
            let _ = call(&conn, "ResetFailedUnit", unit, &(unit,)).await;
            reply = call(&conn, "StartTransientUnit", unit, &body).await;
        }
        let job = job_path(reply?, "StartTransientUnit", unit)?;
        let result = wait_job(&mut jobs, &job, "start", unit).await;
        if result.is_err() {
            let _ = call(&conn, "ResetFailedUnit", unit, &(unit,)).await;
        }
        result
    })
}

/// Stop `unit` and wait for the job. A unit systemd does not know is not an
/// error ([`Stopped::NotLoaded`]); a failed one is reset so it leaves nothing.
pub fn stop_unit(unit: &str) -> Result<Stopped, BusError> {
    block_on(async {
        let conn = connect().await?;
        let mut jobs = job_stream(&conn, unit).await?;
        let reply = call(&conn, "StopUnit", unit, &(unit, "replace")).await;
        let outcome = match reply {
            Err(BusError::Call { source, .. })
                if error_name(&source) == Some("org.freedesktop.systemd1.NoSuchUnit") =>
            {
                return Ok(Stopped::NotLoaded)
            }
            Err(e) => Err(e),
            Ok(msg) => {
                let job = job_path(msg, "StopUnit", unit)?;
                wait_job(&mut jobs, &job, "stop", unit)
                    .await
                    .map(|_| Stopped::Stopped)
            }
        };
        let _ = call(&conn, "ResetFailedUnit", unit, &(unit,)).await;
        outcome
    })
}

/// A job on units that exist, as `systemctl` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
    fn method(self) -> &'static str {
        match self {
            Verb::Start => "StartUnit",
            Verb::Stop => "StopUnit",
            Verb::Restart => "RestartUnit",
        }
    }
}

/// How long `unit_jobs` waits: as long as `systemctl` would (it waits for
/// the job; the unit's own TimeoutStartSec= and TimeoutStopSec= bound it).
const UNIT_JOB_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// `systemctl VERB UNIT…`: enqueue one job per unit (mode "replace", so the
/// jobs run together), then wait for all of them; every unit whose job did
/// not end `done` is reported.
pub fn unit_jobs(verb: Verb, units: &[String]) -> Result<(), BusError> {
    let what = units.join(" ");
    block_on(async {
        let conn = connect().await?;
        let mut stream = job_stream(&conn, &what).await?;
        let mut jobs = Vec::new();
        for unit in units {
            let reply = call(&conn, verb.method(), unit, &(unit.as_str(), "replace")).await?;
            jobs.push((job_path(reply, verb.method(), unit)?, unit.clone()));
        }
        let failed: Vec<_> = wait_jobs(&mut stream, jobs, UNIT_JOB_WAIT)
            .await
            .into_iter()
            .filter(|(_, result)| result.as_deref() != Some("done"))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(BusError::JobsFailed {
                verb: verb.as_str(),
                failed,
            })
        }
    })
}

/// The interfaces `unit_properties` reads: every unit's, then a service's.
const UNIT_INTERFACES: [&str; 2] = [
    "org.freedesktop.systemd1.Unit",
    "org.freedesktop.systemd1.Service",
];

/// `systemctl show -p NAMES UNIT…`: the properties `names` of each unit,
/// loaded on demand as systemctl does (an unknown unit has LoadState
/// `not-found`), rendered as `systemctl show` prints them. A property the
/// unit does not have is left out.
pub fn unit_properties(
    units: &[String],
    names: &[&str],
) -> Result<Vec<HashMap<String, String>>, BusError> {
    block_on(async {
        let conn = connect().await?;
        let mut out = Vec::with_capacity(units.len());
        for unit in units {
            let reply = call(&conn, "LoadUnit", unit, &(unit.as_str(),)).await?;
            let path = job_path(reply, "LoadUnit", unit)?;
            let mut props = HashMap::new();
            for interface in UNIT_INTERFACES {
                if interface.ends_with(".Service") && !unit.ends_with(".service") {
                    continue;
                }
                let target = (path.as_str(), "org.freedesktop.DBus.Properties");
                let reply =
                    call_on(&conn, target, "GetAll", unit, &(interface,), JOB_TIMEOUT).await?;
                let all: HashMap<String, zvariant::OwnedValue> = reply
                    .body()
                    .deserialize()
                    .map_err(|source| BusError::Call {
                        method: "GetAll",
                        unit: unit.clone(),
                        source: Box::new(source),
                    })?;
                for name in names {
                    if let Some(v) = all.get(*name) {
                        props.insert(name.to_string(), render_property(name, v));
                    }
                }
            }
            out.push(props);
        }
        Ok(out)
    })
}

/// A property value as `systemctl show` prints it: numbers in decimal,
/// booleans `yes`/`no`, lists space-separated, wall-clock timestamps
/// (`…Timestamp`, microseconds since the epoch) in local time, empty for 0.
fn render_property(name: &str, v: &Value<'_>) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::ObjectPath(p) => p.to_string(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        Value::U8(n) => n.to_string(),
        Value::I16(n) => n.to_string(),
        Value::U16(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U64(n) if name.ends_with("Timestamp") => format_timestamp(*n),
        Value::U64(n) => n.to_string(),
        Value::Value(inner) => render_property(name, inner),
        Value::Array(a) => a
            .iter()
            .map(|x| render_property(name, x))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// systemd's `format_timestamp`: `Mon 2026-12-07 02:00:00 UTC` in local
/// time; 0 (never) is empty.
fn format_timestamp(usec: u64) -> String {
    if usec == 0 || usec == u64::MAX {
        return String::new();
    }
    let secs = (usec / 1_000_000) as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to values we own for the call.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return usec.to_string();
    }
    let mut buf = [0u8; 64];
    let fmt = c"%a %Y-%m-%d %H:%M:%S %Z";
    // SAFETY: strftime writes at most buf.len() bytes and returns how many.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm) };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Run `fut` on a current-thread runtime made for it; dropping the runtime
/// at the end leaves the process with the threads it had before.
fn block_on<T>(fut: impl std::future::Future<Output = Result<T, BusError>>) -> Result<T, BusError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BusError::Runtime)?;
    let out = rt.block_on(fut);
    drop(rt);
    out
}

/// The system bus; else systemd's private socket.
async fn connect() -> Result<Connection, BusError> {
    let system_address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .unwrap_or_else(|_| format!("unix:path={SYSTEM_BUS_SOCKET}"));
    let system = match zbus::connection::Builder::address(system_address.as_str()) {
        Ok(b) => b.method_timeout(JOB_TIMEOUT).build().await,
        Err(e) => Err(e),
    };
    let system = match system {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let private = async {
        let (stream, guid) = authenticate(SYSTEMD_PRIVATE_SOCKET)?;
        let (read, write) = BoxedSplit::from(stream).take();
        let read: Box<dyn ReadHalf> = Box::new(PatchSender::new(read));
        zbus::connection::Builder::authenticated_socket(Split::new(read, write), guid.as_str())?
            .p2p()
            .method_timeout(JOB_TIMEOUT)
            .build()
            .await
    }
    .await;
    let private = match private {
        Ok(conn) => match wake_private(&conn).await {
            Ok(()) => return Ok(conn),
            Err(e) => e,
        },
        Err(e) => e,
    };
    Err(BusError::Unreachable {
        system_address,
        system: Box::new(system),
        private: Box::new(private),
    })
}

/// Make sure systemd reads our messages on its private socket. When the
/// first message arrives in the same read as the handshake's `BEGIN`,
/// systemd 252 leaves it unprocessed until more data comes (seen here: a
/// StopUnit answered only when the next call was sent). A ping is repeated
/// until one is answered; a late answer to an earlier one is ignored.
async fn wake_private(conn: &Connection) -> zbus::Result<()> {
    let mut last = None;
    for _ in 0..20 {
        match call_on(
            conn,
            (PATH, "org.freedesktop.DBus.Peer"),
            "Ping",
            "-",
            &(),
            Duration::from_millis(100),
        )
        .await
        {
            Ok(_) => return Ok(()),
            Err(BusError::Call { source, .. }) => last = Some(*source),
            Err(_) => {}
        }
    }
    Err(last.unwrap_or(zbus::Error::InvalidReply))
}

/// Subscribe to `JobRemoved` before the call that makes the job, so its end
/// cannot slip past.
async fn job_stream(conn: &Connection, unit: &str) -> Result<MessageStream, BusError> {
    let err = |source| BusError::Call {
        method: "AddMatch",
        unit: unit.to_string(),
        source: Box::new(source),
    };
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .path(PATH)
        .and_then(|b| b.interface(MANAGER))
        .and_then(|b| b.member("JobRemoved"))
        .map_err(err)?
        .build();
    MessageStream::for_match_rule(rule, conn, Some(256))
        .await
        .map_err(err)
}

/// Call a Manager method and wait for its reply, matched by serial on the
/// connection's own message stream (subscribed before sending).
async fn call<B>(
    conn: &Connection,
    method: &'static str,
    unit: &str,
    body: &B,
) -> Result<zbus::message::Message, BusError>
where
    B: serde::Serialize + zvariant::DynamicType,
{
    call_on(conn, (PATH, MANAGER), method, unit, body, JOB_TIMEOUT).await
}

/// Call `method` of `interface` on object `path` (`target`).
async fn call_on<B>(
    conn: &Connection,
    (path, interface): (&str, &str),
    method: &'static str,
    unit: &str,
    body: &B,
    limit: Duration,
) -> Result<zbus::message::Message, BusError>
where
    B: serde::Serialize + zvariant::DynamicType,
{
    let err = |source| BusError::Call {
        method,
        unit: unit.to_string(),
        source: Box::new(source),
    };
    let msg = zbus::message::Message::method_call(path, method)
        .and_then(|b| b.destination(DEST))
        .and_then(|b| b.interface(interface))
        .and_then(|b| b.build(body))
        .map_err(err)?;
    let serial = msg.primary_header().serial_num();
    let mut replies = MessageStream::from(conn);
    conn.send(&msg).await.map_err(err)?;
    let wait = async {
        while let Some(reply) = replies.next().await {
            let reply = reply?;
            let kind = reply.message_type();
            if matches!(kind, MessageType::MethodReturn | MessageType::Error)
                && reply.header().reply_serial() == Some(serial)
            {
                return if kind == MessageType::Error {
                    Err(zbus::Error::from(reply))
                } else {
                    Ok(reply)
                };
            }
        }
        Err(zbus::Error::InputOutput(std::sync::Arc::new(
            std::io::ErrorKind::UnexpectedEof.into(),
        )))
    };
    match tokio::time::timeout(limit, wait).await {
        Ok(r) => r.map_err(err),
        Err(_) => Err(err(zbus::Error::InputOutput(std::sync::Arc::new(
            std::io::ErrorKind::TimedOut.into(),
        )))),
    }
}

fn job_path(
    reply: zbus::message::Message,
    method: &'static str,
    unit: &str,
) -> Result<OwnedObjectPath, BusError> {
    reply
        .body()
        .deserialize::<OwnedObjectPath>()
        .map_err(|source| BusError::Call {
            method,
            unit: unit.to_string(),
            source: Box::new(source),
        })
}

async fn wait_job(
    jobs: &mut MessageStream,
    job: &OwnedObjectPath,
    verb: &'static str,
    unit: &str,
) -> Result<(), BusError> {
    let mut results = wait_jobs(jobs, vec![(job.clone(), unit.to_string())], JOB_TIMEOUT).await;
    match results.pop() {
        Some((_, Some(result))) if result == "done" => Ok(()),
        Some((_, Some(result))) => Err(BusError::JobFailed {
            verb,
            unit: unit.to_string(),
            result,
        }),
        // The stream ends only when the connection does.
        _ => Err(BusError::JobTimeout {
            verb,
            unit: unit.to_string(),
        }),
    }
}

/// Wait until every job of `jobs` (job, unit) is removed, or `limit`: each
/// unit with its job's result, `None` for a job that did not end.
async fn wait_jobs(
    stream: &mut MessageStream,
    mut jobs: Vec<(OwnedObjectPath, String)>,
    limit: Duration,
) -> Vec<(String, Option<String>)> {
    let mut done = Vec::new();
    let wait = async {
        while let Some(msg) = stream.next().await {
            let Ok(msg) = msg else { continue };
            // JobRemoved(u id, o job, s unit, s result)
            let Ok((_, path, _, result)) = msg
                .body()
                .deserialize::<(u32, OwnedObjectPath, String, String)>()
            else {
                continue;
            };
            if let Some(i) = jobs.iter().position(|(j, _)| *j == path) {
                done.push((jobs.swap_remove(i).1, Some(result)));
                if jobs.is_empty() {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(limit, wait).await;
    done.extend(jobs.into_iter().map(|(_, unit)| (unit, None)));
    done
}

/// SASL EXTERNAL on a fresh connection to `path`, done here rather than by
/// zbus so that everything zbus reads afterwards is whole messages (see
/// [`PatchSender`]). Returns the stream, ready for messages, and the
/// server's GUID.
fn authenticate(path: &str) -> zbus::Result<(tokio::net::UnixStream, String)> {
    use std::io::{Read, Write};
    let io = |e: std::io::Error| zbus::Error::InputOutput(std::sync::Arc::new(e));
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(io)?;
    s.set_read_timeout(Some(JOB_TIMEOUT)).map_err(io)?;
    let uid = nix::unistd::geteuid().to_string();
    let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
    s.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
        .map_err(io)?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") && line.len() < 256 {
        if s.read(&mut byte).map_err(io)? == 0 {
            break;
        }
        line.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&line).trim_end().to_string();
    let Some(guid) = line.strip_prefix("OK ") else {
        return Err(zbus::Error::Handshake(format!(
            "expected 'OK GUID' to AUTH EXTERNAL, got '{line}'"
        )));
    };
    s.write_all(b"BEGIN\r\n").map_err(io)?;
    s.set_read_timeout(None).map_err(io)?;
    s.set_nonblocking(true).map_err(io)?;
    Ok((
        tokio::net::UnixStream::from_std(s).map_err(io)?,
        guid.to_string(),
    ))
}

/// The read half of a connection to systemd's private socket. On direct
/// connections systemd stamps every message with the sender
/// `org.freedesktop.systemd1` (sd-bus's `patch_sender`, so that libsystemd
/// clients see a sender at all); zbus takes a sender to be a unique name
/// (`:…`) and its reader task panics on anything else. This half reads whole
/// messages and rewrites that one header field's first byte to ':', which
/// keeps every length and offset.
#[derive(Debug)]
struct PatchSender {
    inner: Box<dyn ReadHalf>,
    /// A patched message not yet handed to zbus, and how much of it was.
    pending: Vec<u8>,
    taken: usize,
}

impl PatchSender {
    fn new(inner: Box<dyn ReadHalf>) -> Self {
        PatchSender {
            inner,
            pending: Vec::new(),
            taken: 0,
        }
    }

    async fn read_exact(
        &mut self,
        buf: &mut [u8],
        fds: &mut Vec<std::os::fd::OwnedFd>,
    ) -> std::io::Result<()> {
        let mut pos = 0;
        while pos < buf.len() {
            let (n, more) = self.inner.recvmsg(&mut buf[pos..]).await?;
            fds.extend(more);
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            pos += n;
        }
        Ok(())
    }

    /// Read the rest of a message whose first byte is `first`.
    async fn read_message(
        &mut self,
        first: u8,
        fds: &mut Vec<std::os::fd::OwnedFd>,
    ) -> std::io::Result<Vec<u8>> {
        let mut msg = vec![0u8; 16];
        msg[0] = first;
        self.read_exact(&mut msg[1..], fds).await?;
        let total = message_len(&msg).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "bad D-Bus message header")
        })?;
        msg.resize(total, 0);
        self.read_exact(&mut msg[16..], fds).await?;
        patch_sender(&mut msg);
        Ok(msg)
    }
}

#[zbus::export::async_trait::async_trait]
impl ReadHalf for PatchSender {
    async fn recvmsg(
        &mut self,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
        let mut fds = Vec::new();
        if self.taken == self.pending.len() {
            let mut first = [0u8; 1];
            let (n, more) = self.inner.recvmsg(&mut first).await?;
            fds.extend(more);
            if n == 0 {
                return Ok((0, fds));
            }
            self.pending = self.read_message(first[0], &mut fds).await?;
            self.taken = 0;
        }
        let n = buf.len().min(self.pending.len() - self.taken);

        buf[..n].copy_from_slice(&self.pending[self.taken..self.taken + n]);
        self.taken += n;
        Ok((n, fds))
    }

    async fn peer_credentials(&mut self) -> std::io::Result<zbus::fdo::ConnectionCredentials> {
        self.inner.peer_credentials().await
    }

    fn auth_mechanism(&self) -> zbus::AuthMechanism {
        self.inner.auth_mechanism()
    }
}

fn read_u32(msg: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = msg.get(at..at + 4)?.try_into().ok()?;
    Some(if msg.first() == Some(&b'B') {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// A whole message's length from its 16-byte primary header.
fn message_len(header: &[u8]) -> Option<usize> {
    let body = read_u32(header, 4)? as usize;
    let fields = read_u32(header, 12)? as usize;
    let total = (16 + fields).next_multiple_of(8).checked_add(body)?;
    // The D-Bus limit (128 MiB).
    (total <= 1 << 27).then_some(total)
}

/// Make the SENDER header field (code 7) a unique name in place.
fn patch_sender(msg: &mut [u8]) -> Option<()> {
    let end = 16 + read_u32(msg, 12)? as usize;
    let mut pos = 16;
    while pos < end {
        pos = pos.next_multiple_of(8);
        let code = *msg.get(pos)?;
        let sig_len = *msg.get(pos + 1)? as usize;
        let sig = msg.get(pos + 2..pos + 2 + sig_len)?.to_vec();
        pos += 2 + sig_len + 1;
        match sig.as_slice() {
            b"s" | b"o" => {
                pos = pos.next_multiple_of(4);
                let len = read_u32(msg, pos)? as usize;
                let start = pos + 4;
                if code == 7 && msg.get(start).is_some_and(|c| *c != b':') {
                    msg[start] = b':';
                }
                pos = start + len + 1;
            }
            b"g" => pos += 1 + *msg.get(pos)? as usize + 1,
            b"u" => pos = pos.next_multiple_of(4) + 4,
            _ => return None,
        }
    }
    Some(())
}

fn error_name(e: &zbus::Error) -> Option<&str> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str()),
        _ => None,
    }
}

/// A planned value as a zbus value of the same D-Bus type.
pub fn to_value(v: &GValue) -> Result<Value<'static>, String> {
    Ok(match v {
        GValue::Bool(b) => Value::Bool(*b),
        GValue::Byte(n) => Value::U8(*n),
        GValue::I16(n) => Value::I16(*n),
        GValue::U16(n) => Value::U16(*n),
        GValue::I32(n) => Value::I32(*n),
        GValue::U32(n) => Value::U32(*n),
        GValue::I64(n) => Value::I64(*n),
        GValue::U64(n) => Value::U64(*n),
        GValue::Double(d) => Value::F64(*d),
        GValue::Str(s) => Value::Str(s.clone().into()),
        GValue::ObjectPath(p) => {
            Value::ObjectPath(zvariant::ObjectPath::try_from(p.clone()).map_err(|e| e.to_string())?)
        }
        GValue::Signature(s) => {
            Value::Signature(zvariant::Signature::try_from(s.as_str()).map_err(|e| e.to_string())?)
        }
        GValue::Variant(inner) => Value::Value(Box::new(to_value(inner)?)),
        GValue::Array { elem, items } => {
            let sig = signature(elem)?;
            let mut a = zvariant::Array::new(&sig);
            for i in items {
                a.append(to_value(i)?).map_err(|e| e.to_string())?;
            }
            Value::Array(a)
        }
        GValue::Tuple(items) => {
            let mut b = zvariant::StructureBuilder::new();
            for i in items {
                b = b.append_field(to_value(i)?);
            }
            Value::Structure(b.build().map_err(|e| e.to_string())?)
        }
    })
}

fn signature(t: &GType) -> Result<zvariant::Signature, String> {
    zvariant::Signature::try_from(t.to_string().as_str()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::gvariant::parse;

    #[test]
    fn values_keep_their_dbus_type() {
        for text in [
            "uint64 5",
            "true",
            "'x'",
            "@as []",
            "[1, 2]",
            "[('/dev/null', 'rw')]",
            "<int16 3>",
            "objectpath '/a'",
        ] {
            let g = parse(text).unwrap();
            let v = to_value(&g).unwrap();
            assert_eq!(
                v.value_signature().to_string(),
                g.gtype().to_string(),
                "{text}"
            );
        }
    }

    #[test]
    fn systemds_private_sender_becomes_a_unique_name_in_place() {
        // A signal whose only header field is SENDER 'org.x'.
        let mut msg = vec![b'l', 4, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 14, 0, 0, 0];
        msg.extend([7, 1, b's', 0, 5, 0, 0, 0]);
        msg.extend(b"org.x\0");
        msg.extend([0, 0]);
        assert_eq!(message_len(&msg[..16]), Some(32));
        assert_eq!(msg.len(), 32);
        patch_sender(&mut msg).unwrap();
        assert_eq!(&msg[24..29], b":rg.x");
        // Truncated input is left alone, never a panic.
        let mut short = msg[..20].to_vec();
        assert!(patch_sender(&mut short).is_none());
    }

    #[test]
    fn properties_render_as_systemctl_show_prints_them() {
        let r = |name: &str, v: Value<'_>| render_property(name, &v);
        assert_eq!(r("ActiveState", Value::from("active")), "active");
        assert_eq!(r("ExecMainStatus", Value::I32(-3)), "-3");
        assert_eq!(r("MainPID", Value::U32(42)), "42");
        assert_eq!(r("NRestarts", Value::U32(0)), "0");
        assert_eq!(r("ExecMainStartTimestampMonotonic", Value::U64(123)), "123");
        assert_eq!(r("ExecMainStartTimestamp", Value::U64(0)), "");
        assert_eq!(r("CanStart", Value::Bool(true)), "yes");
        let paths = Value::from(vec!["/a/50-x.conf", "/b/60-y.conf"]);
        assert_eq!(r("DropInPaths", paths), "/a/50-x.conf /b/60-y.conf");
        assert_eq!(r("DropInPaths", Value::from(Vec::<String>::new())), "");
        // Local time, systemd's format: `Thu 2001-09-09 01:46:40 UTC` in UTC.
        let t = r("ExecMainStartTimestamp", Value::U64(1_000_000_000_000_000));
        assert!(
            t.contains(" 2001-09-09 ") || t.contains(" 2001-09-08 "),
            "{t}"
        );
        assert_eq!(t.split(' ').count(), 4, "{t}");
    }
}
