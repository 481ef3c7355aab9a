//! Golden tests of the planner: definition + image config → OCI runtime spec.
//!
//! Each directory in `tests/cases/spec/` is one case:
//! - `definition.toml`: the container `web` (loaded through `config`, so it is
//!   validated exactly as on a host);
//! - `image-config.json` (optional): an OCI image configuration;
//! - `passwd`, `group` (optional): the image's `/etc/passwd`, `/etc/group`;
//! - `files/` (optional): host files the definition names (environment files),
//!   laid out by their absolute path;
//! - `host-devices` (optional): the host's device nodes, one per line as
//!   `PATH c|b MAJOR MINOR MODE UID GID` (what `supervise` finds for
//!   `[security] devices`; an entry with no line is missing on the host);
//! - `expected.json`: the spec, or `expected-error`: the exact error message;
//! - `README`: what the case pins.
//!
//! The context is fixed (see `context()`), capability sets are sorted before
//! comparing (oci-spec keeps them in a `HashSet`). `BERTH_BLESS=1 cargo test
//! --test spec_golden` rewrites the expected files (`support::golden`, the
//! switch every golden harness shares); review the diff.

mod support;

use std::path::{Path, PathBuf};

use support::golden;

use berth::spec::{self, IdRange, ImageConfigView, PlanContext};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/spec")
}

/// The fixed context every case is planned with. The seccomp profile is a
/// placeholder (the real default profile belongs to the runtime and has its
/// own tests); its presence or absence is what the cases pin.
fn context(
    case: &Path,
    def: &berth::config::Definition,
    image: Option<&ImageConfigView>,
) -> PlanContext {
    let read = |name: &str| std::fs::read_to_string(case.join(name)).ok();
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActErrno);
    PlanContext {
        rootfs: "/run/berth/containers/web/rootfs".into(),
        run_dir: "/run/berth/containers/web".into(),
        storage_root: "/var/lib/berth".into(),
        credentials_dir: Some("/run/credentials/berth@web.service".into()),
        environment_files: def
            .environment_files
            .iter()
            .map(|p| {
                let local = case.join("files").join(p.strip_prefix("/").unwrap());
                let text = std::fs::read_to_string(&local)
                    .unwrap_or_else(|e| panic!("{}: {e}", local.display()));
                (p.clone(), text)
            })
            .collect(),
        passwd: read("passwd"),
        group: read("group"),
        seccomp: Some(seccomp),
        id_range: Some(IdRange {
            host_start: 1_000_000_000,
            size: spec::USERNS_SIZE,
        }),
        terminal: false,
        command_override: None,
        nofile_limit: None,
        notify_socket: Some("/run/berth/containers/web/notify.sock".into()),
        // `mode = "container:NAME"`: the other container's namespace, as
        // the supervisor finds it running.
        network_namespace: def
            .network
            .container
            .as_ref()
            .map(|_| "/proc/4242/ns/net".into()),
        host_devices: host_devices(read("host-devices").as_deref(), def),
        // What the supervisor reads from $CREDENTIALS_DIRECTORY: a
        // placeholder naming the credential.
        secret_env: def
            .secrets
            .iter()
            .filter_map(|s| Some((s.env.clone()?, format!("<credential {}>", s.credential))))
            .collect(),
        // Anonymous volumes (no `source`, or the image's VOLUME): the
        // supervisor picks random hex names; here the Nth is N in hex.
        anonymous_volumes: spec::plan_volumes(def, image)
            .map(|v| {
                v.into_iter()
                    .filter(|v| v.source == berth::config::VolumeSource::Anonymous)
                    .enumerate()
                    .map(|(i, v)| (v.target, format!("{:064x}", i + 1)))
                    .collect()
            })
            .unwrap_or_default(),
        volume_mounts: Default::default(),
    }
}

/// The case's `host-devices` table, grouped by the definition's entries (a
/// directory entry gets every node below it).
fn host_devices(
    table: Option<&str>,
    def: &berth::config::Definition,
) -> std::collections::BTreeMap<PathBuf, Vec<spec::HostDevice>> {
    let nodes: Vec<spec::HostDevice> = table
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            spec::HostDevice {
                path: f[0].into(),
                block: f[1] == "b",
                major: f[2].parse().unwrap(),
                minor: f[3].parse().unwrap(),
                mode: u32::from_str_radix(f[4], 8).unwrap(),
                uid: f[5].parse().unwrap(),
                gid: f[6].parse().unwrap(),
            }
        })
        .collect();
    let mut out = std::collections::BTreeMap::new();
    for req in &def.security.devices {
        let found: Vec<_> = nodes
            .iter()
            .filter(|n| n.path.starts_with(&req.host))
            .cloned()
            .collect();
        if !found.is_empty() {
            out.insert(req.host.clone(), found);
        }
    }
    out
}

/// Sort every array under `process.capabilities` so output is stable.
fn normalise(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(caps) = v
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for set in caps.values_mut() {
            if let Some(a) = set.as_array_mut() {
                a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
        }
    }
    v
}

fn run_case(case: &Path) -> Result<(), String> {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("etc/berth/containers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(case.join("definition.toml"), dir.join("web.toml")).unwrap();
    let def = berth::config::load_definition(root.path(), "web")
        .map_err(|d| format!("definition does not load: {d:?}"))?
        .ok_or("definition not found")?;
    let image = std::fs::read_to_string(case.join("image-config.json"))
        .ok()
        .map(|t| {
            let c: oci_spec::image::ImageConfiguration =
                serde_json::from_str(&t).expect("image-config.json parses");
            ImageConfigView::from_image_config(&c)
        });
    let ctx = context(case, &def, image.as_ref());
    // Exactly one of expected.json (the spec) and expected-error exists.
    let (spec, error) = match spec::plan(&def, image.as_ref(), &ctx) {
        Ok(s) => {
            let got = normalise(serde_json::to_value(&s).unwrap());
            (
                Some(serde_json::to_string_pretty(&got).unwrap() + "\n"),
                None,
            )
        }
        // The definition's path without the temporary root it was loaded from.
        Err(e) => (
            None,
            Some(format!("{e}\n").replace(&root.path().display().to_string(), "")),
        ),
    };
    let problems: Vec<String> = [
        golden::check_file(&case.join("expected.json"), spec.as_deref()),
        golden::check_file(&case.join("expected-error"), error.as_deref()),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn spec_golden_cases() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "expected at least 15 cases");
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            case.join("README").is_file(),
            "{}: no README",
            case.display()
        );
        if let Err(e) = run_case(case) {
            failures.push(format!(
                "{}: {e}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "({}=1 rewrites expected files)\n{}",
        golden::BLESS_VAR,
        failures.join("\n\n")
    );
}
