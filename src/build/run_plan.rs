//! A RUN step as an OCI runtime spec. Pure.
//!
//! A RUN is a container like any other berth starts, so its spec comes from
//! the one planner (`spec::plan`), given a definition with every default —
//! the default capabilities, `no_new_privileges`, the default seccomp
//! profile, masked and read-only paths, PID, mount, IPC, UTS and cgroup
//! namespaces — and the network `--network` asks for: `none` (a namespace of
//! its own with only `lo`) or `host`. The stage's config is the image config
//! it sees: its Env, WorkingDir and User.
//!
//! Followed: `moby/buildkit: frontend/dockerfile/dockerfile2llb/convert.go`
//! `dispatchRun` — shell form is the stage's SHELL plus the text, exec form
//! runs as written; the ARGs in effect are in the environment, and an ENV
//! of the same name wins over them.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxSeccomp, Spec};
use serde_json::Value;

use super::containerfile::Command;
use crate::config::load::SourceFile;
use crate::config::validate::{validate_definition, References};
use crate::config::Definition;
use crate::spec::{ImageConfigView, PlanContext};

/// `berth build --network`: what a RUN step's network is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunNetwork {
    /// A network namespace of its own with only `lo` (berth's default;
    /// Docker's is a bridge).
    #[default]
    None,
    /// The host's network namespace, shared.
    Host,
}

impl RunNetwork {
    pub fn parse(s: &str) -> Result<RunNetwork, String> {
        match s {
            "none" => Ok(RunNetwork::None),
            "host" => Ok(RunNetwork::Host),
            other => Err(format!(
                "--network {other}: berth build knows \"none\" (only lo, the default) and \"host\""
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RunNetwork::None => "none",
            RunNetwork::Host => "host",
        }
    }
}

/// The hostname a RUN sees (BuildKit's is `buildkitsandbox`).
pub const HOSTNAME: &str = "berth-build";

/// What a RUN's spec is made of besides the stage.
#[derive(Debug, Clone)]
pub struct RunInputs<'a> {
    /// The runtime's mount point of the overlay root.
    pub rootfs: PathBuf,
    /// Where the `hostname`, `hosts` and `resolv.conf` it binds are.
    pub run_dir: PathBuf,
    pub storage_root: &'a Path,
    /// The stage's /etc/passwd and /etc/group, read inside its root.
    pub passwd: Option<String>,
    pub group: Option<String>,
    /// The default seccomp profile for the default capabilities.
    pub seccomp: Option<LinuxSeccomp>,
    pub nofile_limit: Option<(u64, u64)>,
}

/// The definition every RUN runs under: every key at its default, but the
/// network. Made by the definition validator itself, so a RUN gets exactly
/// what a container without settings gets.
pub fn definition(network: RunNetwork) -> Result<Definition, String> {
    let text = format!(
        "rootfs = \"/\"\nhostname = \"{HOSTNAME}\"\n[network]\nmode = \"{}\"\n",
        network.name()
    );
    let files = vec![SourceFile {
        path: PathBuf::from("<berth build RUN>"),
        text: text.clone(),
    }];
    let (raw, errs) = crate::config::raw::parse_definition(&text, 0);
    if let Some(e) = errs.first() {
        return Err(format!("the RUN definition: {e:?}"));
    }
    let no = |_: &str| false;
    let refs = References {
        container_exists: &no,
        network_exists: &no,
        zone_exists: &no,
    };
    validate_definition("build", raw, &files, String::new(), &refs).map_err(|d| {
        let msgs: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        format!("the RUN definition: {}", msgs.join("; "))
    })
}

/// The argv of a RUN: exec form as written, shell form through `shell`.
pub fn argv(c: &Command, shell: &[String]) -> Vec<String> {
    super::config::argv(c, shell)
}

/// The image config a RUN sees: the stage's Env after the ARGs in effect
/// (an ENV of the same name wins), its WorkingDir and User; no VOLUME (a
/// RUN writes into the layer, as Docker's does), no Entrypoint or Cmd.
pub fn view(config: &Value, args: &[(String, String)]) -> ImageConfigView {
    let c = &config["config"];
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let env = args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(strs(&c["Env"]))
        .collect();
    let text = |k: &str| c[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    ImageConfigView {
        entrypoint: None,
        cmd: None,
        env,
        working_dir: text("WorkingDir"),
        user: text("User"),
        stop_signal: None,
        volumes: Vec::new(),
    }
}

/// The spec of one RUN.
pub fn plan(
    config: &Value,
    shell: &[String],
    command: &Command,
    args: &[(String, String)],
    network: RunNetwork,
    inputs: RunInputs,
) -> Result<Spec, String> {
    let mut def = definition(network)?;
    def.entrypoint = Some(argv(command, shell));
    let view = view(config, args);
    let ctx = PlanContext {
        rootfs: inputs.rootfs,
        run_dir: inputs.run_dir,
        storage_root: inputs.storage_root.to_path_buf(),
        passwd: inputs.passwd,
        group: inputs.group,
        seccomp: inputs.seccomp,
        nofile_limit: inputs.nofile_limit,
        ..PlanContext::default()
    };
    crate::spec::plan(&def, Some(&view), &ctx).map_err(|e| e.to_string())
}

/// The mount points a RUN's start may make in its upper dir when the stage
/// lacks them (image paths, relative): directories (`etc` also as the
/// parent the files copy up), then files. Taken out again when they are
/// still empty.
pub const STUB_DIRS: &[&str] = &["proc", "sys", "dev", "etc"];
pub const STUB_FILES: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs() -> RunInputs<'static> {
        RunInputs {
            rootfs: "/r".into(),
            run_dir: "/run/x".into(),
            storage_root: Path::new("/s"),
            passwd: Some("root:x:0:0::/root:/bin/sh\nweb:x:101:102::/srv:/bin/sh\n".into()),
            group: None,
            seccomp: Some(LinuxSeccomp::default()),
            nofile_limit: None,
        }
    }

