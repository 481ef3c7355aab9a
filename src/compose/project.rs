//! The top level of a compose file: the project's name (berth's group), its
//! networks (→ `networks/NAME.toml`), named volumes (→ `volumes/NAME.toml`
//! when they have driver options), secrets and configs, and the services to
//! convert.
//!
//! Names follow compose's own: a project's network or volume `N` is
//! `PROJECT_N` unless it sets `name:` or is `external` (compose-spec
//! `spec.md`, "networks" and "volumes"), so that two converted projects
//! do not share a network or a volume by accident.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::render::{Doc, Val};
use super::yaml::Node;
use super::{ComposeError, Cx, Input};
use crate::config::values::validate_name;

/// A compose network, as berth will know it.
#[derive(Debug, Clone)]
pub struct Net {
    pub name: String,
}

/// A top-level secret.
#[derive(Debug, Clone)]
pub enum SecretSource {
    File(PathBuf),
    Environment(String),
    External,
}

/// What the services refer to.
#[derive(Debug, Default)]
pub struct Project<'n> {
    pub group: String,
    /// The services in the file's order: (name, key node, value node).
    pub services: Vec<(String, &'n Node, &'n Node)>,
    /// compose network name → berth network.
    pub networks: BTreeMap<String, Net>,
    /// compose volume name → berth volume name.
    pub volumes: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, SecretSource>,
    /// config name → host file.
    pub configs: BTreeMap<String, PathBuf>,
    /// Files to write besides the definitions.
    pub files: Vec<(PathBuf, String)>,
}

/// Top-level keys compose defines that a conversion does not need.
const IGNORED_TOP: &[&str] = &["version"];

pub fn read<'n>(cx: &mut Cx, root: &'n Node, input: &Input) -> Result<Project<'n>, ComposeError> {
    let mut p = Project::default();
    let top = cx.entries(root, "the top level");
    let name_key = top.iter().find(|e| e.0 == "name").map(|e| e.2);
    p.group = group_name(cx, input, name_key)?;
    let mut services = None;
    for (key, k, v) in &top {
        match key.as_str() {
            "services" => services = Some((*k, *v)),
            "networks" => networks(cx, &mut p, v),
            "volumes" => volumes(cx, &mut p, v),
            "secrets" => secrets(cx, &mut p, v),
            "configs" => configs(cx, &mut p, v),
            "name" => {}
            k2 if k2.starts_with("x-") || IGNORED_TOP.contains(&k2) => {}
            "include" => cx.warn(
                k,
                "\"include\" is not supported: convert each included file on its own, skipping",
            ),
            other => cx.warn(
                k,
                format!("unknown compose key \"{other}\" at the top level, ignoring"),
            ),
        }
    }
    let Some((_, services)) = services else {
        return Err(ComposeError::Invalid {
            file: cx.file.to_path_buf(),
            line: root.line,
            message: "no \"services\": a compose file needs at least one service".into(),
        });
    };
    for (name, k, v) in cx.entries(services, "services") {
        if let Err(e) = validate_name(&name) {
            return Err(ComposeError::Invalid {
                file: cx.file.to_path_buf(),
                line: k.line,
                message: format!("service \"{name}\" cannot be a berth container name: {e}"),
            });
        }
        p.services.push((name, k, v));
    }
    if p.services.is_empty() {
        return Err(ComposeError::Invalid {
            file: cx.file.to_path_buf(),
            line: services.line,
            message: "\"services\" is empty: a compose file needs at least one service".into(),
        });
    }
    // Every service without `networks:` is on the project's default network
    // (compose-spec: "default" is created when some service uses it).
    let uses_default = p.services.iter().any(|(_, _, s)| {
        s.map().is_some_and(|m| {
            !m.iter()
                .any(|(k, _)| k.scalar() == Some("networks") || k.scalar() == Some("network_mode"))
        })
    });
    if uses_default && !p.networks.contains_key("default") {
        let name = format!("{}_default", p.group);
        write_network(&mut p, &name, "default", &BTreeMap::new());
        p.networks.insert("default".into(), Net { name });
    }
    Ok(p)
}

