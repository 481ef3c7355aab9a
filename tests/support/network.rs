//! Network fixtures for end-to-end tests in a systemd box (`systemd_box.rs`):
//! an "outside host", a busybox web root whose containers answer on tcp and
//! udp, and readers of what berth leaves on a host (leases, veths, nft).
//!
//! Owns: everything below happens inside the box's own network namespace
//! and a further one (`out`) made inside the box; the machine's own network
//! namespace, firewall and routes are never touched. Servers run as
//! transient units of the box's systemd, so they die with the box.
//!
//! The outside host is TESTING.md's recipe: `ip netns add out`, a veth pair
//! `out0` (box, 192.0.2.1) <-> `eth0` (in `out`, 192.0.2.2), TEST-NET-1
//! addresses (RFC 5737, never routed anywhere), and the box's default route
//! via 192.0.2.2 — so to a container the box is "the host" and `out` is
//! another machine on its LAN.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::systemd_box::{shell_quote, SystemdBox};

/// The box's address on the link to the outside host (its "public" address).
pub const BOX_ADDR: &str = "192.0.2.1";
/// The outside host's address.
pub const OUT_ADDR: &str = "192.0.2.2";
/// The outside host's network namespace (inside the box).
pub const OUT_NETNS: &str = "out";
/// The box's end of the link: the one veth of the box that berth did not
/// make (tests that count veths leave it out).
pub const OUT_VETH: &str = "out0";

/// Where [`net_rootfs`] is copied in the box by [`install_net_rootfs`].
pub const NET_ROOTFS: &str = "/srv/net-root";
/// The udp tool in the box (for the box itself and the outside host).
pub const BOX_UDP: &str = "/usr/local/bin/berth-test-udp";

/// Another machine on the box's LAN: the network namespace `out` inside the
/// box, joined to it by a veth pair.
pub struct OutsideHost<'a> {
    b: &'a SystemdBox,
}

impl<'a> OutsideHost<'a> {
    /// Make the outside host and the box's default route through it.
    pub fn attach(b: &'a SystemdBox) -> OutsideHost<'a> {
        b.sh_ok(&format!(
            "set -e
             ip netns add {OUT_NETNS}
             ip link add {OUT_VETH} type veth peer name eth0 netns {OUT_NETNS}
             ip addr add {BOX_ADDR}/24 dev {OUT_VETH}
             ip link set {OUT_VETH} up
             ip -n {OUT_NETNS} link set lo up
             ip -n {OUT_NETNS} addr add {OUT_ADDR}/24 dev eth0
             ip -n {OUT_NETNS} link set eth0 up
             ip route add default via {OUT_ADDR}"
        ));
        OutsideHost { b }
    }

    /// Run `sh -c SCRIPT` on the outside host (never panics).
    pub fn sh(&self, script: &str) -> Output {
        self.b.sh(&self.wrap(script))
    }

    /// Run a script on the outside host that must succeed; its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        self.b.sh_ok(&self.wrap(script))
    }

    /// The box-side command that runs `script` on the outside host.
    pub fn wrap(&self, script: &str) -> String {
        format!(
            "ip netns exec {OUT_NETNS} /bin/sh -c {}",
            shell_quote(script)
        )
    }

