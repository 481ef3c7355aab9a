//! systemd-machined registration of a service-mode container, so that
//! `machinectl list` and `machinectl status NAME` show it (its leader, unit,
//! root directory, class `container`, service `berth`), as systemd-nspawn
//! does with `--keep-unit` (src/nspawn/nspawn-register.c, `register_machine`:
//! `RegisterMachineWithNetwork` with service "nspawn" and class "container").
//!
//! `RegisterMachine`, not `CreateMachine`: Create asks machined to make a
//! `machine-NAME.scope` and move the leader into it, out of berth's
//! `<unit>/payload`. Register takes the unit from the leader's cgroup
//! (machined's `cg_pid_get_unit`), which for `berth.slice/berth@NAME.service/
//! payload` is `berth@NAME.service`: the leader must already be in the unit's
//! cgroup, so this runs after the clone into `payload`. No network
//! interfaces are passed: berth's host-side veth is a bridge port, not the
//! container's link (nspawn passes its own host-side veth only for
//! `--network-veth`), and `machinectl status` reads the addresses from the
//! leader's namespace anyway.
//!
//! Unregistering: machined drops a registered machine only once its unit
//! is inactive or failed, so a unit that systemd restarts (`restart =
//! "always"`) would keep the dead leader and refuse the new one with
//! `MachineExists`. So the start records the registration in its teardown
//! list (`teardown::Resource::Machine`) and the supervisor's exit, or
//! `berth cleanup` after a crash, calls `UnregisterMachine`; a registration
//! that still finds one (a crash before that) replaces it. Either only
//! touches a machine whose unit is the container's own, never another
//! manager's machine of the same name. (`TerminateMachine` would stop the
//! unit: not this.) tests/e2e_cli_more.rs checks both the restart and the
//! stop.
//!
//! The call runs on a current-thread runtime made and dropped here, after
//! the clone (DESIGN: clone only when single-threaded; see `bus.rs`). Only
//! the system bus is tried: systemd's private socket reaches PID 1, never
//! machined.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::bus::SYSTEM_BUS_SOCKET;

const DEST: &str = "org.freedesktop.machine1";
const PATH: &str = "/org/freedesktop/machine1";
const MANAGER: &str = "org.freedesktop.machine1.Manager";
/// machined may be started by this very call (bus activation).
const TIMEOUT: Duration = Duration::from_secs(10);

/// D-Bus errors that mean "no machined here": not installed, not
/// activatable, or its unit masked or failing to start.
const ABSENT: &[&str] = &[
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.systemd1.NoSuchUnit",
    "org.freedesktop.systemd1.UnitMasked",
];
/// machined already holds a machine of that name.
const EXISTS: &str = "org.freedesktop.machine1.MachineExists";

/// What a registration found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// machined knows the machine now.
    Registered,
    /// No system bus or no machined on it: nothing to say.
    Absent,
}

/// Why machined, present, did not register the container.
#[derive(Debug, thiserror::Error)]
pub enum MachinedError {
    #[error("container \"{name}\" is not registered with systemd-machined: \"{name}\" is not a valid machine name (machined takes host names: letters, digits, '-' and '.')")]
    Name { name: String },
    #[error(
        "container \"{name}\" is not registered with systemd-machined: RegisterMachine: {reason}"
    )]
    Call { name: String, reason: String },
}

/// Whether machined accepts `name` (its `hostname_is_valid`): 1–64 of
/// letters, digits, `-` and `.`, no empty label.
pub fn valid_machine_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && name.split('.').all(|l| !l.is_empty())
}

/// The root directory machined shows: a definition's `rootfs` as it is,
/// else the leader's `/proc/PID/root` — an image container's root is an
/// overlay mounted only in its own mount namespace, so no other host path
/// shows it; this one does, to root, while the container runs.
pub fn plan_root_directory(rootfs: Option<&Path>, leader: u32) -> PathBuf {
    match rootfs {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(format!("/proc/{leader}/root")),
    }
}