/// `--group`, else `name:`, else the project directory's name, lowercased
/// with anything but `a-z0-9_-` dropped (compose's `NormalizeProjectName`).
fn group_name(cx: &mut Cx, input: &Input, name: Option<&Node>) -> Result<String, ComposeError> {
    let (raw, line) = if let Some(g) = input.group {
        (g.to_string(), None)
    } else if let Some(n) = name {
        (cx.text(n, "name").unwrap_or_default(), Some(n.line))
    } else {
        let dir = input
            .project_dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let normalized: String = dir
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
            .collect();
        (normalized.trim_start_matches(['_', '-']).to_string(), None)
    };
    validate_name(&raw).map_err(|e| ComposeError::Invalid {
        file: cx.file.to_path_buf(),
        line: line.unwrap_or(1),
        message: format!(
            "the project name \"{raw}\" cannot be a berth group: {e}; name one with --group"
        ),
    })?;
    Ok(raw)
}

fn networks(cx: &mut Cx, p: &mut Project, node: &Node) {
    for (name, k, v) in cx.entries(node, "networks") {
        let mut settings: BTreeMap<&'static str, Val> = BTreeMap::new();
        let mut berth_name = format!("{}_{name}", p.group);
        let mut external = false;
        for (key, kk, vv) in cx.entries(v, "a network") {
            match key.as_str() {
                "name" => berth_name = cx.text(vv, "network name").unwrap_or(berth_name),
                "external" => external = cx.boolean(vv, "external").unwrap_or(false),
                "internal" => {
                    if let Some(b) = cx.boolean(vv, "internal") {
                        settings.insert("internal", Val::Bool(b));
                    }
                }
                "driver" => {
                    if let Some(d) = cx.text(vv, "driver").filter(|d| d != "bridge") {
                        cx.warn(kk, format!("network \"{name}\": driver \"{d}\" is not supported, berth networks are bridges"));
                    }
                }
                "ipam" => ipam(cx, &name, vv, &mut settings),
                "driver_opts" => {
                    for (opt, ko, vo) in cx.entries(vv, "driver_opts") {
                        let value = cx.text(vo, "driver_opts").unwrap_or_default();
                        match (opt.as_str(), value.parse::<i64>()) {
                            ("com.docker.network.driver.mtu", Ok(mtu)) => {
                                settings.insert("mtu", Val::Int(mtu));
                            }
                            _ => cx.warn(ko, format!("network \"{name}\": driver option \"{opt}\" is not supported, ignoring")),
                        }
                    }
                }
                "enable_ipv6" | "attachable" | "labels" => {}
                x if x.starts_with("x-") => {}
                other => cx.warn(
                    kk,
                    format!("network \"{name}\": unknown key \"{other}\", ignoring"),
                ),
            }
        }
        if external {
            cx.note(k, format!("network \"{name}\" is external: berth expects /etc/berth/networks/{berth_name}.toml (or the network \"default\")"));
        } else {
            write_network(p, &berth_name, &name, &settings);
        }
        p.networks.insert(name, Net { name: berth_name });
    }
}

fn ipam(cx: &mut Cx, net: &str, node: &Node, settings: &mut BTreeMap<&'static str, Val>) {
    for (key, k, v) in cx.entries(node, "ipam") {
        if key != "config" {
            if key != "driver" {
                cx.warn(
                    k,
                    format!("network \"{net}\": ipam \"{key}\" is not supported, ignoring"),
                );
            }
            continue;
        }
        for c in v.seq().unwrap_or_default() {
            let mut subnet = None;
            for (ck, ckn, cv) in cx.entries(c, "ipam config") {
                match ck.as_str() {
                    "subnet" => subnet = cx.text(cv, "subnet"),
                    "gateway" => {
                        if let Some(g) = cx.text(cv, "gateway").filter(|g| !g.contains(':')) {
                            settings.insert("gateway", Val::Str(g));
                        }
                    }
                    other => cx.warn(
                        ckn,
                        format!(
                            "network \"{net}\": ipam config \"{other}\" is not supported, ignoring"
                        ),
                    ),
                }
            }
            match subnet {
                Some(s) if s.contains(':') => drop(settings.insert("subnet6", Val::Str(s))),
                Some(s) => drop(settings.insert("subnet", Val::Str(s))),
                None => {}
            }
        }
    }
}

fn write_network(
    p: &mut Project,
    berth_name: &str,
    compose_name: &str,
    settings: &BTreeMap<&'static str, Val>,
) {
    let mut doc = Doc::default();
    doc.comments.push(format!(
        "network \"{compose_name}\" of compose project \"{}\", converted by berth compose convert",
        p.group
    ));
    for key in ["subnet", "gateway", "subnet6", "internal", "mtu"] {
        if let Some(v) = settings.get(key) {
            doc.top.set(key, v.clone());
        }
    }
    p.files.push((
        PathBuf::from(format!("networks/{berth_name}.toml")),
        doc.render(),
    ));
}

