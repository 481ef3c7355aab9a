//! A compose service's keys, one function per kind, each writing berth keys
//! into the definition being built or saying why it cannot.
//!
//! Key semantics from the compose specification (compose-spec `05-services.md`);
//! where compose-go decides a detail (command strings, short port and volume
//! syntax), its parser is followed and named.

use super::project::{Project, SecretSource};
use super::render::{Table, Val};
use super::service::{Def, Dep};
use super::yaml::{Kind, Node};
use super::Cx;
use crate::config::diag::did_you_mean;
use crate::config::values;

/// Keys compose defines that berth has no form for, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("privileged", "berth grants only what is listed: add the capabilities (cap_add) and devices the service needs"),
    ("logging", "the container's output goes to the journal (journalctl -u berth@NAME)"),
    ("platform", "berth pulls the image for the host's platform"),
    ("tty", "a service has no terminal; use berth run -t for one"),
    ("stdin_open", "a service has no stdin"),
    ("links", "services on a network resolve each other by name already"),
    ("external_links", "services on a network resolve each other by name already"),
    ("extends", "merge the extended service into this one first"),
    ("mac_address", "berth derives a member's MAC from its address"),
    ("ipc", "each container has its own IPC namespace"),
    ("pid", "each container has its own PID namespace"),
    ("cgroup_parent", "every container runs in berth.slice"),
    ("runtime", "berth is the runtime"),
    ("scale", "one definition is one container"),
    ("oom_score_adj", "not supported"),
    ("oom_kill_disable", "not supported"),
    ("blkio_config", "use [resources] io_weight or io_max"),
    ("cpu_shares", "use [resources] cpu_weight (systemd's CPUWeight=, 1-10000)"),
    ("cpu_period", "use [resources] cpus"),
    ("cpu_quota", "use [resources] cpus"),
    ("volumes_from", "list the volumes on this service too"),
    ("device_cgroup_rules", "list the devices instead"),
    ("gpus", "list the GPU's devices instead"),
    ("domainname", "not supported"),
    ("isolation", "not supported"),
    ("storage_opt", "not supported"),
    ("mem_swappiness", "not supported"),
    ("develop", "compose watch has no berth form"),
    ("post_start", "lifecycle hooks have no berth form"),
    ("pre_stop", "lifecycle hooks have no berth form"),
    ("uts", "each container has its own UTS namespace"),
    ("cgroup", "each container has its own cgroup namespace"),
];

/// The keys [`apply`] converts (for "did you mean").
const HANDLED: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "depends_on",
    "healthcheck",
    "restart",
    "deploy",
    "mem_limit",
    "memswap_limit",
    "mem_reservation",
    "shm_size",
    "cpus",
    "pids_limit",
    "cpuset",
    "ulimits",
    "cap_add",
    "cap_drop",
    "security_opt",
    "sysctls",
    "devices",
    "group_add",
    "userns_mode",
    "read_only",
    "init",
    "user",
    "working_dir",
    "hostname",
    "labels",
    "annotations",
    "secrets",
    "configs",
    "stop_signal",
    "stop_grace_period",
    "dns",
    "dns_search",
    "extra_hosts",
    "pull_policy",
    "container_name",
    "profiles",
];

/// Convert one key of a service.
pub fn apply(cx: &mut Cx, d: &mut Def, key: &str, k: &Node, v: &Node, p: &Project) {
    match key {
        "image" => set_text(cx, d, v, "image", "image"),
        "build" => build(cx, d, k, v),
        "command" | "entrypoint" => command(cx, d, key, v),
        "environment" => environment(cx, d, v),
        "env_file" => env_file(cx, d, v),
        "ports" => ports(cx, d, v),
        "expose" => {}
        "volumes" => volumes(cx, d, v, p),
        "tmpfs" => tmpfs(cx, d, v),
        "networks" => networks(cx, d, v, p),
        "network_mode" => network_mode(cx, d, v),
        "depends_on" => depends_on(cx, d, v),
        "healthcheck" => healthcheck(cx, d, v),
        "restart" => restart(cx, d, v),
        "deploy" => deploy(cx, d, v),
        "mem_limit" => size(cx, d, v, "resources", "memory"),
        "memswap_limit" => d.memswap = cx.text(v, "memswap_limit").map(|s| (s, v.line)),
        "mem_reservation" => size(cx, d, v, "resources", "memory_reservation"),
        "shm_size" => size(cx, d, v, "resources", "shm_size"),
        "cpus" => cpus(cx, d, v),
        "pids_limit" => int(cx, d, v, "resources", "pids"),
        "cpuset" => set_text_in(cx, d, v, "resources", "cpuset"),
        "ulimits" => ulimits(cx, d, v),
        "cap_add" | "cap_drop" => caps(cx, d, key, v),
        "security_opt" => security_opt(cx, d, v),
        "sysctls" => map_or_list(cx, d, v, key, Some("security"), "sysctls"),
        "devices" => devices(cx, d, v),
        "group_add" => list(cx, d, v, "security", "group_add"),
        "userns_mode" => userns(cx, d, v),
        "read_only" | "init" => {
            if let Some(b) = cx.boolean(v, key) {
                d.doc.top.set(key, Val::Bool(b));
            }
        }
        "user" => set_text(cx, d, v, "user", "user"),
        "working_dir" => set_text(cx, d, v, "working_dir", "workdir"),
        "hostname" => set_text(cx, d, v, "hostname", "hostname"),
        "labels" | "annotations" => map_or_list(cx, d, v, key, None, key),
        "secrets" => secrets(cx, d, v, p),
        "configs" => configs(cx, d, v, p),
        "stop_signal" => set_text_in(cx, d, v, "service", "stop_signal"),
        "stop_grace_period" => set_text_in(cx, d, v, "service", "stop_timeout"),
        "dns" => {
            for ip in cx.strings(v, "dns", true) {
                match values::parse_ip(&ip) {
                    Ok(_) => d.t("network").push("dns", Val::Str(ip)),
                    Err(e) => cx.warn(v, format!("dns \"{ip}\": {e}, skipping")),
                }
            }
        }
        "dns_search" => list(cx, d, v, "network", "dns_search"),
        "extra_hosts" => extra_hosts(cx, d, v),
        "pull_policy" => pull_policy(cx, d, v),
        "container_name" => cx.note(
            k,
            "container_name: the definition is named after the service (berth@SERVICE), ignoring",
        ),
        "profiles" => cx.warn(
            k,
            "profiles: converted whatever its profiles; leave its definition out to leave it out",
        ),
        x if x.starts_with("x-") => {}
        other => match UNSUPPORTED.iter().find(|(n, _)| *n == other) {
            Some((_, why)) => cx.warn(
                k,
                format!("\"{other}\" cannot be expressed in berth: {why}, skipping"),
            ),
            None => {
                let known = HANDLED
                    .iter()
                    .chain(UNSUPPORTED.iter().map(|(n, _)| n))
                    .copied();
                let hint = did_you_mean(other, known)
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                cx.warn(
                    k,
                    format!("unknown compose key \"{other}\"{hint}, ignoring"),
                )
            }
        },
    }
}

