//! The files a container sees in `/etc` that berth writes: `hostname`,
//! `hosts`, `resolv.conf`. Rendering is pure; `write_etc_files` writes them
//! into the container's run dir, from where the spec binds them.

use std::path::Path;

use super::SuperviseError;

/// `/etc/hostname`.
pub fn render_hostname(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// `/etc/hosts`: loopback names and the container's own name on 127.0.1.1
/// (Debian's convention), so `hostname -f` and self-lookups work without DNS.
pub fn render_hosts(hostname: &str) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let names = if short == hostname {
        hostname.to_string()
    } else {
        format!("{hostname} {short}")
    };
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{names}\n")
}

/// `/etc/resolv.conf` from the host's. With the host's network namespace it
/// is copied as is. In a namespace of its own, loopback nameservers (a local
/// stub like systemd-resolved's 127.0.0.53) are unreachable and dropped, as
/// Docker does; `fallback` (systemd-resolved's upstream list,
/// /run/systemd/resolve/resolv.conf) is used instead when that leaves none.
pub fn render_resolv_conf(host: &str, fallback: Option<&str>, own_netns: bool) -> String {
    if !own_netns {
        return host.to_string();
    }
    let is_loopback_ns = |l: &str| {
        let mut w = l.split_whitespace();
        w.next() == Some("nameserver")
            && w.next().is_some_and(|a| {
                a.parse::<std::net::IpAddr>()
                    .map(|ip| ip.is_loopback())
                    .unwrap_or(false)
            })
    };
    let has_ns = |t: &str| {
        t.lines()
            .any(|l| l.trim_start().starts_with("nameserver") && !is_loopback_ns(l))
    };
    let src = match fallback {
        Some(f) if !has_ns(host) && has_ns(f) => f,
        _ => host,
    };
    let mut out: String = src
        .lines()
        .filter(|l| !is_loopback_ns(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if out.is_empty() {
        out.push_str("# no nameserver reachable from the container\n");
    }
    out
}

/// Write the three files into `run_dir`, reading the host's resolv.conf
/// under `root`.
pub fn write_etc_files(
    run_dir: &Path,
    root: &Path,
    hostname: &str,
    own_netns: bool,
) -> Result<(), SuperviseError> {
    let host = std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap_or_default();
    let fallback = std::fs::read_to_string(root.join("run/systemd/resolve/resolv.conf")).ok();
    // Sharing the host's network, the container also sees the host's names
    // (Docker does the same for --network host).
    let hosts = match own_netns {
        true => render_hosts(hostname),
        false => std::fs::read_to_string(root.join("etc/hosts"))
            .unwrap_or_else(|_| render_hosts(hostname)),
    };
    for (file, text) in [
        ("hostname", render_hostname(hostname)),
        ("hosts", hosts),
        (
            "resolv.conf",
            render_resolv_conf(&host, fallback.as_deref(), own_netns),
        ),
    ] {
        let p = run_dir.join(file);
        std::fs::write(&p, text).map_err(|e| SuperviseError::io("write", &p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names() {
        assert!(render_hosts("web").ends_with("127.0.1.1\tweb\n"));
        assert!(render_hosts("web.example").ends_with("127.0.1.1\tweb.example web\n"));
    }

    #[test]
    fn host_network_shares_the_hosts_files() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, run) = (tmp.path().join("root"), tmp.path().join("run"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(root.join("etc/hosts"), "10.0.0.1 db\n").unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.53\n").unwrap();
        write_etc_files(&run, &root, "web", false).unwrap();
        assert_eq!(
            std::fs::read_to_string(run.join("hosts")).unwrap(),
            "10.0.0.1 db\n"
        );
        assert_eq!(
            std::fs::read_to_string(run.join("resolv.conf")).unwrap(),
            "nameserver 127.0.0.53\n"
        );
        write_etc_files(&run, &root, "web", true).unwrap();
        assert!(std::fs::read_to_string(run.join("hosts"))
            .unwrap()
            .ends_with("127.0.1.1\tweb\n"));
        assert_eq!(
            std::fs::read_to_string(run.join("hostname")).unwrap(),
            "web\n"
        );
    }

    #[test]
    fn resolv_conf_drops_loopback_in_own_netns() {
        let host = "nameserver 127.0.0.53\noptions edns0\nsearch lan\n";
        assert_eq!(render_resolv_conf(host, None, false), host);
        assert_eq!(
            render_resolv_conf(host, None, true),
            "options edns0\nsearch lan\n"
        );
        let upstream = "nameserver 192.0.2.1\n";
        assert_eq!(
            render_resolv_conf(host, Some(upstream), true),
            "nameserver 192.0.2.1\n"
        );
        assert!(render_resolv_conf("", None, true).starts_with('#'));
    }
}
