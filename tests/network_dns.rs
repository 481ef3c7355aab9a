//! `berth dns` for real, in a network namespace the test makes: a dummy
//! interface holds the networks' gateway addresses and the "containers'"
//! addresses, lease files are written under a temporary root
//! (`$BERTH_ROOT`), and a fake upstream resolver on 127.0.0.2 stands in for
//! the host's resolv.conf nameserver. Queries are plain UDP/TCP sockets
//! bound to a member's address, as a container's resolver would send them.
#[path = "support/registry.rs"]
mod reg;
mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::network::dns::codec::{self, TYPE_A, TYPE_AAAA};

const APP_GW: &str = "10.89.5.1";
const APP_GW6: &str = "fd00:5::1";
const OTHER_GW: &str = "10.89.6.1";

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?}: {st}");
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    // Written to a temporary name and renamed, as a writer that is never
    // seen half done (the server re-reads a lease at every query anyway).
    let tmp = p.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
}

/// `berth dns` running under `root`, killed on drop.
struct Dns {
    child: Child,
    root: tempfile::TempDir,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dns {
    fn root(&self) -> &Path {
        self.root.path()
    }

    /// Whether the process still runs (a malformed packet must not end it).
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// The networks `app` (dual stack) and `other`, their members' leases, the
/// host's resolv.conf naming 127.0.0.2, and `berth dns` started and READY
/// (by its sd_notify message) before any address exists: it binds them
/// with IP_FREEBIND. Then the addresses are added to a bridge.
fn start() -> Dns {
    start_with(true)
}

/// [`start`], with no /run/berth at all when `with_run` is false (a fresh
/// boot: /run/berth is made by the first container's start).
fn start_with(with_run: bool) -> Dns {
    reg::private_netns();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(
        r,
        "etc/berth/networks/app.toml",
        "subnet = \"10.89.5.0/24\"\nsubnet6 = \"fd00:5::/64\"\n",
    );
    write(
        r,
        "etc/berth/networks/other.toml",
        "subnet = \"10.89.6.0/24\"\n",
    );
    write(
        r,
        "etc/berth/networks/quiet.toml",
        "subnet = \"10.89.7.0/24\"\ndns = false\n",
    );
    write(
        r,
        "etc/berth/networks/sealed.toml",
        "subnet = \"10.89.9.0/24\"\ninternal = true\n",
    );
    write(
        r,
        "etc/resolv.conf",
        "# as systemd-resolved writes it\nnameserver 127.0.0.2\noptions edns0\n",
    );
    // /run itself always exists.
    std::fs::create_dir_all(r.join("run")).unwrap();
    if with_run {
        write(
            r,
            "run/berth/leases/app/10.89.5.2",
            "web\naliases www api\n",
        );
        write(
            r,
            "run/berth/leases/app/fd00:5::2",
            "web\naliases www api\n",
        );
        write(
            r,
            "run/berth/leases/app/10.89.5.3",
            "client\nsomething new\n",
        );
        write(
            r,
            "run/berth/leases/app/10.89.5.4",
            "picky\ndns 127.0.0.3\n",
        );
        write(r, "run/berth/leases/other/10.89.6.2", "secret\n");
        write(r, "run/berth/leases/sealed/10.89.9.2", "vault\n");
        write(r, "run/berth/leases/sealed/10.89.9.3", "bridgehead\n");
        write(r, "run/berth/leases/other/10.89.6.3", "bridgehead\n");
        std::fs::write(r.join("run/berth/leases/app/.lock"), "").unwrap();
    }
    let sock_path = r.join("notify.sock");
    let notify = UnixDatagram::bind(&sock_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut cmd = Command::new(support::berth_bin());
    cmd.arg("dns")
        .env("BERTH_ROOT", r)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("BERTH_LOG", "info")
        .stdin(Stdio::null());
    reg::die_with_parent(&mut cmd);
    let child = cmd.spawn().unwrap();
    let mut buf = [0u8; 512];
    loop {
        let n = notify
            .recv(&mut buf)
            .expect("READY=1 from berth dns within 20 s");
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            break;
        }
    }
    let dns = Dns { child, root };
    ip(&["link", "add", "br0", "type", "bridge"]);
    ip(&["link", "set", "br0", "up"]);
    for a in [
        "10.89.5.1/24",
        "10.89.5.2/32",
        "10.89.5.3/32",
        "10.89.5.4/32",
        "10.89.6.1/24",
        "10.89.6.2/32",
        "10.89.7.1/24",
        "10.89.7.2/32",
        "10.89.9.1/24",
        "10.89.9.2/32",
        "10.89.9.3/32",
        "10.99.0.9/32",
    ] {
        ip(&["addr", "add", a, "dev", "br0"]);
    }
    for a in ["fd00:5::1/64", "fd00:5::2/128", "fd00:5::3/128"] {
        ip(&["addr", "add", a, "dev", "br0", "nodad"]);
    }
    dns
}

/// A fake upstream resolver on `addr`:53 (UDP and TCP): `outside.example`
/// is 192.0.2.7, `silent.example` is never answered, anything else is
/// NXDOMAIN. Counts the queries it gets.
fn upstream(addr: &str) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let udp = UdpSocket::bind((addr, 53)).unwrap();
    let c = Arc::clone(&count);
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            c.fetch_add(1, Ordering::SeqCst);
            if let Some(r) = upstream_answer(&buf[..n]) {
                let _ = udp.send_to(&r, from);
            }
        }
    });
    let tcp = TcpListener::bind((addr, 53)).unwrap();
    let c = Arc::clone(&count);
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = tcp.accept() {
            c.fetch_add(1, Ordering::SeqCst);
            if let Some(q) = read_frame(&mut s) {
                if let Some(r) = upstream_answer(&q) {
                    write_frame(&mut s, &r);
                }
            }
        }
    });
    count
}