fn set_text(cx: &mut Cx, d: &mut Def, v: &Node, what: &str, key: &str) {
    if let Some(s) = cx.text(v, what) {
        d.doc.top.set(key, Val::Str(s));
    }
}

fn set_text_in(cx: &mut Cx, d: &mut Def, v: &Node, table: &'static str, key: &str) {
    if let Some(s) = cx.text(v, key) {
        d.t(table).set(key, Val::Str(s));
    }
}

fn list(cx: &mut Cx, d: &mut Def, v: &Node, table: &'static str, key: &str) {
    for s in cx.strings(v, key, true) {
        d.t(table).push(key, Val::Str(s));
    }
}

fn int(cx: &mut Cx, d: &mut Def, v: &Node, table: &'static str, key: &str) {
    let Some(s) = cx.text(v, key) else { return };
    match s.parse::<i64>() {
        // Docker's -1 (and 0) mean unlimited: berth's default.
        Ok(n) if n > 0 => d.t(table).set(key, Val::Int(n)),
        Ok(_) => {}
        Err(_) => cx.warn(
            v,
            format!("{key}: expected a number, found \"{s}\", skipping"),
        ),
    }
}

fn size(cx: &mut Cx, d: &mut Def, v: &Node, table: &'static str, key: &str) {
    let Some(s) = cx.text(v, key) else { return };
    if s == "-1" || s == "0" {
        return;
    }
    match values::parse_size(&s) {
        Ok(_) => d.t(table).set(key, Val::Str(s)),
        Err(e) => cx.warn(v, format!("{key} \"{s}\": {e}, skipping")),
    }
}

fn cpus(cx: &mut Cx, d: &mut Def, v: &Node) {
    let Some(s) = cx.text(v, "cpus") else { return };
    match s.parse::<f64>() {
        Ok(n) if n > 0.0 => d.t("resources").set("cpus", Val::Float(n)),
        Ok(_) => {}
        Err(_) => cx.warn(
            v,
            format!("cpus: expected a number, found \"{s}\", skipping"),
        ),
    }
}

fn build(cx: &mut Cx, d: &mut Def, k: &Node, v: &Node) {
    d.build = true;
    let context = match &v.kind {
        Kind::Map(_) => cx
            .entries(v, "build")
            .into_iter()
            .find(|e| e.0 == "context")
            .and_then(|e| cx.text(e.2, "context")),
        _ => cx.text(v, "build"),
    }
    .unwrap_or_else(|| ".".into());
    cx.warn(
        k,
        format!("build context \"{context}\": berth build does not exist yet; build the image with another tool and load it into berth's store (berth import, or a registry berth pulls from), skipping"),
    );
}

/// A command string is split as compose-go does (`shellwords.Parse`):
/// whitespace separates words, quotes group, a backslash escapes; no
/// variable, glob or other shell expansion.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err(format!("unterminated single quote in \"{s}\"")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => return Err(format!("unterminated double quote in \"{s}\"")),
                        },
                        Some(n) => cur.push(n),
                        None => return Err(format!("unterminated double quote in \"{s}\"")),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn command(cx: &mut Cx, d: &mut Def, key: &str, v: &Node) {
    let words = match &v.kind {
        Kind::Seq(_) => cx.strings(v, key, false),
        _ if v.is_null() => return,
        _ => {
            let Some(s) = cx.text(v, key) else { return };
            match shell_split(&s) {
                Ok(w) => w,
                Err(e) => return cx.warn(v, format!("{key}: {e}, skipping")),
            }
        }
    };
    // An empty command means the image's; an empty entrypoint clears the
    // image's (compose-spec: `entrypoint: ""`).
    if words.is_empty() && key == "command" {
        return;
    }
    d.doc.top.set(key, Val::strs(&words));
}

