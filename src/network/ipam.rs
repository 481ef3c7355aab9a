//! Address leases: no two containers ever share an address on a network,
//! however many start at once, and a crash never leaks one for good.
//!
//! A lease is one file, `/run/berth/leases/NETWORK/ADDRESS`, holding the
//! container's name, created with O_EXCL while `.lock` in that directory is
//! flocked, as `supervise/userns.rs` does for ID ranges. (Not under
//! `/run/berth/networks/`: that directory holds network definitions.) A
//! lease is kept while its file names the container, so a restart after a
//! crash gets its address back; `release` (on stop) removes it; a lease
//! whose holder is gone — the caller says which are, e.g. from the state
//! records — is reclaimed when its address is wanted, or by `reclaim`.
//!
//! The choice of an address (`plan_next_free`) is pure and unit-tested; the
//! rest is small file I/O. Nothing else: no links, no rules.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::config::{Addresses, Network};
use crate::config::values::Subnet;

const LOCK_FILE: &str = ".lock";

/// Why a lease could not be taken or given back.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("cannot {op} '{}': {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network \"{network}\": no free address left in {subnet} for container \"{container}\" ({leased} leased): stop a container on it, or give the network a wider subnet")]
    Full {
        network: String,
        subnet: Subnet,
        container: String,
        leased: usize,
    },
    #[error("network \"{network}\": address {ip} asked for by container \"{container}\" is leased to container \"{holder}\": give one of them another ip, or none")]
    Taken {
        network: String,
        ip: IpAddr,
        container: String,
        holder: String,
    },
    #[error("network \"{network}\": address {ip} asked for by container \"{container}\" is not a member address of {subnet} (the network, broadcast and gateway addresses are not)")]
    Outside {
        network: String,
        ip: IpAddr,
        container: String,
        subnet: Subnet,
    },
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> IpamError {
    IpamError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// `/run/berth/leases/NETWORK` for the run root `run` (`/run/berth`).
pub fn leases_dir(run: &Path, network: &str) -> PathBuf {
    run.join("leases").join(network)
}

/// The first address of `subnet` after `gateway` that is a host address,
/// not the gateway and not `taken`, wrapping round to the ones before it;
/// `None` when every one is taken.
pub fn plan_next_free(subnet: Subnet, gateway: IpAddr, taken: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    let start = subnet.offset_of(gateway).unwrap_or(0);
    let free = |n: u128| {
        subnet
            .nth_host(n)
            .filter(|ip| *ip != gateway && !taken.contains(ip))
    };
    // A /64 has 2^64 candidates: stop at the first address past the end
    // (nth_host gives None there) instead of counting them.
    let after = (start + 1..).map_while(|n| subnet.nth_host(n).map(|_| n));
    after.chain(1..start).find_map(free)
}

/// An exclusive flock on `dir/.lock`, held while the file is open. The
/// network's bridge is made and removed under it too, so a stop that sees
/// no lease left never removes a bridge a start is about to use.
pub fn lock(dir: &Path) -> Result<std::fs::File, IpamError> {
    crate::private::dir(dir).map_err(|e| io("create", dir, e))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(crate::private::FILE_MODE)
        .open(&path)
        .map_err(|e| io("open", &path, e))?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(io("flock", &path, e));
        }
    }
    Ok(file)
}

/// Every lease in `dir`: address → holder. Call with the lock held.
pub fn read_leases(dir: &Path) -> Result<BTreeMap<IpAddr, String>, IpamError> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("read", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io("read", dir, e))?;
        let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // An unreadable lease still holds its address: never give it twice.
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        out.insert(ip, holder_of(&text).to_string());
    }
    Ok(out)
}

fn remove(dir: &Path, ip: IpAddr) -> Result<(), IpamError> {
    let path = dir.join(ip.to_string());
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", &path, e)),
    }
}

/// The holder named by a lease file's text: its first line.
pub fn holder_of(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// What a lease says besides its holder, for the network's name server:
/// the names peers may use and the container's own upstream resolvers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    pub aliases: Vec<String>,
    pub dns: Vec<IpAddr>,
}

impl LeaseInfo {
    /// The lease file's text: the holder, then `aliases …` and `dns …`
    /// lines when there are any (readers skip lines they do not know).
    pub fn render(&self, container: &str) -> String {
        let mut out = format!("{container}\n");
        if !self.aliases.is_empty() {
            out.push_str(&format!("aliases {}\n", self.aliases.join(" ")));
        }
        if !self.dns.is_empty() {
            let dns: Vec<String> = self.dns.iter().map(IpAddr::to_string).collect();
            out.push_str(&format!("dns {}\n", dns.join(" ")));
        }
        out
    }
}

