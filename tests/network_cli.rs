//! `berth network ls|inspect` through the real binary, on a root prefix
//! holding networks files, lease files (`run/berth/leases/NETWORK/ADDRESS`,
//! in the format the start path writes) and a bridge in `sys/class/net`:
//! what a user sees is the resolved networks (a carved subnet included),
//! which bridges exist, and who is on each network with which addresses.
//! No root needed: everything is read under `--root`.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn berth(root: &Path, args: &[&str]) -> Output {
    Command::new(BERTH)
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(
        r,
        "etc/berth/networks/app.toml",
        "subnet = \"10.77.0.0/24\"\nsubnet6 = \"fd00:77::/64\"\ninternal = true\n",
    );
    // `back` has no subnet: carved from default_subnet after `default`.
    write(r, "etc/berth/networks/back.toml", "dns = false\n");
    write(
        r,
        "run/berth/leases/app/10.77.0.2",
        "web\naliases www api\ndns 192.0.2.53\n",
    );
    write(r, "run/berth/leases/app/fd00:77::2", "web\n");
    write(r, "run/berth/leases/app/10.77.0.3", "db\n");
    write(r, "run/berth/leases/app/.lock", "");
    write(r, "run/berth/leases/default/10.89.0.2", "db\n");
    fs::create_dir_all(r.join("sys/class/net/berth-app")).unwrap();
    t
}

#[test]
fn ls_shows_subnets_bridges_and_member_counts() {
    let t = root();
    let out = berth(t.path(), &["network", "ls"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "NAME     BRIDGE      SUBNETS                    GATEWAY    INTERNAL  DNS  MEMBERS\n\
         app      berth-app   10.77.0.0/24,fd00:77::/64  10.77.0.1  yes       yes  2\n\
         back     berth-back  10.89.1.0/24               10.89.1.1  no        no   0\n\
         default  berth0      10.89.0.0/24               10.89.0.1  no        yes  1\n"
    );
}

#[test]
fn inspect_shows_the_resolved_network_and_its_members() {
    let t = root();
    let out = berth(t.path(), &["network", "inspect", "app", "back"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let app = &v[0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["bridge"], "berth-app");
    assert_eq!(app["bridge_exists"], true);
    assert_eq!(app["subnet"], "10.77.0.0/24");
    assert_eq!(app["gateway"], "10.77.0.1");
    assert_eq!(app["subnet6"], "fd00:77::/64");
    assert_eq!(app["internal"], true);
    assert_eq!(
        app["members"],
        serde_json::json!([
            {"name": "db", "addresses": ["10.77.0.3"]},
            {"name": "web", "addresses": ["10.77.0.2", "fd00:77::2"], "aliases": ["www", "api"]},
        ])
    );
    let back = &v[1];
    assert_eq!(back["subnet"], "10.89.1.0/24", "carved after default's");
    assert_eq!(back["bridge_exists"], false);
    assert_eq!(back["dns"], false);
    assert_eq!(back["members"], serde_json::json!([]));
}

#[test]
fn an_unknown_network_lists_the_known_ones() {
    let t = root();
    let out = berth(t.path(), &["network", "inspect", "nope"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no network \"nope\": the networks are app, back, default"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn port_of_a_container_that_is_not_running_says_so() {
    let t = root();
    write(
        t.path(),
        "etc/berth/containers/web.toml",
        "image = \"nginx\"\n[network]\npublish = [\"8080:80\"]\n",
    );
    let out = berth(t.path(), &["port", "web"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("container \"web\" is not running"),
        "{stderr}"
    );
    let out = berth(t.path(), &["port", "web", "80/sctp"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown protocol \"sctp\""),
        "{out:?}"
    );
}