fn environment(cx: &mut Cx, d: &mut Def, v: &Node) {
    let pairs: Vec<(String, Option<String>, &Node)> = match &v.kind {
        Kind::Seq(items) => items
            .iter()
            .filter_map(|i| {
                let s = cx.text(i, "environment")?;
                Some(match s.split_once('=') {
                    Some((a, b)) => (a.to_string(), Some(b.to_string()), i),
                    None => (s, None, i),
                })
            })
            .collect(),
        _ => cx
            .entries(v, "environment")
            .into_iter()
            .map(|(name, _, val)| {
                let value = if val.is_null() {
                    None
                } else {
                    cx.text(val, "environment")
                };
                (name, value, val)
            })
            .collect(),
    };
    for (name, value, at) in pairs {
        // `NAME` alone passes the variable from where compose runs.
        let value = value.or_else(|| cx.env.get(&name).cloned());
        match value {
            Some(val) => d.doc.top.put("environment", &name, Val::Str(val)),
            None => cx.note(at, format!("environment \"{name}\" takes its value from the environment, where it is not set: left out")),
        }
    }
}

fn env_file(cx: &mut Cx, d: &mut Def, v: &Node) {
    let items: Vec<&Node> = match &v.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ => vec![v],
    };
    for i in items {
        let path = match &i.kind {
            Kind::Map(_) => {
                let e = cx.entries(i, "env_file");
                let optional = e
                    .iter()
                    .find(|x| x.0 == "required")
                    .and_then(|x| cx.boolean(x.2, "required"))
                    == Some(false);
                if optional {
                    cx.warn(i, "env_file \"required: false\": berth reads every environment file it is given, so this one must exist");
                }
                e.iter()
                    .find(|x| x.0 == "path")
                    .and_then(|x| cx.text(x.2, "path"))
            }
            _ => cx.text(i, "env_file"),
        };
        if let Some(p) = path {
            let abs = cx.host_path(&p);
            d.doc
                .top
                .push("environment_files", Val::Str(abs.display().to_string()));
        }
    }
}

/// A short port (`[[IP:](PORT|RANGE):](PORT|RANGE)[/PROTO]`, compose-go
/// `types.ParsePortConfig`) or a long one, as berth's `publish` string.
fn ports(cx: &mut Cx, d: &mut Def, v: &Node) {
    for item in v.seq().unwrap_or_default() {
        let spec = match &item.kind {
            Kind::Map(_) => long_port(cx, item),
            _ => cx.text(item, "ports").map(|s| short_port(cx, item, &s)),
        };
        let Some(spec) = spec else { continue };
        match values::parse_port(&spec) {
            Ok(_) => d.t("network").push("publish", Val::Str(spec)),
            Err(e) => cx.warn(item, format!("port \"{spec}\": {e}, skipping")),
        }
    }
    if v.seq().is_none() && !v.is_null() {
        cx.warn(v, "ports: expected a list, skipping");
    }
}

fn short_port(cx: &mut Cx, at: &Node, s: &str) -> String {
    let (body, proto) = match s.rsplit_once('/') {
        Some((b, p)) => (b, Some(p)),
        None => (s, None),
    };
    // The container side is after the last ':' (an IPv6 host address is
    // in brackets, so its colons come before).
    let (host, container) = match body.rsplit_once(':') {
        Some((h, c)) => (h, c),
        None => ("", body),
    };
    let (ip, host_port) = match host.rsplit_once(':') {
        Some((ip, port)) => (Some(ip), port),
        None if host.contains('.') || host.starts_with('[') => (Some(host), ""),
        None => (None, host),
    };
    let host_port = if host_port.is_empty() {
        cx.warn(at, format!("port \"{s}\" has no host port (Docker picks a free one): berth publishes it on the same port, {container}"));
        container
    } else {
        host_port
    };
    let mut out = String::new();
    if let Some(ip) = ip.filter(|ip| !ip.is_empty() && *ip != "0.0.0.0" && *ip != "[::]") {
        if ip.contains(':') && !ip.starts_with('[') {
            out.push_str(&format!("[{ip}]:"));
        } else {
            out.push_str(&format!("{ip}:"));
        }
    }
    out.push_str(&format!("{host_port}:{container}"));
    if let Some(p) = proto {
        out.push_str(&format!("/{p}"));
    }
    out
}

fn long_port(cx: &mut Cx, item: &Node) -> Option<String> {
    let (mut target, mut published, mut ip, mut proto) = (None, None, None, None);
    for (key, k, v) in cx.entries(item, "ports") {
        match key.as_str() {
            "target" => target = cx.text(v, "target"),
            "published" => published = cx.text(v, "published"),
            "host_ip" => ip = cx.text(v, "host_ip"),
            "protocol" => proto = cx.text(v, "protocol"),
            "mode" | "name" | "app_protocol" => {}
            other => cx.warn(k, format!("ports: unknown key \"{other}\", ignoring")),
        }
    }
    let Some(target) = target else {
        cx.warn(item, "port without \"target\", skipping");
        return None;
    };
    let mut short = String::new();
    if let Some(ip) = ip {
        short.push_str(&ip);
        short.push(':');
    }
    if let Some(p) = published {
        short.push_str(&p);
    }
    if !short.is_empty() {
        short.push(':');
    }
    short.push_str(&target);
    if let Some(p) = proto {
        short.push('/');
        short.push_str(&p);
    }
    Some(short_port(cx, item, &short))
}

