//! The network steps of a start (issue 14), called from `start.rs`: in
//! bridge mode the networks resolved and a lease on each before the clone,
//! the links and rules once the container's namespace exists, and what a
//! bridge's first member does after its program runs; the name server its
//! resolv.conf names; `mode = "container:NAME"`'s namespace to join. The
//! work is `crate::network`'s; this file records it in the start's list and
//! says it in the journal.

use std::path::{Path, PathBuf};

use super::{journal, Paths, RunOptions, State, SuperviseError};
use crate::config::{Definition, Globals};
use crate::network::attach as network;
use crate::teardown::{List, Resource};
use crate::trace::step as trace;
use journal::Priority;

/// A bridge-mode container's networks, leased before it exists.
#[derive(Clone)]
pub(super) struct NetworkStart {
    pub(super) run: PathBuf,
    container: String,
    joined: Vec<network::Joined>,
    publish: Vec<crate::config::PortMapping>,
}

impl NetworkStart {
    /// What `berth ps`, `inspect` and `port` show of it.
    pub(super) fn attached(&self) -> Vec<super::state::Attached> {
        self.joined
            .iter()
            .map(|j| super::state::Attached {
                network: j.network.name.clone(),
                bridge: j.network.bridge.clone(),
                interface: j.interface.clone(),
                host_veth: j.host_veth.clone(),
                ipv4: j.addresses.v4,
                ipv6: j.addresses.v6,
            })
            .collect()
    }

    /// Whether [`Self::attach`] has work between the create and the start.
    pub(super) fn attaches(&self) -> bool {
        !self.joined.is_empty()
    }

