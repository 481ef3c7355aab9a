//! Class 8 of issue 12: registry credentials. A registry's 401 names the
//! token realm, so a hostile registry can point it at any scheme and host;
//! berth used to send the registry's Basic credentials there. Against the
//! real docker-registry on loopback (TLS, token auth), with credentials for
//! it in berth's auth file: a realm on plain http and a realm on another
//! host must both be refused, with a clear error, before anything is sent.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::reg::{self, Killed, Registry, RegistryOptions};
#[allow(unused_imports)]
use crate::{require_program, require_root};

/// A loopback listener that counts connections and requests carrying an
/// Authorization header (for a plain-http realm; a TLS client shows up as a
/// connection).
struct Witness {
    port: u16,
    connections: Arc<AtomicUsize>,
    authorizations: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Witness {
    fn start() -> Witness {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let authorizations = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, a, s) = (connections.clone(), authorizations.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut conn, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        conn.set_nonblocking(false).unwrap();
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 8192];
                        let n = conn.read(&mut buf).unwrap_or(0);
                        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                        if head.contains("\r\nauthorization:") {
                            a.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Witness {
            port,
            connections,
            authorizations,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A berth host root trusting the registry's CA for `hosts`, with
/// credentials for each of `hosts` in its auth file; `extra` is appended.
fn berth_root(dir: &Path, reg: &Registry, hosts: &[String], extra: &str) -> std::path::PathBuf {
    use base64::Engine;
    std::fs::create_dir_all(dir).unwrap();
    let auth = dir.join("auth.json");
    let token = base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pass");
    let auths: serde_json::Map<String, serde_json::Value> = hosts
        .iter()
        .map(|h| (h.clone(), serde_json::json!({ "auth": token })))
        .collect();
    std::fs::write(&auth, serde_json::json!({ "auths": auths }).to_string()).unwrap();
    let root = reg::globals_root(
        dir,
        &dir.join("store"),
        &format!("[auth]\nfile = \"{}\"\n{extra}", auth.display()),
    );
    let certs = root.join("etc/berth/certs.d");
    for h in hosts {
        std::fs::create_dir_all(certs.join(h)).unwrap();
        std::fs::copy(reg.dir.path().join("ca.crt"), certs.join(h).join("ca.crt")).unwrap();
    }
    root
}

fn pull(root: &Path, reference: &str) -> Output {
    std::process::Command::new(crate::support::berth_bin())
        .arg("--root")
        .arg(root)
        .args(["pull", reference])
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn credentials_never_go_to_a_foreign_or_plain_http_token_realm() {
    require_root!();
    require_program!("docker-registry");
    require_program!("openssl");
    let tmp = tempfile::tempdir().unwrap();
    // The fixture's realm: http://127.0.0.1:TOKEN_PORT/token, another port
    // and plain http, while the registry itself speaks TLS.
    let registry = Registry::start(RegistryOptions {
        tls: true,
        token: true,
        ..Default::default()
    });
    let ts = registry.token_server.as_ref().unwrap();
    // A second registry from the same config whose realm is https on
    // another host:port, where a witness listens.
    let witness = Witness::start();
    let port2 = reg::free_port();
    let cfg = std::fs::read_to_string(registry.dir.path().join("config.yml")).unwrap();
    let cfg2 = cfg
        .replace(
            &format!("realm: http://127.0.0.1:{}/token", ts.port),
            &format!("realm: https://127.0.0.1:{}/token", witness.port),
        )
        .replace(
            &format!("addr: 127.0.0.1:{}", registry.port),
            &format!("addr: 127.0.0.1:{port2}"),
        );
    assert_ne!(cfg, cfg2);
    let cfg2_path = registry.dir.path().join("config2.yml");
    std::fs::write(&cfg2_path, cfg2).unwrap();
    let _second = Killed(
        std::process::Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg2_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    reg::wait_for_port(port2);
    let host1 = registry.host();
    let host2 = format!("127.0.0.1:{port2}");
    let root = berth_root(
        &tmp.path().join("a"),
        &registry,
        &[host1.clone(), host2.clone()],
        "",
    );

    // A: the realm is plain http (and another port).
    let before = ts.hits.load(Ordering::Relaxed);
    let o = pull(&root, &format!("{host1}/tok/img:t"));
    let out = text(&o);
    println!("http realm: {out}");
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("is not https"), "{out}");
    assert_eq!(
        ts.hits.load(Ordering::Relaxed),
        before,
        "the plain-http token endpoint was asked"
    );

    // B: the realm is https on another host.
    let o = pull(&root, &format!("{host2}/tok/img:t"));
    let out = text(&o);
    println!("foreign realm: {out}");
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("auth_realms"), "{out}");
    assert_eq!(witness.connections.load(Ordering::Relaxed), 0);
    assert_eq!(witness.authorizations.load(Ordering::Relaxed), 0);

    // C: the admin lists that host: berth now goes there (the witness
    // speaks no TLS, so the pull still fails, later).
    let root_c = berth_root(
        &tmp.path().join("c"),
        &registry,
        std::slice::from_ref(&host2),
        &format!(
            "[[registry]]\nhost = \"{host2}\"\nauth_realms = [\"127.0.0.1:{}\"]\n",
            witness.port
        ),
    );
    let o = pull(&root_c, &format!("{host2}/tok/img:t"));
    println!("listed realm: {}", text(&o));
    assert!(witness.connections.load(Ordering::Relaxed) > 0);

    // The peer, for the record: skopeo with the same credentials against A.
    if crate::support::have_program("skopeo") {
        let before = ts.hits.load(Ordering::Relaxed);
        let o = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                "alice:s3cret-pass",
            ])
            .arg(format!("docker://{host1}/tok/img:t"))
            .output()
            .unwrap();
        println!(
            "peer skopeo, http realm: {:?}, token endpoint asked {} time(s)",
            o.status.code(),
            ts.hits.load(Ordering::Relaxed) - before
        );
    }
}
