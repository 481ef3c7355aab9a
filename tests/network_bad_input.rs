//! Broken networks files (`/etc/berth/networks/NAME.toml`), through the real
//! binary: `berth check` names each problem's file, line and column with
//! the fix, a broken network never stops the others being checked, and the
//! exit status is 1. The whole stderr is compared, so a changed message
//! shows as a diff.

use std::fs;
use std::path::Path;
use std::process::Command;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// `berth check` under `root`: (exit code, stderr with `root` as `ROOT`, stdout).
fn check(root: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BERTH)
        .arg("--root")
        .arg(root)
        .arg("check")
        .output()
        .unwrap();
    let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(&root.display().to_string(), "ROOT");
    (out.status.code(), clean(&out.stderr), clean(&out.stdout))
}

#[test]
fn every_broken_network_is_reported_and_the_rest_still_checked() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(
        r,
        "etc/berth/containers/web.toml",
        "image = \"nginx\"\n[network]\nnetworks = [\"app\", \"nope\"]\n",
    );
    write(r, "etc/berth/networks/app.toml", "subnet = \"10.90.0.0/24\"\nmtu = 9000\ndns = false\ninternal = true\nsubnet6 = \"fd00:90::/64\"\n");
    write(
        r,
        "etc/berth/networks/typo.toml",
        "subnet = \"10.91.0.0/24\"\ngatway = \"10.91.0.1\"\n",
    );
    write(
        r,
        "etc/berth/networks/cidr.toml",
        "subnet = \"10.92.300.0/24\"\n",
    );
    write(
        r,
        "etc/berth/networks/hostbits.toml",
        "subnet = \"10.92.1.7/24\"\n",
    );
    write(
        r,
        "etc/berth/networks/outside.toml",
        "subnet = \"10.93.0.0/24\"\ngateway = \"10.94.0.1\"\n",
    );
    write(
        r,
        "etc/berth/networks/family.toml",
        "subnet = \"fd00:1::/64\"\nsubnet6 = \"10.95.0.0/24\"\n",
    );
    write(
        r,
        "etc/berth/networks/mtu.toml",
        "subnet = \"10.96.0.0/24\"\nmtu = 20\n",
    );
    write(
        r,
        "etc/berth/networks/wide.toml",
        "subnet = \"10.97.0.0/16\"\n",
    );
    write(
        r,
        "etc/berth/networks/within.toml",
        "# inside wide\nsubnet = \"10.97.8.0/24\"\n",
    );
    let (code, stderr, stdout) = check(r);
    assert_eq!(code, Some(1), "{stderr}");
    let expected = "\
error: ROOT/etc/berth/containers/web.toml:3:20: [network] networks: unknown network \"nope\": expected \"default\" or a network defined in networks/nope.toml
error: ROOT/etc/berth/networks/cidr.toml:1:10: subnet: invalid subnet \"10.92.300.0/24\": expected \"ADDRESS/PREFIX\" (e.g. \"10.89.1.0/24\")
error: ROOT/etc/berth/networks/family.toml:1:10: subnet: an IPv6 prefix in subnet: expected an IPv4 prefix (e.g. \"10.89.1.0/24\"); put IPv6 in \"subnet6\"
error: ROOT/etc/berth/networks/family.toml:2:11: subnet6: an IPv4 prefix in subnet6: expected an IPv6 prefix (e.g. \"fd00:89:1::/64\"); put IPv4 in \"subnet\"
error: ROOT/etc/berth/networks/hostbits.toml:1:10: subnet: host bits set in \"10.92.1.7/24\": expected \"10.92.1.0/24\"
error: ROOT/etc/berth/networks/mtu.toml:2:7: mtu: invalid mtu 20: expected a number from 68 to 65535
error: ROOT/etc/berth/networks/outside.toml:2:11: gateway: gateway 10.94.0.1 is outside subnet 10.93.0.0/24: expected an address inside it, or no gateway (the first host, 10.93.0.1)
error: ROOT/etc/berth/networks/typo.toml:2:1: gatway: unknown key \"gatway\" at the top level (did you mean \"gateway\"?): expected one of \"subnet\", \"gateway\", \"subnet6\", \"internal\", \"mtu\", \"dns\"
error: ROOT/etc/berth/networks/within.toml:2:10: subnet: 10.97.8.0/24 overlaps 10.97.0.0/16 of network \"wide\" (ROOT/etc/berth/networks/wide.toml:1:10): expected a range no other network uses
";
    assert_eq!(stderr, expected, "{stderr}");
    assert_eq!(
        stdout,
        "berth check: 9 errors; 8 of 1 definition and 10 networks invalid\n"
    );
}

#[test]
fn valid_networks_pass() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(
        r,
        "etc/berth/berth.toml",
        "[network]\ndefault_subnet = \"10.70.0.0/16\"\n",
    );
    write(
        r,
        "etc/berth/containers/web.toml",
        "image = \"nginx\"\n[network]\nnetworks = [\"app\", \"default\"]\n",
    );
    write(
        r,
        "etc/berth/networks/app.toml",
        "gateway = \"10.70.1.254\"\nsubnet = \"10.70.1.0/24\"\n",
    );
    // /run and /usr/lib follow the definitions' precedence: /etc masks.
    write(r, "usr/lib/berth/networks/app.toml", "subnet = \"bad\"\n");
    write(
        r,
        "usr/lib/berth/networks/old.toml",
        "subnet = \"10.70.1.0/24\"\n",
    );
    write(r, "etc/berth/networks/old.toml", "");
    let (code, stderr, stdout) = check(r);
    assert_eq!((code, stderr.as_str()), (Some(0), ""), "{stdout}");
    assert!(
        stdout.contains("1 definition and 2 networks, all valid"),
        "{stdout}"
    );
}

#[test]
fn a_bad_default_subnet_is_named_in_berth_toml() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(
        r,
        "etc/berth/berth.toml",
        "[network]\ndefault_subnet = \"fd00::/48\"\n",
    );
    let (code, stderr, _) = check(r);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "error: ROOT/etc/berth/berth.toml: [network] default_subnet: \"fd00::/48\" is IPv6: expected an IPv4 prefix such as \"10.89.0.0/16\" (IPv6 ranges are per network, subnet6)\n"
    );
}