/// One mount: named volume, bind, or tmpfs.
struct Mount {
    kind: String,
    /// `tmpfs: {size, mode}` of a long-syntax tmpfs.
    tmpfs: Table,
    source: Option<String>,
    target: String,
    read_only: bool,
}

fn volumes(cx: &mut Cx, d: &mut Def, v: &Node, p: &Project) {
    for item in v.seq().unwrap_or_default() {
        let m = match &item.kind {
            Kind::Map(_) => long_volume(cx, item),
            _ => cx
                .text(item, "volumes")
                .and_then(|s| short_volume(cx, item, &s)),
        };
        let Some(m) = m else { continue };
        add_mount(cx, d, item, m, p);
    }
}

/// `SOURCE:TARGET[:MODE]` or `TARGET` (compose-go `loader/volume.go`): a
/// source starting with `.`, `/` or `~` is a host path, else a volume name.
fn short_volume(cx: &mut Cx, at: &Node, s: &str) -> Option<Mount> {
    let parts: Vec<&str> = s.splitn(3, ':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, ""),
        [s, t] => (Some(*s), *t, ""),
        [s, t, m] => (Some(*s), *t, *m),
        _ => return None,
    };
    let mut read_only = false;
    for opt in mode.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "rw" => {}
            "z" | "Z" => cx.warn(
                at,
                format!("volume \"{s}\": SELinux relabelling \"{opt}\" is not supported, ignoring"),
            ),
            other => cx.warn(
                at,
                format!("volume \"{s}\": option \"{other}\" is not supported, ignoring"),
            ),
        }
    }
    let kind = match source {
        Some(src) if src.starts_with(['.', '/', '~']) => "bind",
        _ => "volume",
    };
    Some(Mount {
        kind: kind.into(),
        tmpfs: Table::default(),
        source: source.map(str::to_string),
        target: target.into(),
        read_only,
    })
}

fn long_volume(cx: &mut Cx, item: &Node) -> Option<Mount> {
    let mut m = Mount {
        kind: "volume".into(),
        tmpfs: Table::default(),
        source: None,
        target: String::new(),
        read_only: false,
    };
    for (key, k, v) in cx.entries(item, "volumes") {
        match key.as_str() {
            "type" => m.kind = cx.text(v, "type").unwrap_or(m.kind),
            "source" => m.source = cx.text(v, "source"),
            "target" => m.target = cx.text(v, "target").unwrap_or_default(),
            "read_only" => m.read_only = cx.boolean(v, "read_only").unwrap_or(false),
            "tmpfs" => {
                for (opt, ko, ov) in cx.entries(v, "tmpfs") {
                    match (opt.as_str(), cx.text(ov, "tmpfs")) {
                        ("size", Some(s)) => m.tmpfs.set("size", Val::Str(s)),
                        ("mode", Some(s)) => m.tmpfs.set("mode", Val::Str(format!("{s:0>4}"))),
                        _ => cx.warn(
                            ko,
                            format!("volumes: tmpfs option \"{opt}\" is not supported, ignoring"),
                        ),
                    }
                }
            }
            "consistency" => {}
            "volume" | "bind" => {
                for (opt, ko, _) in cx.entries(v, &key) {
                    if opt != "create_host_path" {
                        cx.warn(
                            ko,
                            format!("volumes: {key} option \"{opt}\" is not supported, ignoring"),
                        );
                    }
                }
            }
            other => cx.warn(k, format!("volumes: unknown key \"{other}\", ignoring")),
        }
    }
    if m.target.is_empty() {
        cx.warn(item, "volume without \"target\", skipping");
        return None;
    }
    Some(m)
}

fn add_mount(cx: &mut Cx, d: &mut Def, at: &Node, m: Mount, p: &Project) {
    let mut t = Table::default();
    let source = match (m.kind.as_str(), m.source) {
        ("tmpfs", _) => {
            let mut t = Table::default();
            t.set("target", Val::Str(m.target));
            t.0.extend(m.tmpfs.0);
            d.push_array("tmpfs", t);
            return;
        }
        ("bind", Some(src)) => cx.host_path(&src).display().to_string(),
        ("volume", Some(src)) => match p.volumes.get(&src) {
            Some(name) => name.clone(),
            None => {
                cx.warn(at, format!("volume \"{src}\" is not in the top-level volumes: using the berth volume \"{src}\""));
                src
            }
        },
        ("volume", None) => {
            // An anonymous volume: compose keeps it with the container;
            // berth's nearest is a named volume of its own.
            let name = format!("{}_{}{}", p.group, d.name, m.target.replace('/', "_"));
            cx.note(
                at,
                format!(
                    "anonymous volume at \"{}\" becomes the named volume \"{name}\"",
                    m.target
                ),
            );
            name
        }
        (kind, _) => {
            cx.warn(
                at,
                format!("volume of type \"{kind}\" is not supported, skipping"),
            );
            return;
        }
    };
    t.set("source", Val::Str(source));
    t.set("target", Val::Str(m.target));
    if m.read_only {
        t.set("read_only", Val::Bool(true));
    }
    d.push_array("volume", t);
}