fn volumes(cx: &mut Cx, p: &mut Project, node: &Node) {
    for (name, k, v) in cx.entries(node, "volumes") {
        let mut berth_name = format!("{}_{name}", p.group);
        let mut external = false;
        let mut doc = Doc::default();
        for (key, kk, vv) in cx.entries(v, "a volume") {
            match key.as_str() {
                "name" => berth_name = cx.text(vv, "volume name").unwrap_or(berth_name),
                "external" => external = cx.boolean(vv, "external").unwrap_or(false),
                "driver" => {
                    if let Some(d) = cx.text(vv, "driver").filter(|d| d != "local") {
                        cx.warn(kk, format!("volume \"{name}\": driver \"{d}\" is not supported, berth volumes are local"));
                    }
                }
                "driver_opts" => {
                    for (opt, ko, vo) in cx.entries(vv, "driver_opts") {
                        let value = cx.text(vo, "driver_opts").unwrap_or_default();
                        match opt.as_str() {
                            "type" => doc.top.set("type", Val::Str(value)),
                            "device" => doc.top.set("device", Val::Str(value)),
                            // mount(8)'s comma-separated -o, as a list.
                            "o" => doc.top.set(
                                "options",
                                Val::List(value.split(',').filter(|o| !o.is_empty()).map(Val::str).collect()),
                            ),
                            other => cx.warn(ko, format!("volume \"{name}\": driver option \"{other}\" is not supported, ignoring")),
                        }
                    }
                }
                "labels" => {}
                x if x.starts_with("x-") => {}
                other => cx.warn(
                    kk,
                    format!("volume \"{name}\": unknown key \"{other}\", ignoring"),
                ),
            }
        }
        if let Err(e) = validate_name(&berth_name) {
            cx.warn(
                k,
                format!("volume \"{name}\": \"{berth_name}\" cannot be a berth volume name: {e}"),
            );
        }
        if external {
            cx.note(k, format!("volume \"{name}\" is external: the containers use the berth volume \"{berth_name}\" as it is"));
        } else if !doc.top.is_empty() {
            doc.comments.push(format!(
                "volume \"{name}\" of compose project \"{}\", converted by berth compose convert",
                p.group
            ));
            p.files.push((
                PathBuf::from(format!("volumes/{berth_name}.toml")),
                doc.render(),
            ));
        } else {
            cx.note(k, format!("volume \"{name}\" is the berth volume \"{berth_name}\", made on first use (berth volume ls)"));
        }
        p.volumes.insert(name, berth_name);
    }
}

fn secrets(cx: &mut Cx, p: &mut Project, node: &Node) {
    for (name, k, v) in cx.entries(node, "secrets") {
        let mut source = None;
        for (key, kk, vv) in cx.entries(v, "a secret") {
            match key.as_str() {
                "file" => {
                    source = cx
                        .text(vv, "file")
                        .map(|f| SecretSource::File(cx.host_path(&f)))
                }
                "environment" => source = cx.text(vv, "environment").map(SecretSource::Environment),
                "external" => {
                    if cx.boolean(vv, "external") == Some(true) {
                        source = Some(SecretSource::External);
                    }
                }
                "name" | "labels" => {}
                other => cx.warn(
                    kk,
                    format!("secret \"{name}\": \"{other}\" is not supported, ignoring"),
                ),
            }
        }
        match source {
            Some(s) => drop(p.secrets.insert(name, s)),
            None => cx.warn(
                k,
                format!("secret \"{name}\" has no file, environment or external, skipping"),
            ),
        }
    }
}

fn configs(cx: &mut Cx, p: &mut Project, node: &Node) {
    for (name, k, v) in cx.entries(node, "configs") {
        let mut file = None;
        for (key, kk, vv) in cx.entries(v, "a config") {
            match key.as_str() {
                "file" => file = cx.text(vv, "file").map(|f| cx.host_path(&f)),
                "name" | "labels" => {}
                other => cx.warn(kk, format!("config \"{name}\": \"{other}\" is not supported (only file: configs are), skipping")),
            }
        }
        match file {
            Some(f) => drop(p.configs.insert(name, f)),
            None => cx.warn(k, format!("config \"{name}\" has no file, skipping")),
        }
    }
}