/// A new lease: O_EXCL, so an address is never given twice.
fn create(dir: &Path, ip: IpAddr, text: &str) -> Result<(), IpamError> {
    let path = dir.join(ip.to_string());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::private::FILE_MODE)
        .open(&path)
        .map_err(|e| io("create", &path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| io("write", &path, e))
}

/// A kept lease says what this start says (its aliases may have changed):
/// written whole and renamed over, so a reader never sees half of it.
fn rewrite(dir: &Path, ip: IpAddr, text: &str) -> Result<(), IpamError> {
    let path = dir.join(ip.to_string());
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    // The temporary name is no address, so readers skip it.
    let tmp = dir.join(format!(".{ip}.tmp"));
    crate::private::write_atomic(&tmp, &path, text.as_bytes()).map_err(|e| io("write", &path, e))
}

/// One family's address for `container` on `net`: its own lease if it has
/// one (and it is still the fixed address asked for), else `fixed`, else
/// the first free one after the gateway. `alive` says whether a holder
/// still runs; a dead holder's lease is reclaimed when it is in the way.
fn allocate_in(
    dir: &Path,
    net: &Network,
    (subnet, gateway): (Subnet, IpAddr),
    (container, text): (&str, &str),
    fixed: Option<IpAddr>,
    alive: &dyn Fn(&str) -> bool,
) -> Result<IpAddr, IpamError> {
    let mut leases = read_leases(dir)?;
    leases.retain(|ip, _| subnet.contains(*ip));
    let own: Vec<IpAddr> = leases
        .iter()
        .filter(|(_, h)| *h == container)
        .map(|(ip, _)| *ip)
        .collect();
    if let Some(&ip) = own.iter().find(|ip| fixed.map_or(true, |f| f == **ip)) {
        rewrite(dir, ip, text)?;
        return Ok(ip);
    }
    for ip in own {
        remove(dir, ip)?;
        leases.remove(&ip);
    }
    let ip = match fixed {
        Some(ip) => {
            if !net.can_lease(ip) || !subnet.contains(ip) {
                return Err(IpamError::Outside {
                    network: net.name.clone(),
                    ip,
                    container: container.into(),
                    subnet,
                });
            }
            if let Some(holder) = leases.get(&ip) {
                if alive(holder) {
                    return Err(IpamError::Taken {
                        network: net.name.clone(),
                        ip,
                        container: container.into(),
                        holder: holder.clone(),
                    });
                }
                remove(dir, ip)?;
            }
            ip
        }
        None => {
            let taken = leases.keys().copied().collect();
            match plan_next_free(subnet, gateway, &taken) {
                Some(ip) => ip,
                None => reclaim_one(dir, &leases, alive)?.ok_or_else(|| IpamError::Full {
                    network: net.name.clone(),
                    subnet,
                    container: container.into(),
                    leased: leases.len(),
                })?,
            }
        }
    };
    create(dir, ip, text)?;
    Ok(ip)
}

/// Free the lowest address whose holder is gone; `None` if all are alive.
fn reclaim_one(
    dir: &Path,
    leases: &BTreeMap<IpAddr, String>,
    alive: &dyn Fn(&str) -> bool,
) -> Result<Option<IpAddr>, IpamError> {
    match leases.iter().find(|(_, h)| !alive(h)) {
        Some((&ip, _)) => remove(dir, ip).map(|()| Some(ip)),
        None => Ok(None),
    }
}

/// Lease `container` its addresses on `net` under the run root `run`:
/// `fixed` (the definition's `ip` for this network) for its family, else
/// the first free one after the gateway; an IPv6 one too on a dual-stack
/// network. `alive` tells whether another lease's holder still runs.
pub fn allocate(
    run: &Path,
    net: &Network,
    (container, info): (&str, &LeaseInfo),
    fixed: Option<IpAddr>,
    alive: &dyn Fn(&str) -> bool,
) -> Result<Addresses, IpamError> {
    let dir = leases_dir(run, &net.name);
    let text = info.render(container);
    let _lock = lock(&dir)?;
    let fixed4 = fixed.filter(IpAddr::is_ipv4);
    let fixed6 = fixed.filter(IpAddr::is_ipv6);
    if let (Some(ip), None) = (fixed6, net.subnet6) {
        return Err(IpamError::Outside {
            network: net.name.clone(),
            ip,
            container: container.into(),
            subnet: net.subnet,
        });
    }
    let v4 = allocate_in(
        &dir,
        net,
        (net.subnet, net.gateway),
        (container, &text),
        fixed4,
        alive,
    )?;
    let v6 = match (net.subnet6, net.gateway6) {
        (Some(s), Some(g)) => Some(allocate_in(
            &dir,
            net,
            (s, g),
            (container, &text),
            fixed6,
            alive,
        )?),
        _ => None,
    };
    Ok(Addresses { v4, v6 })
}