/// `tmpfs: /run` or a list of `PATH[:OPTIONS]` (docker's `--tmpfs`).
fn tmpfs(cx: &mut Cx, d: &mut Def, v: &Node) {
    for s in cx.strings(v, "tmpfs", true) {
        let (target, opts) = s.split_once(':').unwrap_or((&s, ""));
        let mut t = Table::default();
        t.set("target", Val::str(target));
        let mut options = Vec::new();
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o.split_once('=') {
                Some(("size", s)) => t.set("size", Val::str(s)),
                Some(("mode", m)) => t.set("mode", Val::str(m)),
                _ => options.push(o.to_string()),
            }
        }
        if !options.is_empty() {
            t.set("options", Val::strs(&options));
        }
        d.push_array("tmpfs", t);
    }
}

fn networks(cx: &mut Cx, d: &mut Def, v: &Node, p: &Project) {
    d.chose_network = true;
    let entries: Vec<(String, Option<&Node>, &Node)> = match &v.kind {
        Kind::Seq(items) => items
            .iter()
            .filter_map(|i| cx.text(i, "networks").map(|n| (n, None, i)))
            .collect(),
        _ => cx
            .entries(v, "networks")
            .into_iter()
            .map(|(n, k, val)| (n, Some(val), k))
            .collect(),
    };
    for (name, settings, at) in entries {
        let Some(net) = p.networks.get(&name) else {
            cx.warn(
                at,
                format!("network \"{name}\" is not in the top-level networks, skipping"),
            );
            continue;
        };
        let berth = net.name.clone();
        d.t("network").push("networks", Val::Str(berth.clone()));
        let Some(s) = settings else { continue };
        for (key, k, val) in cx.entries(s, "a service network") {
            match key.as_str() {
                "aliases" => list(cx, d, val, "network", "aliases"),
                "ipv4_address" | "ipv6_address" => {
                    if let Some(ip) = cx.text(val, &key) {
                        d.t("network").put("ip", &berth, Val::Str(ip));
                    }
                }
                other => cx.warn(
                    k,
                    format!("network \"{name}\": \"{other}\" is not supported, ignoring"),
                ),
            }
        }
    }
}

fn network_mode(cx: &mut Cx, d: &mut Def, v: &Node) {
    d.chose_network = true;
    let Some(mode) = cx.text(v, "network_mode") else {
        return;
    };
    let berth = match mode.as_str() {
        "host" | "none" => mode.clone(),
        "bridge" => "bridge".into(),
        m => match m
            .strip_prefix("service:")
            .or_else(|| m.strip_prefix("container:"))
        {
            Some(other) => {
                d.deps.push(Dep {
                    name: other.to_string(),
                    condition: "service_started".into(),
                    required: true,
                    line: v.line,
                });
                format!("container:{other}")
            }
            None => {
                return cx.warn(
                    v,
                    format!("network_mode \"{m}\" is not supported, skipping"),
                )
            }
        },
    };
    d.t("network").set("mode", Val::Str(berth));
}

fn depends_on(cx: &mut Cx, d: &mut Def, v: &Node) {
    if let Kind::Seq(items) = &v.kind {
        for i in items {
            if let Some(name) = cx.text(i, "depends_on") {
                d.deps.push(Dep {
                    name,
                    condition: "service_started".into(),
                    required: true,
                    line: i.line,
                });
            }
        }
        return;
    }
    for (name, k, opts) in cx.entries(v, "depends_on") {
        let mut dep = Dep {
            name,
            condition: "service_started".into(),
            required: true,
            line: k.line,
        };
        for (key, kk, val) in cx.entries(opts, "depends_on") {
            match key.as_str() {
                "condition" => dep.condition = cx.text(val, "condition").unwrap_or(dep.condition),
                "required" => dep.required = cx.boolean(val, "required").unwrap_or(true),
                "restart" => {
                    if cx.boolean(val, "restart") == Some(true) {
                        cx.warn(kk, "depends_on restart: true: berth restarts a container when what it requires is restarted by systemd only if you add it to part_of, ignoring");
                    }
                }
                other => cx.warn(kk, format!("depends_on: unknown key \"{other}\", ignoring")),
            }
        }
        d.deps.push(dep);
    }
}

fn healthcheck(cx: &mut Cx, d: &mut Def, v: &Node) {
    let mut h = Table::default();
    let mut disabled = false;
    for (key, k, val) in cx.entries(v, "healthcheck") {
        match key.as_str() {
            "test" => match health_test(cx, val) {
                Some(cmd) => h.set("command", Val::strs(&cmd)),
                None => disabled = true,
            },
            "disable" => disabled |= cx.boolean(val, "disable").unwrap_or(false),
            "interval" | "timeout" | "start_period" | "start_interval" => {
                let Some(s) = cx.text(val, &key) else {
                    continue;
                };
                match values::parse_duration(&s) {
                    Ok(_) => h.set(&key, Val::Str(s)),
                    Err(e) => cx.warn(val, format!("healthcheck {key} \"{s}\": {e}, skipping")),
                }
            }
            "retries" => match cx.text(val, "retries").map(|s| s.parse::<i64>()) {
                Some(Ok(n)) => h.set("retries", Val::Int(n)),
                Some(Err(_)) => cx.warn(val, "healthcheck retries: expected a number, skipping"),
                None => {}
            },
            other => cx.warn(k, format!("healthcheck: unknown key \"{other}\", ignoring")),
        }
    }
    if disabled {
        cx.note(v, "healthcheck disabled: the definition has no [health]");
        return;
    }
    if h.get("command").is_none() {
        cx.warn(v, "healthcheck without \"test\" (the image's HEALTHCHECK is meant): berth needs the command, skipping");
        return;
    }
    d.health = true;
    d.doc.tables.push(("health", h));
}