    /// Step 12'': the container's namespace exists, its program has not
    /// run: bridges, veths, addresses, routes, rules.
    /// Returns whether it made a bridge (see `after_start`).
    pub(super) fn attach(
        &self,
        pid: i32,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<bool, SuperviseError> {
        if self.joined.is_empty() {
            return Ok(false);
        }
        let netns = network::netns_of(pid).map_err(|source| network::AttachError::Link {
            container: self.container.clone(),
            network: self.joined[0].network.name.clone(),
            source,
        })?;
        let created = network::attach(
            &self.run,
            (&self.container, alive),
            &self.joined,
            &self.publish,
            std::os::fd::AsFd::as_fd(&netns),
        )?;
        trace("supervise: network attached");
        Ok(created)
    }

    /// After the start, when it made a bridge: housekeeping and the host's
    /// forward policy, off the start's path.
    pub(super) fn after_start(&self, alive: &dyn Fn(&str) -> bool) {
        for w in network::after_first_member(&self.container, &self.joined, alive) {
            journal::event(
                Priority::Warning,
                &self.container,
                "network-forward-policy",
                &w,
                &[],
            );
        }
    }
}

/// The name server a bridge-mode container asks: berth dns on the gateway
/// of its first network that serves names. Its unit orders itself after
/// berth-dns.service (the generator's Wants=/After=); a foreground `berth
/// run` has no such unit, so it starts berth-dns first, and where it cannot
/// (no systemd), the container keeps the host's resolvers and says so.
pub(super) fn name_server(
    opts: &RunOptions,
    def: &Definition,
    net: &NetworkStart,
) -> Option<std::net::IpAddr> {
    let j = net.joined.iter().find(|j| j.network.dns)?;
    if !opts.systemd {
        let unit = crate::generator::DNS_UNIT.to_string();
        let started = crate::systemd::ctl::booted(&opts.root)
            && crate::systemd::ctl::jobs(crate::systemd::bus::Verb::Start, &[unit]).is_ok();
        if !started {
            journal::event(
                Priority::Warning,
                &def.name,
                "network-no-names",
                &format!(
                    "container \"{}\": berth-dns.service could not be started, so peers on network \"{}\" are not resolved by name; the host's resolvers are used",
                    def.name, j.network.name
                ),
                &[],
            );
            return None;
        }
    }
    Some(j.network.gateway)
}

/// Whether container `name`'s supervisor runs (its leases and ports are
/// its own); a crashed one's are taken back.
pub(super) fn supervisor_runs(run: &Path, name: &str) -> bool {
    let dir = run.join("containers").join(name);
    matches!(State::load(&dir), Ok(Some(s)) if s.supervisor_alive())
}

/// Step 3': in bridge mode, the networks resolved and a lease on each,
/// with everything the attach will make recorded first: per network its
/// bridge (removed by whoever leaves it last), the lease, the veth; then
/// the container's rules.
pub(super) fn setup_network_leases(
    opts: &RunOptions,
    def: &Definition,
    globals: &Globals,
    list: &mut List,
) -> Result<NetworkStart, SuperviseError> {
    let run = super::run_root(&opts.root);
    let mut net = NetworkStart {
        run: run.clone(),
        container: def.name.clone(),
        joined: Vec::new(),
        publish: def.network.publish.clone(),
    };
    if def.network.mode != crate::config::NetworkMode::Bridge {
        return Ok(net);
    }
    let (files, file_errors) = crate::config::load_all_networks(&opts.root);
    let globals_path = opts.root.join(crate::config::global::GLOBAL_FILE);
    let nets = network::resolve(
        def,
        &files,
        &file_errors,
        &globals.default_subnet,
        &globals_path,
    )?;
    let alive = |holder: &str| supervisor_runs(&run, holder);
    // What the network's name server answers for it besides its name, and
    // where it forwards the container's other questions.
    let info = crate::network::ipam::LeaseInfo {
        aliases: def.network.aliases.clone(),
        dns: def.network.dns.clone(),
    };
    for (i, n) in nets.iter().enumerate() {
        list.record_all(vec![
            Resource::Bridge {
                run: run.clone(),
                network: n.name.clone(),
                bridge: n.bridge.clone(),
                script: network::network_teardown(n),
            },
            Resource::Lease {
                run: run.clone(),
                network: n.name.clone(),
                container: def.name.clone(),
            },
            Resource::Veth {
                name: crate::network::link::host_veth_name(&def.name, &n.name),
            },
        ])
        .map_err(|e| super::cleanup::from_teardown(&def.name, e))?;
        let fixed = def.network.ip.get(&n.name).copied();
        let joined = network::lease(&run, n, i, (&def.name, &info), fixed, &alive)?;
        net.joined.push(joined);
    }
    if let Some(script) = network::rules_teardown(&def.name, &net.joined, &net.publish)? {
        list.record(Resource::Rules {
            container: def.name.clone(),
            script,
        })
        .map_err(|e| super::cleanup::from_teardown(&def.name, e))?;
    }
    Ok(net)
}

/// Step 5'': `mode = "container:NAME"`: the other container must run; this
/// one joins its network namespace and shares its /etc/hosts and
/// resolv.conf (Docker's `--network container:`). Returns the namespace,
/// opened: the PID is checked against the recorded start time after the
/// open, so the file is the recorded process's namespace and a PID reused
/// meanwhile (by a host process, say) is never joined. The runtime joins it
/// through `/proc/self/fd/N` ([`fd_path`]) while the caller holds it.
pub(super) fn join_network(
    opts: &RunOptions,
    def: &Definition,
    paths: &Paths,
) -> Result<Option<std::fs::File>, SuperviseError> {
    let Some(other) = def.network.container.as_deref() else {
        return Ok(None);
    };
    let err = |reason: String| SuperviseError::JoinNetwork {
        name: def.name.clone(),
        other: other.to_string(),
        reason,
    };
    let dir = super::run_root(&opts.root).join("containers").join(other);
    let st =
        match State::load(&dir) {
            Ok(Some(st)) if st.supervisor_alive() => st,
            _ => return Err(err(
                "it is not running: start it first (the unit of a definition saying so starts it)"
                    .into(),
            )),
        };
    let pid = st
        .container_pid
        .ok_or_else(|| err("it has no process yet".into()))?;
    let ns_path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let gone = || err(format!("its process {pid} is gone"));
    let ns = std::fs::File::open(&ns_path).map_err(|_| gone())?;
    let now = crate::runtime::proc_start_time(crate::runtime::Pid::from_raw(pid));
    if now.is_none() || now != st.container_start_time {
        return Err(gone());
    }
    for file in ["hosts", "resolv.conf"] {
        let text = std::fs::read(dir.join(file))
            .map_err(|e| SuperviseError::io("read", dir.join(file), e))?;
        let dest = paths.run_dir.join(file);
        let tmp = paths.run_dir.join(format!(".{file}.tmp"));
        crate::private::write_atomic_mode(&tmp, &dest, &text, 0o644)
            .map_err(|e| SuperviseError::io("write", &dest, e))?;
    }
    Ok(Some(ns))
}

/// The path through which this process reaches an open file.
pub(super) fn fd_path(f: &std::fs::File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}