/// Give back every lease `container` holds on network `network` (none is
/// fine); returns the addresses freed.
pub fn release(run: &Path, network: &str, container: &str) -> Result<Vec<IpAddr>, IpamError> {
    let dir = leases_dir(run, network);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let _lock = lock(&dir)?;
    let mut freed = Vec::new();
    for (ip, holder) in read_leases(&dir)? {
        if holder == container {
            remove(&dir, ip)?;
            freed.push(ip);
        }
    }
    Ok(freed)
}

/// Free every lease on `network` whose holder `alive` says is gone (after
/// a crash or a reboot); returns (address, holder) of each.
pub fn reclaim(
    run: &Path,
    network: &str,
    alive: &dyn Fn(&str) -> bool,
) -> Result<Vec<(IpAddr, String)>, IpamError> {
    let dir = leases_dir(run, network);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let _lock = lock(&dir)?;
    let mut freed = Vec::new();
    for (ip, holder) in read_leases(&dir)? {
        if !alive(&holder) {
            remove(&dir, ip)?;
            freed.push((ip, holder));
        }
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::parse_subnet;

    fn net(subnet: &str, subnet6: Option<&str>) -> Network {
        let s = parse_subnet(subnet).unwrap();
        let s6 = subnet6.map(|t| parse_subnet(t).unwrap());
        Network {
            name: "app".into(),
            source_path: None,
            bridge: "berth-app".into(),
            subnet: s,
            gateway: s.nth_host(1).unwrap(),
            subnet6: s6,
            gateway6: s6.and_then(|s| s.nth_host(1)),
            internal: false,
            mtu: None,
            dns: true,
        }
    }

    #[test]
    fn a_lease_names_its_holder_first_and_says_its_aliases_and_resolvers() {
        let run = tempfile::tempdir().unwrap();
        let n = net("10.0.0.0/29", None);
        let info = LeaseInfo {
            aliases: vec!["www".into(), "api".into()],
            dns: vec![ip("192.0.2.53")],
        };
        let a = allocate(run.path(), &n, ("web", &info), None, &|_| true).unwrap();
        let dir = leases_dir(run.path(), "app");
        let text = std::fs::read_to_string(dir.join(a.v4.to_string())).unwrap();
        assert_eq!(text, "web\naliases www api\ndns 192.0.2.53\n");
        assert_eq!(read_leases(&dir).unwrap()[&a.v4], "web");
        // A restart keeps the address and says what the new start says.
        let again = allocate(
            run.path(),
            &n,
            ("web", &LeaseInfo::default()),
            None,
            &|_| true,
        );
        assert_eq!(again.unwrap(), a);
        let text = std::fs::read_to_string(dir.join(a.v4.to_string())).unwrap();
        assert_eq!(text, "web\n");
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn alive(_: &str) -> bool {
        true
    }

    #[test]
    fn next_free_starts_after_the_gateway_and_wraps() {
        let s = parse_subnet("10.0.0.0/29").unwrap();
        let none = BTreeSet::new();
        assert_eq!(
            plan_next_free(s, ip("10.0.0.1"), &none),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(
            plan_next_free(s, ip("10.0.0.6"), &none),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            plan_next_free(s, ip("10.0.0.4"), &none),
            Some(ip("10.0.0.5"))
        );
        let taken: BTreeSet<IpAddr> = ["10.0.0.5", "10.0.0.6", "10.0.0.1"].map(ip).into();
        assert_eq!(
            plan_next_free(s, ip("10.0.0.4"), &taken),
            Some(ip("10.0.0.2"))
        );
        let all: BTreeSet<IpAddr> = (2..=6).map(|n| ip(&format!("10.0.0.{n}"))).collect();
        assert_eq!(plan_next_free(s, ip("10.0.0.1"), &all), None);
        let s6 = parse_subnet("fd00::/64").unwrap();
        assert_eq!(
            plan_next_free(s6, ip("fd00::1"), &none),
            Some(ip("fd00::2"))
        );
    }

    #[test]
    fn fifty_threads_at_once_get_fifty_distinct_addresses() {
        let run = tempfile::tempdir().unwrap();
        let n = net("10.89.7.0/24", None);
        let got: Vec<IpAddr> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..50)
                .map(|i| {
                    let (run, n) = (run.path(), &n);
                    s.spawn(move || {
                        allocate(
                            run,
                            n,
                            (&format!("c{i}"), &LeaseInfo::default()),
                            None,
                            &alive,
                        )
                        .unwrap()
                        .v4
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: BTreeSet<IpAddr> = got.iter().copied().collect();
        assert_eq!(distinct.len(), 50, "{got:?}");
        // The first 50 after the gateway, no more, and one file each.
        let expected: BTreeSet<IpAddr> = (2..52).map(|k| ip(&format!("10.89.7.{k}"))).collect();
        assert_eq!(distinct, expected);
        let leases = read_leases(&leases_dir(run.path(), "app")).unwrap();
        assert_eq!(leases.len(), 50);
        assert_eq!(leases[&got[7]], "c7");
    }

    #[test]
    fn a_full_subnet_a_taken_fixed_ip_and_a_dead_holder() {
        let run = tempfile::tempdir().unwrap();
        let r = run.path();
        let n = net("10.0.0.0/29", None);
        for i in 0..5 {
            allocate(
                r,
                &n,
                (&format!("c{i}"), &LeaseInfo::default()),
                None,
                &alive,
            )
            .unwrap();
        }
        let e = allocate(r, &n, ("late", &LeaseInfo::default()), None, &alive)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "network \"app\": no free address left in 10.0.0.0/29 for container \"late\" (5 leased): stop a container on it, or give the network a wider subnet");
        let e = allocate(
            r,
            &n,
            ("late", &LeaseInfo::default()),
            Some(ip("10.0.0.3")),
            &alive,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "network \"app\": address 10.0.0.3 asked for by container \"late\" is leased to container \"c1\": give one of them another ip, or none");
        let e = allocate(
            r,
            &n,
            ("late", &LeaseInfo::default()),
            Some(ip("10.0.0.1")),
            &alive,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is not a member address of 10.0.0.0/29"), "{e}");
        // c1 crashed: its fixed address is reclaimed, and so is a free one.
        let dead = |h: &str| h != "c1" && h != "c2";
        assert_eq!(
            allocate(
                r,
                &n,
                ("late", &LeaseInfo::default()),
                Some(ip("10.0.0.3")),
                &dead
            )
            .unwrap()
            .v4,
            ip("10.0.0.3")
        );
        assert_eq!(
            allocate(r, &n, ("later", &LeaseInfo::default()), None, &dead)
                .unwrap()
                .v4,
            ip("10.0.0.4")
        );
        // A restart keeps its address; a release frees it.
        assert_eq!(
            allocate(r, &n, ("c0", &LeaseInfo::default()), None, &alive)
                .unwrap()
                .v4,
            ip("10.0.0.2")
        );
        assert_eq!(release(r, "app", "c0").unwrap(), vec![ip("10.0.0.2")]);
        assert!(release(r, "app", "c0").unwrap().is_empty());
        assert!(release(r, "nothere", "c0").unwrap().is_empty());
        let freed = reclaim(r, "app", &|h| h != "c3").unwrap();
        assert_eq!(freed, vec![(ip("10.0.0.5"), "c3".to_string())]);
    }

    #[test]
    fn dual_stack_leases_both_families() {
        let run = tempfile::tempdir().unwrap();
        let n = net("10.0.1.0/24", Some("fd00:1::/64"));
        let a = allocate(run.path(), &n, ("a", &LeaseInfo::default()), None, &alive).unwrap();
        assert_eq!((a.v4, a.v6), (ip("10.0.1.2"), Some(ip("fd00:1::2"))));
        let b = allocate(
            run.path(),
            &n,
            ("b", &LeaseInfo::default()),
            Some(ip("fd00:1::20")),
            &alive,
        )
        .unwrap();
        assert_eq!((b.v4, b.v6), (ip("10.0.1.3"), Some(ip("fd00:1::20"))));
        assert_eq!(release(run.path(), "app", "a").unwrap().len(), 2);
    }
}