/// `["CMD", args…]`, `["CMD-SHELL", "cmd"]`, a string (CMD-SHELL) or
/// `["NONE"]` (`None`: disabled), as Docker's HEALTHCHECK reads them.
fn health_test(cx: &mut Cx, v: &Node) -> Option<Vec<String>> {
    let words = match &v.kind {
        Kind::Seq(_) => cx.strings(v, "test", false),
        _ => {
            let s = cx.text(v, "test")?;
            return Some(vec!["/bin/sh".into(), "-c".into(), s]);
        }
    };
    match words.split_first() {
        Some((first, rest)) if first == "CMD" => Some(rest.to_vec()),
        Some((first, rest)) if first == "CMD-SHELL" => {
            Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
        }
        Some((first, _)) if first == "NONE" => None,
        _ => {
            cx.warn(v, "healthcheck test: expected [\"CMD\", …], [\"CMD-SHELL\", \"…\"] or [\"NONE\"], taken as a command");
            Some(words)
        }
    }
}

fn restart(cx: &mut Cx, d: &mut Def, v: &Node) {
    let Some(policy) = cx.text(v, "restart") else {
        return;
    };
    let (name, max) = policy
        .split_once(':')
        .map_or((policy.as_str(), None), |(a, b)| (a, Some(b)));
    match name {
        "no" => d.t("service").set("restart", Val::str("no")),
        "always" | "unless-stopped" => {
            d.t("service").set("restart", Val::str("always"));
            // Docker starts these again when its daemon starts: the boot.
            d.t("service")
                .set("wanted_by", Val::strs(&["multi-user.target"]));
            if name == "unless-stopped" {
                cx.note(v, "restart: unless-stopped is restart = \"always\": systemd never restarts a unit you stopped with systemctl stop, and wanted_by starts it at boot while it is enabled");
            } else {
                cx.note(v, "restart: always is restart = \"always\" and wanted_by = [\"multi-user.target\"]: started at boot, as Docker's daemon does");
            }
        }
        "on-failure" => {
            d.t("service").set("restart", Val::str("on-failure"));
            if let Some(n) = max {
                cx.warn(v, format!("restart: on-failure:{n}: systemd limits restarts by rate (StartLimitBurst= within StartLimitIntervalSec=), not by a total count; the count is left out"));
            }
        }
        other => cx.warn(
            v,
            format!(
                "restart \"{other}\": expected no, always, on-failure or unless-stopped, skipping"
            ),
        ),
    }
}

fn deploy(cx: &mut Cx, d: &mut Def, v: &Node) {
    for (key, k, val) in cx.entries(v, "deploy") {
        match key.as_str() {
            "resources" => {
                for (kind, kk, r) in cx.entries(val, "deploy resources") {
                    for (res, kr, rv) in cx.entries(r, "deploy resources") {
                        match (kind.as_str(), res.as_str()) {
                            ("limits", "memory") => size(cx, d, rv, "resources", "memory"),
                            ("limits", "cpus") => cpus(cx, d, rv),
                            ("limits", "pids") => int(cx, d, rv, "resources", "pids"),
                            ("reservations", "memory") => {
                                size(cx, d, rv, "resources", "memory_reservation")
                            }
                            _ => cx.warn(
                                kr,
                                format!(
                                    "deploy resources {kind} \"{res}\" is not supported, skipping"
                                ),
                            ),
                        }
                    }
                    if kind != "limits" && kind != "reservations" {
                        cx.warn(
                            kk,
                            format!("deploy resources \"{kind}\" is not supported, skipping"),
                        );
                    }
                }
            }
            "replicas" => {
                if cx.text(val, "replicas").is_some_and(|r| r != "1") {
                    cx.warn(k, "deploy replicas: one definition is one container; copy the definition for more, skipping");
                }
            }
            "restart_policy" => {
                if let Some(c) = cx
                    .entries(val, "restart_policy")
                    .into_iter()
                    .find(|e| e.0 == "condition")
                {
                    let policy = cx.text(c.2, "condition").unwrap_or_default();
                    let policy = if policy == "any" {
                        "always".to_string()
                    } else {
                        policy
                    };
                    let node = Node {
                        kind: Kind::Scalar {
                            text: policy,
                            plain: false,
                        },
                        ..c.2.clone()
                    };
                    restart(cx, d, &node);
                }
            }
            "labels" | "mode" => {}
            other => cx.warn(k, format!("deploy \"{other}\" is not supported, skipping")),
        }
    }
}