    #[test]
    fn shell_form_env_user_and_confinement() {
        let config =
            json!({"config": {"Env": ["A=env", "PATH=/bin"], "WorkingDir": "/w", "User": "web"}});
        let args = [
            ("A".to_string(), "arg".to_string()),
            ("B".into(), "b".into()),
        ];
        let shell = vec!["/bin/sh".to_string(), "-c".into()];
        let spec = plan(
            &config,
            &shell,
            &Command::Shell("echo $A".into()),
            &args,
            RunNetwork::None,
            inputs(),
        )
        .unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/bin/sh", "-c", "echo $A"]);
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"A=env".to_string()), "{env:?}");
        assert!(env.contains(&"B=b".to_string()), "{env:?}");
        assert!(env.contains(&"PATH=/bin".to_string()), "{env:?}");
        assert_eq!(p.cwd(), Path::new("/w"));
        assert_eq!((p.user().uid(), p.user().gid()), (101, 102));
        assert_eq!(p.no_new_privileges(), Some(true));
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_some());
        let ns: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        use oci_spec::runtime::LinuxNamespaceType as T;
        for t in [T::Pid, T::Mount, T::Ipc, T::Uts, T::Network] {
            assert!(ns.contains(&t), "{t:?} in {ns:?}");
        }
        assert_eq!(spec.hostname().as_deref(), Some(HOSTNAME));
    }

    #[test]
    fn exec_form_and_host_network() {
        let spec = plan(
            &json!({}),
            &[],
            &Command::Exec(vec!["/bin/true".into()]),
            &[],
            RunNetwork::Host,
            inputs(),
        )
        .unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/bin/true"]);
        assert_eq!(p.cwd(), Path::new("/"));
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!ns
            .iter()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network));
        assert!(RunNetwork::parse("bridge").unwrap_err().contains("none"));
    }
}