/// Register container `name`, whose init is `leader`, with machined.
pub fn register(
    name: &str,
    leader: u32,
    root_directory: &Path,
) -> Result<Registration, MachinedError> {
    let call_err = |reason: String| MachinedError::Call {
        name: name.to_string(),
        reason,
    };
    let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .unwrap_or_else(|_| format!("unix:path={SYSTEM_BUS_SOCKET}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| call_err(format!("cannot start an event loop for D-Bus: {e}")))?;
    let root = root_directory.to_string_lossy().into_owned();
    let unit = format!("berth@{name}.service");
    let outcome = rt.block_on(async {
        let Some(conn) = connect(&address).await else {
            return Ok(Registration::Absent);
        };
        // (name, id: empty = none, service, class, leader, root directory)
        let body = (
            name,
            Vec::<u8>::new(),
            "berth",
            "container",
            leader,
            root.as_str(),
        );
        let mut replaced = false;
        loop {
            match manager_call(&conn, "RegisterMachine", &body).await {
                Ok(_) => return Ok(Registration::Registered),
                Err(e) if error_name(&e).is_some_and(|n| ABSENT.contains(&n)) => {
                    return Ok(Registration::Absent)
                }
                // Left by this unit's previous run (a crash skipped the
                // unregistering): replaced once.
                Err(e) if error_name(&e) == Some(EXISTS) && !replaced => {
                    replaced = true;
                    if !unregister_ours(&conn, name, &unit).await {
                        return Err(call_err(e.to_string()));
                    }
                }
                // Asked only now, so that a host without machined says
                // nothing about names it would refuse.
                Err(_) if !valid_machine_name(name) => {
                    return Err(MachinedError::Name {
                        name: name.to_string(),
                    })
                }
                Err(e) => return Err(call_err(e.to_string())),
            }
        }
    });
    drop(rt);
    outcome
}

/// Remove container `name`'s registration, if machined holds one for its
/// unit. Best effort and silent: machined forgets it anyway once the unit
/// is inactive.
pub fn unregister(name: &str, unit: &str) {
    let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .unwrap_or_else(|_| format!("unix:path={SYSTEM_BUS_SOCKET}"));
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        if let Some(conn) = connect(&address).await {
            unregister_ours(&conn, name, unit).await;
        }
    });
    drop(rt);
}

async fn connect(address: &str) -> Option<zbus::Connection> {
    zbus::connection::Builder::address(address)
        .ok()?
        .method_timeout(TIMEOUT)
        .build()
        .await
        .ok()
}

async fn manager_call<B>(
    conn: &zbus::Connection,
    method: &str,
    body: &B,
) -> zbus::Result<zbus::message::Message>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    conn.call_method(Some(DEST), PATH, Some(MANAGER), method, body)
        .await
}

fn error_name(e: &zbus::Error) -> Option<&str> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str()),
        _ => None,
    }
}

/// `UnregisterMachine(name)` when machined's machine `name` belongs to
/// `unit`; whether it was removed.
async fn unregister_ours(conn: &zbus::Connection, name: &str, unit: &str) -> bool {
    let Ok(reply) = manager_call(conn, "GetMachine", &(name,)).await else {
        return false;
    };
    let Ok(path) = reply
        .body()
        .deserialize::<zbus::zvariant::OwnedObjectPath>()
    else {
        return false;
    };
    let owner = conn
        .call_method(
            Some(DEST),
            path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &("org.freedesktop.machine1.Machine", "Unit"),
        )
        .await
        .ok()
        .and_then(|r| r.body().deserialize::<zbus::zvariant::OwnedValue>().ok())
        .and_then(|v| String::try_from(v).ok());
    if owner.as_deref() != Some(unit) {
        return false;
    }
    manager_call(conn, "UnregisterMachine", &(name,))
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names() {
        assert!(valid_machine_name("web"));
        assert!(valid_machine_name("web-1.example"));
        assert!(!valid_machine_name("my_app"));
        assert!(!valid_machine_name(".web"));
        assert!(!valid_machine_name("a..b"));
        assert!(!valid_machine_name(&"a".repeat(65)));
    }

    #[test]
    fn root_directory() {
        assert_eq!(
            plan_root_directory(Some(Path::new("/srv/root")), 42),
            Path::new("/srv/root")
        );
        assert_eq!(plan_root_directory(None, 42), Path::new("/proc/42/root"));
    }
}