fn ulimits(cx: &mut Cx, d: &mut Def, v: &Node) {
    for (name, _, val) in cx.entries(v, "ulimits") {
        let limit = match &val.kind {
            Kind::Map(_) => {
                let e = cx.entries(val, "ulimits");
                let get = |n: &str| e.iter().find(|x| x.0 == n).map(|x| x.2);
                let soft = get("soft").and_then(|n| cx.text(n, "soft"));
                let hard = get("hard").and_then(|n| cx.text(n, "hard"));
                match (soft, hard) {
                    (Some(s), Some(h)) => format!("{s}:{h}"),
                    (Some(s), None) | (None, Some(s)) => format!("{s}:{s}"),
                    (None, None) => continue,
                }
            }
            _ => match cx.text(val, "ulimits") {
                Some(n) => format!("{n}:{n}"),
                None => continue,
            },
        };
        d.t("resources").put("ulimits", &name, Val::Str(limit));
    }
}

fn caps(cx: &mut Cx, d: &mut Def, key: &str, v: &Node) {
    for c in cx.strings(v, key, false) {
        match values::parse_capability(&c) {
            Ok(name) => d.t("security").push(
                key,
                Val::Str(name.strip_prefix("CAP_").unwrap_or(&name).to_string()),
            ),
            Err(e) => cx.warn(v, format!("{key}: {e}, skipping")),
        }
    }
}

fn security_opt(cx: &mut Cx, d: &mut Def, v: &Node) {
    for opt in cx.strings(v, "security_opt", false) {
        let (name, value) = opt.split_once([':', '=']).unwrap_or((opt.as_str(), "true"));
        match (name, value) {
            ("no-new-privileges", b) => d.t("security").set("no_new_privileges", Val::Bool(b != "false")),
            ("seccomp", p) => d.t("security").set("seccomp", Val::str(if p == "unconfined" { "unconfined" } else { p })),
            _ => cx.warn(v, format!("security_opt \"{opt}\" is not supported (berth refuses LSM labels it cannot enforce), skipping")),
        }
    }
}

/// `labels`, `annotations`, `sysctls`: a mapping or a list of `KEY=VALUE`.
fn map_or_list(
    cx: &mut Cx,
    d: &mut Def,
    v: &Node,
    what: &str,
    table: Option<&'static str>,
    key: &str,
) {
    let pairs: Vec<(String, String)> = match &v.kind {
        Kind::Seq(_) => cx
            .strings(v, what, false)
            .into_iter()
            .map(|s| match s.split_once('=') {
                Some((a, b)) => (a.to_string(), b.to_string()),
                None => (s, String::new()),
            })
            .collect(),
        _ => cx
            .entries(v, what)
            .into_iter()
            .map(|(k, _, val)| (k, cx.text(val, what).unwrap_or_default()))
            .collect(),
    };
    for (k, val) in pairs {
        match table {
            Some(t) => d.t(t).put(key, &k, Val::Str(val)),
            None => d.doc.top.put(key, &k, Val::Str(val)),
        }
    }
}

fn devices(cx: &mut Cx, d: &mut Def, v: &Node) {
    for dev in cx.strings(v, "devices", false) {
        let parts: Vec<&str> = dev.split(':').collect();
        let berth = match parts.as_slice() {
            [p] => p.to_string(),
            [h, c] if h == c => h.to_string(),
            [h, perm] if perm.chars().all(|c| "rwm".contains(c)) => format!("{h}:{perm}"),
            [h, c, perm] if h == c => format!("{h}:{perm}"),
            _ => {
                cx.warn(
                    v,
                    format!(
                        "device \"{dev}\": berth gives a device at its host path only, skipping"
                    ),
                );
                continue;
            }
        };
        d.t("security").push("devices", Val::Str(berth));
    }
}

fn userns(cx: &mut Cx, d: &mut Def, v: &Node) {
    match cx.text(v, "userns_mode").as_deref() {
        Some("host") => d.t("security").set("userns", Val::str("host")),
        Some("keep-id") => d.t("security").set("userns", Val::str("keep-id")),
        Some(other) => cx.warn(
            v,
            format!("userns_mode \"{other}\" is not supported, skipping"),
        ),
        None => {}
    }
}

fn extra_hosts(cx: &mut Cx, d: &mut Def, v: &Node) {
    let items: Vec<String> = match &v.kind {
        Kind::Seq(_) => cx.strings(v, "extra_hosts", false),
        _ => cx
            .entries(v, "extra_hosts")
            .into_iter()
            .filter_map(|(h, _, ip)| cx.text(ip, "extra_hosts").map(|ip| format!("{h}:{ip}")))
            .collect(),
    };
    for item in items {
        // compose accepts HOST=IP and HOST:IP; berth writes HOST:IP.
        let item = match item.split_once('=') {
            Some((h, ip)) => format!("{h}:{ip}"),
            None => item,
        };
        // Docker's `host-gateway` names the host's bridge address, which
        // berth does not compute for a definition.
        match values::parse_extra_host(&item) {
            Ok(_) => d.t("network").push("extra_hosts", Val::Str(item)),
            Err(e) => cx.warn(v, format!("extra_hosts \"{item}\": {e}, skipping")),
        }
    }
}

fn pull_policy(cx: &mut Cx, d: &mut Def, v: &Node) {
    let Some(p) = cx.text(v, "pull_policy") else {
        return;
    };
    let berth = match p.as_str() {
        "always" | "never" | "missing" => p.clone(),
        "if_not_present" => "missing".into(),
        _ => return cx.warn(v, format!("pull_policy \"{p}\" has no berth form (pull = missing | always | never | newer), skipping")),
    };
    d.t("service").set("pull", Val::Str(berth));
}