fn upstream_answer(msg: &[u8]) -> Option<Vec<u8>> {
    let q = codec::parse_query(msg).ok()?;
    match q.name()?.as_str() {
        "outside.example" => Some(codec::answer(&q, &["192.0.2.7".parse().unwrap()], 300)),
        "silent.example" => None,
        _ => Some(codec::error(&q, codec::RCODE_NXDOMAIN)),
    }
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn write_frame(s: &mut TcpStream, msg: &[u8]) {
    let mut out = (msg.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    s.write_all(&out).unwrap();
}

/// Send `msg` from `from` to `server`:53 over UDP; the reply, or `None`
/// after `wait`.
fn exchange(from: &str, server: &str, msg: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let s = UdpSocket::bind((from, 0)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.send_to(msg, (server, 53)).unwrap();
    let mut buf = [0u8; 1500];
    let n = s.recv(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// Ask `name` (type `qtype`) from `from` at `server`; (rcode, addresses).
fn ask(from: &str, server: &str, name: &str, qtype: u16) -> (u8, Vec<IpAddr>) {
    let id = 0x4242;
    let r = exchange(
        from,
        server,
        &codec::query(id, name, qtype),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("no answer to {name} from {server}"));
    assert_eq!(codec::id(&r), Some(id), "the client's ID comes back");
    codec::parse_answers(&r).unwrap()
}

fn addrs(v: &[&str]) -> Vec<IpAddr> {
    v.iter().map(|a| a.parse().unwrap()).collect()
}

fn poll_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn names_and_aliases_answer_on_their_network_only_and_follow_the_lease() {
    require_root!();
    require_program!("ip");
    let dns = start();
    let upstream_count = upstream("127.0.0.2");
    let c = "10.89.5.3";
    assert_eq!(ask(c, APP_GW, "web", TYPE_A), (0, addrs(&["10.89.5.2"])));
    assert_eq!(ask(c, APP_GW, "web", TYPE_AAAA), (0, addrs(&["fd00:5::2"])));
    assert_eq!(ask(c, APP_GW, "WWW.", TYPE_A), (0, addrs(&["10.89.5.2"])));
    assert_eq!(ask(c, APP_GW, "api", TYPE_A), (0, addrs(&["10.89.5.2"])));
    // A member with no v6 address: the name exists, no AAAA (NOERROR).
    assert_eq!(ask("10.89.5.2", APP_GW, "client", TYPE_AAAA), (0, vec![]));
    // Over IPv6, to the dual-stack network's v6 gateway.
    assert_eq!(
        ask("fd00:5::3", APP_GW6, "web", TYPE_A),
        (0, addrs(&["10.89.5.2"]))
    );
    // A member of another network is not answered: the query goes upstream,
    // which does not know it either.
    assert_eq!(
        ask(c, APP_GW, "secret", TYPE_A),
        (codec::RCODE_NXDOMAIN, vec![])
    );
    assert_eq!(
        ask("10.89.6.2", OTHER_GW, "web", TYPE_A),
        (codec::RCODE_NXDOMAIN, vec![])
    );
    assert_eq!(
        ask("10.89.6.2", OTHER_GW, "secret", TYPE_A),
        (0, addrs(&["10.89.6.2"]))
    );
    // Reverse names of members: PTR; of an address of another network in a
    // served range: NXDOMAIN from berth dns itself, never asked upstream.
    let ptr = |name: &str| {
        let r = exchange(
            c,
            APP_GW,
            &codec::query(3, name, codec::TYPE_PTR),
            Duration::from_secs(10),
        )
        .unwrap();
        (codec::parse_answers(&r).unwrap().0, codec::parse_ptr(&r))
    };
    assert_eq!(ptr("2.5.89.10.in-addr.arpa"), (0, Some("web".into())));
    let six = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.0.0.d.f.ip6.arpa";
    assert_eq!(ptr(six), (0, Some("web".into())));
    let before = upstream_count.load(Ordering::SeqCst);
    assert_eq!(ptr("2.6.89.10.in-addr.arpa"), (codec::RCODE_NXDOMAIN, None));
    assert_eq!(upstream_count.load(Ordering::SeqCst), before);
    // A network with dns = false is not served at all.
    let quiet = exchange(
        "10.89.7.2",
        "10.89.7.1",
        &codec::query(1, "web", TYPE_A),
        Duration::from_millis(300),
    );
    assert_eq!(quiet, None, "dns = false: nothing listens on its gateway");

    // web restarts with another address: its old lease goes, a new one
    // comes (a fresh file, as ipam creates it), and it is answered there.
    let leases = dns.root().join("run/berth/leases/app");
    std::fs::remove_file(leases.join("10.89.5.2")).unwrap();
    std::fs::remove_file(leases.join("fd00:5::2")).unwrap();
    write(
        dns.root(),
        "run/berth/leases/app/10.89.5.9",
        "web\naliases www\n",
    );
    assert_eq!(ask(c, APP_GW, "web", TYPE_A), (0, addrs(&["10.89.5.9"])));
    assert_eq!(ask(c, APP_GW, "www", TYPE_A), (0, addrs(&["10.89.5.9"])));
    // Its alias api is gone with the old lease: now an outside name.
    assert_eq!(
        ask(c, APP_GW, "api", TYPE_A),
        (codec::RCODE_NXDOMAIN, vec![])
    );
    // A client outside every served range is not answered (no open resolver).
    let stray = exchange(
        "10.99.0.9",
        APP_GW,
        &codec::query(1, "web", TYPE_A),
        Duration::from_millis(300),
    );
    assert_eq!(stray, None);
}

#[test]
fn outside_names_are_forwarded_to_the_hosts_or_the_containers_resolvers() {
    require_root!();
    require_program!("ip");
    let _dns = start();
    let host = upstream("127.0.0.2");
    let own = upstream("127.0.0.3");
    let c = "10.89.5.3";
    assert_eq!(
        ask(c, APP_GW, "outside.example", TYPE_A),
        (0, addrs(&["192.0.2.7"]))
    );
    assert_eq!(
        ask(c, APP_GW, "nowhere.example", TYPE_A),
        (codec::RCODE_NXDOMAIN, vec![])
    );
    assert_eq!(host.load(Ordering::SeqCst), 2);
    assert_eq!(own.load(Ordering::SeqCst), 0);
    // "picky" has its own `dns` servers: those are asked, not the host's.
    assert_eq!(
        ask("10.89.5.4", APP_GW, "outside.example", TYPE_A),
        (0, addrs(&["192.0.2.7"]))
    );
    assert_eq!(own.load(Ordering::SeqCst), 1);
    assert_eq!(host.load(Ordering::SeqCst), 2);
    // An internal network has no way out, not even by DNS: its members'
    // names answer, outside names are refused without asking upstream,
    // unless the client is also on a network that is not internal.
    let sealed_gw = "10.89.9.1";
    assert_eq!(
        ask("10.89.9.2", sealed_gw, "bridgehead", TYPE_A),
        (0, addrs(&["10.89.9.3"]))
    );
    assert_eq!(
        ask("10.89.9.2", sealed_gw, "outside.example", TYPE_A),
        (codec::RCODE_REFUSED, vec![])
    );
    assert_eq!(host.load(Ordering::SeqCst), 2);
    assert_eq!(
        ask("10.89.9.3", sealed_gw, "outside.example", TYPE_A),
        (0, addrs(&["192.0.2.7"]))
    );
    assert_eq!(host.load(Ordering::SeqCst), 3);
    // An upstream that never answers: SERVFAIL after its timeout, and
    // meanwhile other queries are answered.
    let waiting = std::thread::spawn(move || ask(c, APP_GW, "silent.example", TYPE_A));
    poll_until("the silent query to reach the upstream", || {
        host.load(Ordering::SeqCst) == 3
    });
    let t = Instant::now();
    assert_eq!(
        ask(c, APP_GW, "outside.example", TYPE_A),
        (0, addrs(&["192.0.2.7"]))
    );
    assert_eq!(ask(c, APP_GW, "web", TYPE_A), (0, addrs(&["10.89.5.2"])));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "blocked behind the silent query: {:?}",
        t.elapsed()
    );
    assert_eq!(waiting.join().unwrap(), (codec::RCODE_SERVFAIL, vec![]));
}

#[test]
fn tcp_queries_are_answered_and_forwarded() {
    require_root!();
    require_program!("ip");
    let _dns = start();
    upstream("127.0.0.2");
    let tcp_ask = |name: &str| {
        let mut s = connect_from("10.89.5.3", APP_GW);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write_frame(&mut s, &codec::query(9, name, TYPE_A));
        let r = read_frame(&mut s).expect("an answer over TCP");
        assert_eq!(codec::id(&r), Some(9));
        codec::parse_answers(&r).unwrap()
    };
    assert_eq!(tcp_ask("web"), (0, addrs(&["10.89.5.2"])));
    assert_eq!(tcp_ask("outside.example"), (0, addrs(&["192.0.2.7"])));
}

fn connect_from(from: &str, to: &str) -> TcpStream {
    // std cannot bind a TcpStream before connecting: the source address is
    // chosen by the route, and a /32 on the same interface as the /24
    // gateway would not be picked. A socket bound by hand is.
    use std::os::fd::FromRawFd;
    let from: std::net::Ipv4Addr = from.parse().unwrap();
    let to: std::net::Ipv4Addr = to.parse().unwrap();
    let sin = |a: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let a = sin(from, 0);
        assert_eq!(
            libc::bind(fd, (&a as *const libc::sockaddr_in).cast(), len),
            0
        );
        let b = sin(to, 53);
        assert_eq!(
            libc::connect(fd, (&b as *const libc::sockaddr_in).cast(), len),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
        TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn malformed_packets_get_no_crash_and_the_next_query_is_answered() {
    require_root!();
    require_program!("ip");
    let mut dns = start();
    upstream("127.0.0.2");
    let c = "10.89.5.3";
    let s = UdpSocket::bind((c, 0)).unwrap();
    let mut looping = codec::query(1, "web", TYPE_A);
    looping.truncate(12);
    looping.extend_from_slice(&[1, b'a', 0xC0, 12, 0, 1, 0, 1]);
    let mut response = codec::query(2, "web", TYPE_A);
    response[2] |= 0x80;
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 11],
        codec::query(3, "web", TYPE_A)[..15].to_vec(),
        looping,
        response,
        vec![0xC0; 600],
    ];
    for b in &bad {
        s.send_to(b, (APP_GW, 53)).unwrap();
    }
    assert!(dns.alive());
    assert_eq!(ask(c, APP_GW, "web", TYPE_A), (0, addrs(&["10.89.5.2"])));
    assert!(dns.alive(), "berth dns ended after a malformed packet");
}

#[test]
fn a_network_defined_after_the_start_is_served_without_a_reload() {
    require_root!();
    require_program!("ip");
    let dns = start();
    upstream("127.0.0.2");
    write(
        dns.root(),
        "etc/berth/networks/late.toml",
        "subnet = \"10.89.8.0/24\"\n",
    );
    write(dns.root(), "run/berth/leases/late/10.89.8.2", "newcomer\n");
    ip(&["addr", "add", "10.89.8.1/24", "dev", "br0"]);
    ip(&["addr", "add", "10.89.8.3/32", "dev", "br0"]);
    poll_until("the late network's gateway to answer", || {
        exchange(
            "10.89.8.3",
            "10.89.8.1",
            &codec::query(5, "newcomer", TYPE_A),
            Duration::from_millis(200),
        )
        .and_then(|r| codec::parse_answers(&r))
            == Some((0, addrs(&["10.89.8.2"])))
    });
}

/// Python in the box: send the query (hex) from SRC to DST:53, print the
/// answer in hex.
const PY_ASK: &str = "import socket,sys\n\
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
s.bind((sys.argv[2],0))\n\
s.settimeout(5)\n\
s.sendto(bytes.fromhex(sys.argv[1]),(sys.argv[3],53))\n\
sys.stdout.write(s.recv(1500).hex())\n";

/// Python in the box: a resolver on 127.0.0.53 (where systemd-resolved's
/// stub listens) answering every A query with 192.0.2.7.
const PY_RESOLVED: &str = r#"import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.53", 53))
while True:
    q, a = s.recvfrom(1500)
    r = bytearray(q)
    r[2] |= 0x80
    r[3] = 0x80
    r[6:8] = b"\x00\x01"
    r[10:12] = b"\x00\x00"
    r += bytes([0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7])
    s.sendto(bytes(r), a)
"#;

#[test]
fn the_installed_unit_serves_names_sandboxed_under_systemd() {
    use support::systemd_box::{shell_quote, BoxOptions, SystemdBox};
    require_root!();
    require_program!("nsenter");
    require_program!("python3");
    let b = SystemdBox::boot(BoxOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    b.install_berth();
    let verify = b.sh("systemd-analyze verify /usr/lib/systemd/system/berth-dns.service");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    b.write_file(
        "/etc/berth/networks/app.toml",
        b"subnet = \"10.89.5.0/24\"\n",
    );
    b.write_file("/srv/resolved.py", PY_RESOLVED.as_bytes());
    b.write_file("/srv/ask.py", PY_ASK.as_bytes());
    b.sh_ok(
        "install -d -m 0700 /run/berth /run/berth/leases /run/berth/leases/app && \
         printf 'web\\naliases www\\n' > /run/berth/leases/app/10.89.5.2 && \
         printf 'client\\n' > /run/berth/leases/app/10.89.5.3 && \
         rm -f /etc/resolv.conf && echo 'nameserver 127.0.0.53' > /etc/resolv.conf && \
         systemd-run --quiet --unit=fake-resolved python3 /srv/resolved.py",
    );
    b.wait_until(
        "grep -q ' 3500007F:0035 ' /proc/net/udp",
        Duration::from_secs(20),
    );
    b.sh_ok("systemctl start berth-dns.service");
    let p = b.show(
        "berth-dns.service",
        "ActiveState,Type,NoNewPrivileges,ProtectSystem",
    );
    assert_eq!(p["ActiveState"], "active");
    assert_eq!(p["Type"], "notify");
    assert_eq!(p["ProtectSystem"], "strict");
    // The bridge and its addresses come after the service is up.
    b.sh_ok(
        "ip link add br0 type bridge && ip link set br0 up && \
         ip addr add 10.89.5.1/24 dev br0 && ip addr add 10.89.5.3/32 dev br0",
    );
    let ask = |name: &str| {
        let q = hex::encode(codec::query(77, name, TYPE_A));
        let out = b.sh_ok(&format!(
            "python3 /srv/ask.py {} 10.89.5.3 {APP_GW}",
            shell_quote(&q)
        ));
        codec::parse_answers(&hex::decode(out.trim()).unwrap()).unwrap()
    };
    assert_eq!(ask("www"), (0, addrs(&["10.89.5.2"])));
    // Forwarded to the resolver on 127.0.0.53, which only the host's
    // network namespace reaches.
    assert_eq!(ask("outside.example"), (0, addrs(&["192.0.2.7"])));
    b.sh_ok("systemctl reload berth-dns.service");
    assert_eq!(
        b.show("berth-dns.service", "ActiveState")["ActiveState"],
        "active"
    );
    assert_eq!(ask("web"), (0, addrs(&["10.89.5.2"])));
}

#[test]
fn a_runtime_network_is_served_when_run_berth_is_made_after_the_start() {
    require_root!();
    require_program!("ip");
    // As on a fresh boot: no /run/berth when berth dns starts; then a
    // runtime network file and its first lease.
    let dns = start_with(false);
    upstream("127.0.0.2");
    let run = dns.root().join("run");
    std::fs::create_dir(run.join("berth")).unwrap();
    write(
        dns.root(),
        "run/berth/networks/late.toml",
        "subnet = \"10.89.8.0/24\"\n",
    );
    write(dns.root(), "run/berth/leases/late/10.89.8.2", "newcomer\n");
    ip(&["addr", "add", "10.89.8.1/24", "dev", "br0"]);
    ip(&["addr", "add", "10.89.8.3/32", "dev", "br0"]);
    poll_until("the runtime network's gateway to answer", || {
        exchange(
            "10.89.8.3",
            "10.89.8.1",
            &codec::query(5, "newcomer", TYPE_A),
            Duration::from_millis(200),
        )
        .and_then(|r| codec::parse_answers(&r))
            == Some((0, addrs(&["10.89.8.2"])))
    });
}