    /// Serve `body` over http on the outside host at port `port`, with
    /// busybox httpd as the transient unit `outside-http-PORT`, whose journal
    /// logs each request with its peer's address (`ADDR:PORT: response:200`,
    /// see [`OutsideHost::http_peers`]). Returns once it answers (to a probe
    /// from the outside host's own 127.0.0.1, which tests filter out).
    pub fn serve_http(&self, port: u16, body: &str) {
        let dir = format!("/srv/outside-www-{port}");
        self.b
            .write_file(&format!("{dir}/index.html"), format!("{body}\n").as_bytes());
        self.b.sh_ok(&format!(
            "systemd-run --quiet --unit=outside-http-{port} ip netns exec {OUT_NETNS} \
             busybox httpd -f -v -p {port} -h {dir}"
        ));
        let url = format!("http://127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.sh(&format!("curl -fsS --max-time 2 {url}"));
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the outside host's httpd on port {port} did not answer within 10 s: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.b.journal(&format!("outside-http-{port}.service"))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The request log of [`OutsideHost::serve_http`]'s server on `port`:
    /// one `[PEER_ADDR]:PEER_PORT: response:CODE` line per request.
    pub fn http_log(&self, port: u16) -> String {
        self.b.sh_ok(&format!(
            "journalctl --sync; journalctl --no-pager -b -o cat -u outside-http-{port}.service"
        ))
    }

    /// The peer address of each request in [`OutsideHost::http_log`], in
    /// order (IPv4-mapped addresses as plain IPv4), but the readiness
    /// probe's 127.0.0.1. httpd logs a request after answering it, so this
    /// waits up to 10 s for at least one.
    pub fn http_peers(&self, port: u16) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let peers: Vec<String> = http_peers(&self.http_log(port))
                .into_iter()
                .filter(|p| p != "127.0.0.1")
                .collect();
            if !peers.is_empty() || Instant::now() >= deadline {
                return peers;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The peers of busybox httpd's `-v` log lines: `[::ffff:192.0.2.1]:50936:
/// response:200` gives `192.0.2.1` (it listens on IPv6 and IPv4 at once).
pub fn http_peers(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once(": response:").map(|(peer, _)| peer))
        .filter_map(|p| p.rsplit_once(':').map(|(addr, _port)| addr))
        .map(|a| a.trim_start_matches('[').trim_end_matches(']'))
        .map(|a| a.strip_prefix("::ffff:").unwrap_or(a).to_string())
        .collect()
}

/// The udp tool's source: `udp serve PORT PREFIX` answers each datagram with
/// PREFIX and the datagram (IPv4 and IPv6); `udp ask ADDR PORT TEXT` sends
/// TEXT, prints the answer and exits 0, or exits 1 after 2 s without one (or
/// at once on ICMP port unreachable). Debian's busybox has no udp server or
/// client (its nc lacks -u; no udpsvd, no dnsd), hence this.
const UDP_C: &str = r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int serve(int port, const char *prefix) {
    int s = socket(AF_INET6, SOCK_DGRAM, 0), off = 0;
    struct sockaddr_in6 a;
    char buf[2048];
    size_t pl = strlen(prefix);
    if (s < 0 || pl > 512) { perror("socket"); return 1; }
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    if (bind(s, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
    memcpy(buf, prefix, pl);
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(s, buf + pl, sizeof buf - pl, 0, (struct sockaddr *)&peer, &len);
        if (n >= 0) sendto(s, buf, pl + n, 0, (struct sockaddr *)&peer, len);
    }
}

static int ask(const char *addr, int port, const char *text) {
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *sa;
    socklen_t len;
    int s;
    struct timeval tv = {2, 0};
    char buf[2048];
    ssize_t n;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, addr, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET; a4.sin_port = htons(port);
        sa = (struct sockaddr *)&a4; len = sizeof a4;
    } else if (inet_pton(AF_INET6, addr, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6; a6.sin6_port = htons(port);
        sa = (struct sockaddr *)&a6; len = sizeof a6;
    } else { fprintf(stderr, "not an address: %s\n", addr); return 2; }
    s = socket(sa->sa_family, SOCK_DGRAM, 0);
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(s, sa, len) || send(s, text, strlen(text), 0) < 0) { perror("send"); return 1; }
    n = recv(s, buf, sizeof buf - 1, 0);
    if (n < 0) { perror("recv"); return 1; }
    fwrite(buf, 1, n, stdout);
    putchar('\n');
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]), argv[3]);
    if (argc == 5 && !strcmp(argv[1], "ask")) return ask(argv[2], atoi(argv[3]), argv[4]);
    fprintf(stderr, "usage: udp serve PORT PREFIX | udp ask ADDR PORT TEXT\n");
    return 2;
}
"#;

/// The udp tool, compiled once per test binary with `gcc -static` (it runs
/// in busybox containers, which have no libc). Needs gcc: callers
/// `require_program!("gcc")`.
pub fn udp_tool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| super::static_c_binary("udp", UDP_C))
}

/// A busybox root filesystem for network tests, in `dir`: busybox (httpd,
/// wget, nslookup, ip), the udp tool at `/bin/udp`, an empty `/www`.
/// Containers from it run [`serve_command`].
pub fn net_rootfs(dir: &Path) -> PathBuf {
    super::busybox_rootfs(dir);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::copy(udp_tool(), dir.join("bin/udp")).unwrap();
    dir.to_path_buf()
}

/// Build [`net_rootfs`] and copy it into the box at [`NET_ROOTFS`]; put the
/// udp tool at [`BOX_UDP`] for the box and the outside host.
pub fn install_net_rootfs(b: &SystemdBox) {
    let t = tempfile::tempdir().unwrap();
    net_rootfs(t.path());
    b.copy_in(t.path(), NET_ROOTFS);
    let tool = std::fs::read(udp_tool()).unwrap();
    b.write_file(BOX_UDP, &tool);
    b.sh_ok(&format!("chmod 755 {BOX_UDP}"));
}

/// The container command of a network test: its page at `/` says `name`
/// (busybox httpd on port 80, tcp) and udp port 53 answers `name:` and what
/// it was sent.
pub fn serve_command(name: &str) -> String {
    format!(
        "command = [\"sh\", \"-c\", \"echo {name} > /www/index.html && \
         (udp serve 53 {name}: &) && exec httpd -f -v -p 80 -h /www\"]\n"
    )
}

/// A definition from [`NET_ROOTFS`] running [`serve_command`], with
/// `network` (TOML lines, e.g. `networks = ["app"]`) as its `[network]`.
/// `init = true` makes SIGTERM reach httpd, so a stop is quick.
pub fn web_definition(name: &str, network: &str) -> String {
    format!(
        "rootfs = \"{NET_ROOTFS}\"\ninit = true\n{}\n[network]\n{network}\n\n[service]\nstop_timeout = \"2s\"\n",
        serve_command(name)
    )
}

