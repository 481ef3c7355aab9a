//! Golden tests of the network plan: networks files + definitions → the
//! resolved networks, each container's addresses and the `nft -f` text of
//! its start and stop, and of each network's teardown.
//!
//! Each directory in `tests/cases/network/` is one case: `input/` laid out
//! as on a host (`etc/berth/berth.toml`, `etc/berth/networks/`,
//! `etc/berth/containers/`), `expected/` the files below, `README` what it
//! pins. Containers start in name order, each leasing its addresses on its
//! networks in order (`network::ipam`, in a fresh run dir), so addresses
//! are deterministic. `BERTH_BLESS=1 cargo test --test network_golden`
//! rewrites `expected/`; review the diff.
//!
//! - `networks`: one line per resolved network;
//! - `NAME.start.nft`, `NAME.stop.nft`: a container's transactions;
//! - `NETWORK.teardown.nft`: a network's, after its last member stops.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::golden;

use berth::config::{self, NetworkMode};
use berth::network::config::{plan_networks, Network};
use berth::network::ipam::LeaseInfo;
use berth::network::{ipam, plan};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/network")
}

fn plan_case(input: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let globals = config::load_globals(input).unwrap();
    let (defs, errors) = config::load_all_networks(input);
    assert!(errors.is_empty(), "{errors:?}");
    let (nets, diags) = plan_networks(
        &defs,
        &globals.default_subnet,
        &input.join(config::global::GLOBAL_FILE),
    );
    assert!(diags.is_empty(), "{diags}");
    let mut listing = String::new();
    for n in &nets {
        listing.push_str(&format!(
            "{} bridge={} subnet={} gateway={} subnet6={} gateway6={} internal={} mtu={} dns={}\n",
            n.name,
            n.bridge,
            n.subnet,
            n.gateway,
            n.subnet6.map_or("-".into(), |s| s.to_string()),
            n.gateway6.map_or("-".into(), |s| s.to_string()),
            n.internal,
            n.mtu.map_or("-".into(), |m| m.to_string()),
            n.dns,
        ));
    }
    out.insert("networks".to_string(), listing);
    let loaded = config::load_all(input);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let run = tempfile::tempdir().unwrap();
    let by_name: BTreeMap<&str, &Network> = nets.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut used = std::collections::BTreeSet::new();
    for def in &loaded.definitions {
        if def.network.mode != NetworkMode::Bridge {
            continue;
        }
        let attachments: Vec<plan::Attachment<'_>> = def
            .network
            .networks
            .iter()
            .map(|name| {
                let network = by_name[name.as_str()];
                used.insert(name.clone());
                let addresses = ipam::allocate(
                    run.path(),
                    network,
                    (&def.name, &LeaseInfo::default()),
                    None,
                    &|_| true,
                )
                .unwrap();
                plan::Attachment { network, addresses }
            })
            .collect();
        let member = plan::Member {
            container: &def.name,
            attachments,
            publish: &def.network.publish,
        };
        let start = plan::plan_start(&member).unwrap();
        out.insert(format!("{}.start.nft", def.name), plan::render_nft(&start));
        let stop = plan::plan_stop(&member).unwrap();
        out.insert(format!("{}.stop.nft", def.name), plan::render_nft(&stop));
    }
    for name in used {
        let t = plan::plan_network_teardown(by_name[name.as_str()]);
        out.insert(format!("{name}.teardown.nft"), plan::render_nft(&t));
    }
    out
}

#[test]
fn network_cases() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let actual = plan_case(&case.join("input"));
        for f in golden::check_tree(&case.join("expected"), &actual) {
            failures.push(format!("{name}: {f}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden failure(s) ({}=1 rewrites expected files):\n\n{}",
        failures.len(),
        golden::BLESS_VAR,
        failures.join("\n")
    );
}