fn secrets(cx: &mut Cx, d: &mut Def, v: &Node, p: &Project) {
    for item in v.seq().unwrap_or_default() {
        let (name, target) = match &item.kind {
            Kind::Map(_) => {
                let e = cx.entries(item, "secrets");
                let get = |n: &str| e.iter().find(|x| x.0 == n).map(|x| x.2);
                for (k, kn, _) in &e {
                    if !matches!(k.as_str(), "source" | "target") {
                        cx.warn(kn, format!("secrets: \"{k}\" is not supported (a credential is readable by the container's root), ignoring"));
                    }
                }
                let source = get("source").and_then(|n| cx.text(n, "source"));
                let target = get("target").and_then(|n| cx.text(n, "target"));
                match source {
                    Some(s) => (s, target),
                    None => continue,
                }
            }
            _ => match cx.text(item, "secrets") {
                Some(s) => (s, None),
                None => continue,
            },
        };
        let target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) => format!("/run/secrets/{t}"),
            None => format!("/run/secrets/{name}"),
        };
        if let Err(e) = values::validate_credential(&name) {
            cx.warn(item, format!("secret \"{name}\": {e}, skipping"));
            continue;
        }
        match p.secrets.get(&name) {
            Some(SecretSource::File(f)) => cx.note(item, format!(
                "secret \"{name}\" is the systemd credential \"{name}\": install its file with `install -m 0600 {} /etc/credstore/{name}` (LoadCredential= reads it from there)",
                f.display()
            )),
            Some(SecretSource::Environment(var)) => cx.note(item, format!(
                "secret \"{name}\" is the systemd credential \"{name}\": write the value of ${var} to /etc/credstore/{name} (mode 0600)"
            )),
            Some(SecretSource::External) => cx.note(item, format!(
                "secret \"{name}\" is external: berth reads the systemd credential \"{name}\" from /etc/credstore/{name}"
            )),
            None => {
                cx.warn(item, format!("secret \"{name}\" is not in the top-level secrets, skipping"));
                continue;
            }
        }
        let mut t = Table::default();
        t.set("credential", Val::Str(name));
        t.set("target", Val::Str(target));
        d.push_array("secret", t);
    }
}

/// A `file:` config is a read-only bind of that file (compose mounts it at
/// `/NAME` unless `target` says).
fn configs(cx: &mut Cx, d: &mut Def, v: &Node, p: &Project) {
    for item in v.seq().unwrap_or_default() {
        let (name, target) = match &item.kind {
            Kind::Map(_) => {
                let e = cx.entries(item, "configs");
                let get = |n: &str| e.iter().find(|x| x.0 == n).map(|x| x.2);
                let source = get("source").and_then(|n| cx.text(n, "source"));
                let target = get("target").and_then(|n| cx.text(n, "target"));
                match source {
                    Some(s) => (s, target),
                    None => continue,
                }
            }
            _ => match cx.text(item, "configs") {
                Some(s) => (s, None),
                None => continue,
            },
        };
        let Some(file) = p.configs.get(&name) else {
            cx.warn(
                item,
                format!("config \"{name}\" is not a top-level config with a file, skipping"),
            );
            continue;
        };
        let mut t = Table::default();
        t.set("source", Val::Str(file.display().to_string()));
        t.set(
            "target",
            Val::Str(target.unwrap_or_else(|| format!("/{name}"))),
        );
        t.set("read_only", Val::Bool(true));
        d.push_array("volume", t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ports_as_compose_go_reads_them() {
        let env = std::collections::BTreeMap::new();
        let file = std::path::Path::new("c.yml");
        let mut cx = Cx::new(file, std::path::Path::new("/p"), &env);
        let at = Node {
            line: 1,
            col: 1,
            kind: Kind::Seq(Vec::new()),
        };
        let cases = [
            ("8080:80", "8080:80"),
            ("127.0.0.1:8443:443/tcp", "127.0.0.1:8443:443/tcp"),
            ("0.0.0.0:80:80", "80:80"),
            ("[2001:db8::1]:53:53/udp", "[2001:db8::1]:53:53/udp"),
            ("8000-8010:80-90", "8000-8010:80-90"),
            ("127.0.0.1::80", "127.0.0.1:80:80"),
            ("3000", "3000:3000"),
        ];
        for (compose, berth) in cases {
            let got = short_port(&mut cx, &at, compose);
            assert_eq!(got, berth, "{compose}");
            assert!(values::parse_port(&got).is_ok(), "{got}");
        }
        // The two without a host port were warned about.
        assert_eq!(cx.notes.len(), 2, "{:?}", cx.notes);
    }

    #[test]
    fn shell_split_as_compose() {
        let w = |s: &str| shell_split(s).unwrap();
        assert_eq!(
            w("redis-server --appendonly yes"),
            ["redis-server", "--appendonly", "yes"]
        );
        assert_eq!(
            w(r#"sh -c 'echo "$HOME"; exit 1'"#),
            ["sh", "-c", "echo \"$HOME\"; exit 1"]
        );
        assert_eq!(w(r#"a "b \"c\" \d" e\ f"#), ["a", "b \"c\" \\d", "e f"]);
        assert_eq!(w("  "), Vec::<String>::new());
        assert_eq!(w("''"), [""]);
        assert!(shell_split("a 'b").is_err());
    }
}