/// The addresses leased to `container` on `network` (the lease files
/// `/run/berth/leases/NETWORK/ADDRESS` whose first line is its name).
pub fn leases_of(b: &SystemdBox, network: &str, container: &str) -> Vec<String> {
    let mut v: Vec<String> = all_leases(b, network)
        .into_iter()
        .filter(|(_, holder)| holder == container)
        .map(|(addr, _)| addr)
        .collect();
    v.sort();
    v
}

/// Every lease on `network`: (address, holder).
pub fn all_leases(b: &SystemdBox, network: &str) -> Vec<(String, String)> {
    let dir = format!("/run/berth/leases/{network}");
    b.sh_ok(&format!(
        "for f in {d}/*; do [ -f \"$f\" ] && echo \"${{f##*/}} $(head -n 1 \"$f\")\"; done; true",
        d = shell_quote(&dir)
    ))
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(a, h)| (a.to_string(), h.trim().to_string()))
    .collect()
}

/// Every lease file left anywhere under `/run/berth/leases`.
pub fn lease_files(b: &SystemdBox) -> String {
    b.sh_ok("find /run/berth/leases -type f ! -name .lock 2>/dev/null; true")
        .trim()
        .to_string()
}

/// The veths of the box that berth made (all but [`OUT_VETH`]): names.
pub fn berth_veths(b: &SystemdBox) -> Vec<String> {
    b.sh_ok("ip -o link show type veth")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n != OUT_VETH)
        .collect()
}

/// The ports of bridge `bridge` (host ends of containers' veths).
pub fn bridge_ports(b: &SystemdBox, bridge: &str) -> Vec<String> {
    b.sh_ok(&format!(
        "ip -o link show master {bridge} 2>/dev/null; true"
    ))
    .lines()
    .filter_map(|l| l.split(": ").nth(1))
    .map(|n| n.split('@').next().unwrap_or(n).to_string())
    .collect()
}

/// Whether interface `name` exists in the box.
pub fn link_exists(b: &SystemdBox, name: &str) -> bool {
    b.sh(&format!("ip link show dev {}", shell_quote(name)))
        .status
        .success()
}

/// The lines of `nft list ruleset` that name any of `words` as a whole word
/// (a container's name, in an element's comment, or its addresses).
pub fn nft_lines_naming(b: &SystemdBox, words: &[&str]) -> String {
    let mut args = String::new();
    for w in words {
        args.push_str(" -e ");
        args.push_str(&shell_quote(w));
    }
    b.sh_ok(&format!("nft list ruleset | grep -n -F -w{args}; true"))
        .trim()
        .to_string()
}

/// The `elements = …` lines of berth's table (empty when it has none, or
/// when the table does not exist).
pub fn berth_table_elements(b: &SystemdBox) -> String {
    b.sh_ok("nft list table inet berth 2>/dev/null | grep -n 'elements ='; true")
        .trim()
        .to_string()
}

/// The journals a network failure is read with: each container's unit,
/// berth's name servers, and the last lines of the whole boot.
pub fn network_journals(b: &SystemdBox, containers: &[&str]) -> String {
    let mut s = String::new();
    for c in containers {
        s.push_str(&format!("--- journalctl -u berth@{c} ---\n"));
        s.push_str(&b.journal(&format!("berth@{c}.service")));
        // What name resolution and routing look like from inside, while
        // it runs (a stopped container says so and nothing more).
        s.push_str(&format!(
            "--- inside {c}: resolv.conf, hosts, addresses, routes ---\n"
        ));
        let inside = b.sh(&format!(
            "berth exec {c} sh -c 'cat /etc/resolv.conf /etc/hosts; ip -o addr; ip -o link; ip route; ip neigh' 2>&1"
        ));
        s.push_str(&String::from_utf8_lossy(&inside.stdout));
    }
    s.push_str("--- journalctl -u 'berth-dns*' ---\n");
    s.push_str(&String::from_utf8_lossy(
        &b.sh("journalctl --no-pager -b -u 'berth-dns*'").stdout,
    ));
    s.push_str("--- systemctl status berth-dns; its sockets; the leases ---\n");
    s.push_str(&String::from_utf8_lossy(
        &b.sh("systemctl status --no-pager -n 0 berth-dns; ss -lunp; head /run/berth/leases/*/*")
            .stdout,
    ));
    s.push_str("--- ip -o addr; ip -o link; ip route; nft list ruleset ---\n");
    s.push_str(&String::from_utf8_lossy(
        &b.sh("ip -o addr; ip -o link; ip route; nft list ruleset")
            .stdout,
    ));
    s
}

/// Run `script` in the box until its stdout (trimmed) satisfies `ok`, for at
/// most `limit`; `Ok(stdout)` or `Err(last stdout and stderr)`. Callers
/// panic with their own message and the journals.
pub fn eventually(
    b: &SystemdBox,
    script: &str,
    ok: impl Fn(&str) -> bool,
    limit: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    loop {
        let out = b.sh(script);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && ok(&text) {
            return Ok(text);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "`{script}` after {limit:?}: {}; stdout {text:?}; stderr {:?}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
