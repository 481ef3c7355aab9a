//! One compose service → one berth definition (`containers/NAME.toml`),
//! and `depends_on` between them.
//!
//! The keys themselves are converted in `service_keys.rs`; this file holds
//! the definition being built and what needs every service at once.

use super::project::Project;
use super::render::{Doc, Table, Val};
use super::service_keys;
use super::yaml::Node;
use super::Cx;
use crate::config::values;

/// A `depends_on` entry.
#[derive(Debug, Clone)]
pub struct Dep {
    pub name: String,
    /// `service_started`, `service_healthy` or `service_completed_successfully`.
    pub condition: String,
    /// `required: false` (compose 2.20): start without it.
    pub required: bool,
    pub line: usize,
}

/// A definition being built.
#[derive(Debug, Default)]
pub struct Def {
    pub name: String,
    pub doc: Doc,
    pub deps: Vec<Dep>,
    /// The service set `networks` or `network_mode`.
    pub chose_network: bool,
    /// The service had a `build:` section.
    pub build: bool,
    /// The service sets a healthcheck (that is not disabled).
    pub health: bool,
    /// `memswap_limit` (memory and swap together, as Docker counts them)
    /// and its line: berth's `memory_swap` is the swap alone, so it is
    /// converted once `memory` is known.
    pub memswap: Option<(String, usize)>,
}

impl Def {
    /// The `[name]` table, made on first use.
    pub fn t(&mut self, name: &'static str) -> &mut Table {
        if let Some(i) = self.doc.tables.iter().position(|(n, _)| *n == name) {
            return &mut self.doc.tables[i].1;
        }
        self.doc.tables.push((name, Table::default()));
        let last = self.doc.tables.len() - 1;
        &mut self.doc.tables[last].1
    }
    /// A new `[[name]]` entry.
    pub fn push_array(&mut self, name: &'static str, table: Table) {
        match self.doc.arrays.iter_mut().find(|(n, _)| *n == name) {
            Some((_, items)) => items.push(table),
            None => self.doc.arrays.push((name, vec![table])),
        }
    }
}

/// Convert one service.
pub fn convert(cx: &mut Cx, name: &str, key: &Node, node: &Node, project: &Project) -> Def {
    let mut d = Def {
        name: name.to_string(),
        ..Def::default()
    };
    d.doc.comments.push(format!(
        "service \"{name}\" of {} (compose project \"{}\"), converted by berth compose convert",
        cx.file.display(),
        project.group
    ));
    d.t("service").set("group", Val::str(&project.group));
    for (k, kn, v) in cx.entries(node, "a service") {
        service_keys::apply(cx, &mut d, &k, kn, v, project);
    }
    swap_beyond_memory(cx, &mut d);
    if !d.chose_network {
        if let Some(net) = project.networks.get("default") {
            d.t("network").set("networks", Val::strs(&[&net.name]));
        }
    }
    if d.doc.top.get("image").is_none() {
        if d.build {
            // compose tags a built image PROJECT-SERVICE (compose-go
            // `GetImageNameOrDefault`); berth names it so, local only.
            let image = format!("localhost/{}-{name}:latest", project.group);
            cx.note(key, format!("build the image yourself and load it into berth's store as \"{image}\" (berth import, or berth pull from a local registry)"));
            d.doc.top.set("image", Val::str(image));
            d.t("service").set("pull", Val::str("never"));
        } else {
            cx.warn(
                key,
                "has no image: the definition will not pass berth check until it names one",
            );
        }
    }
    d
}

/// Docker's `memswap_limit` counts memory and swap together; berth's
/// `memory_swap` is the swap beyond `memory` (MemorySwapMax=), as `berth
/// run --memory-swap` converts it.
fn swap_beyond_memory(cx: &mut Cx, d: &mut Def) {
    let Some((total, line)) = d.memswap.take() else {
        return;
    };
    let at = Node {
        line,
        col: 1,
        kind: super::yaml::Kind::Seq(Vec::new()),
    };
    if total == "-1" || total == "0" {
        return;
    }
    let memory = match d.t("resources").get("memory") {
        Some(Val::Str(m)) => m.clone(),
        _ => return cx.warn(
            &at,
            "memswap_limit counts memory and swap together, but there is no memory limit: skipping",
        ),
    };
    match (values::parse_size(&total), values::parse_size(&memory)) {
        (Ok(t), Ok(m)) if t >= m => {
            let swap = i64::try_from(t - m).unwrap_or(i64::MAX);
            d.t("resources").set("memory_swap", Val::Int(swap));
        }
        (Ok(_), Ok(_)) => cx.warn(
            &at,
            format!("memswap_limit \"{total}\" is below the memory limit \"{memory}\": skipping"),
        ),
        (Err(e), _) | (_, Err(e)) => {
            cx.warn(&at, format!("memswap_limit \"{total}\": {e}, skipping"))
        }
    }
}

/// `depends_on`: the dependent `requires` its dependency (systemd's
/// Requires= + After=, so it starts after it and stops with it); `required:
/// false` is `wants` instead. `condition: service_healthy` makes the
/// dependency's start job wait for its first healthy check (`notify =
/// "healthy"`), which is what After= then orders on.
pub fn link_dependencies(cx: &mut Cx, defs: &mut [Def]) {
    let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
    let mut healthy = Vec::new();
    for d in defs.iter_mut() {
        cx.service = Some(d.name.clone());
        for dep in std::mem::take(&mut d.deps) {
            let at = Node {
                line: dep.line,
                col: 1,
                kind: super::yaml::Kind::Seq(Vec::new()),
            };
            if !names.contains(&dep.name) {
                cx.warn(
                    &at,
                    format!("depends_on \"{}\": no such service, skipping", dep.name),
                );
                continue;
            }
            let key = if dep.required { "requires" } else { "wants" };
            d.t("service").push(key, Val::str(&dep.name));
            match dep.condition.as_str() {
                "service_started" => {}
                "service_healthy" => healthy.push((dep.name.clone(), at)),
                "service_completed_successfully" => cx.warn(
                    &at,
                    format!("depends_on \"{}\": condition service_completed_successfully has no berth form: this one starts after \"{}\" has started, not after it exited", dep.name, dep.name),
                ),
                other => cx.warn(&at, format!("depends_on \"{}\": unknown condition \"{other}\", treated as service_started", dep.name)),
            }
        }
    }
    cx.service = None;
    for (name, at) in healthy {
        let Some(d) = defs.iter_mut().find(|d| d.name == name) else {
            continue;
        };
        if d.health {
            d.t("service").set("notify", Val::str("healthy"));
        } else {
            cx.service = Some(name.clone());
            cx.warn(&at, "another service waits for it to be healthy, but it has no healthcheck: it counts as started at once");
            cx.service = None;
        }
    }
}
