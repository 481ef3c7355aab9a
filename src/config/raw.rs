//! The raw form of a definition: serde structs that are the key table of
//! DESIGN.md §1 (unknown keys denied), whose leaves remember the file and the
//! byte span they came from, and the drop-in merge over them.
//!
//! Pure: parses text handed in by `load.rs`. Nothing here opens files or judges
//! values beyond their TOML type (that is `validate.rs`).
//!
//! Each file is parsed on its own, key by key, so that one bad key does not
//! hide the next (serde stops at the first error of a struct), and so that
//! after merging drop-ins every leaf still points at the file it came from.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::did_you_mean;

thread_local! {
    /// Index of the file being deserialized. serde gives a `Deserialize` impl no
    /// context, so [`Sp`] reads it from here; `parse_file` sets it.
    static CURRENT_FILE: Cell<usize> = const { Cell::new(0) };
}

/// A value with the file (index into the definition's file list) and the byte
/// span it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub file: usize,
    pub span: Range<usize>,
}

impl<T> Sp<T> {
    pub fn new(value: T, file: usize, span: Range<usize>) -> Sp<T> {
        Sp { value, file, span }
    }
    /// The same place, another value.
    pub fn with<U>(&self, value: U) -> Sp<U> {
        Sp::new(value, self.file, self.span.clone())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<T>::deserialize(d)?;
        let span = s.span();
        Ok(Sp::new(s.into_inner(), CURRENT_FILE.with(Cell::get), span))
    }
}

/// A string or an integer: sizes (`"256M"` or bytes) and durations (`"30s"` or
/// seconds) accept both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrOrInt {
    Str(String),
    Int(i64),
}

impl<'de> Deserialize<'de> for StrOrInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StrOrInt;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrOrInt, E> {
                Ok(StrOrInt::Str(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrOrInt, E> {
                Ok(StrOrInt::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrOrInt, E> {
                i64::try_from(v)
                    .map(StrOrInt::Int)
                    .map_err(|_| E::custom("integer is too large"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `environment` (and `[network] ip`): name → (name with its span, value
/// with its span), so an invalid name is reported at the name.
#[derive(Debug, Default)]
pub struct EnvMap(pub BTreeMap<String, (Sp<String>, Sp<String>)>);

impl<'de> Deserialize<'de> for EnvMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of NAME = \"value\"")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<EnvMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<Sp<String>, Sp<String>>()? {
                    out.insert(k.value.clone(), (k, v));
                }
                Ok(EnvMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A table of NAME = value (`[resources] ulimits`, whose values are a
/// string or a number): name → (name with its span, value with its span).
#[derive(Debug)]
pub struct KeyMap<V>(pub BTreeMap<String, (Sp<String>, Sp<V>)>);

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap(BTreeMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for KeyMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = KeyMap<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of NAME = value")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<KeyMap<V>, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<Sp<String>, Sp<V>>()? {
                    out.insert(k.value.clone(), (k, v));
                }
                Ok(KeyMap(out))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

impl<V> Merge for KeyMap<V> {
    fn merge(&mut self, over: Self) {
        self.0.extend(over.0);
    }
}

/// Where a table started (for "KEY is required" errors), never from serde.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct At(pub Option<(usize, Range<usize>)>);

/// The top level of `NAME.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefinition {
    pub image: Option<Sp<String>>,
    pub rootfs: Option<Sp<String>>,
    pub command: Option<Sp<Vec<String>>>,
    pub entrypoint: Option<Sp<Vec<String>>>,
    pub workdir: Option<Sp<String>>,
    pub user: Option<Sp<String>>,
    pub hostname: Option<Sp<String>>,
    pub environment: Option<EnvMap>,
    pub environment_files: Option<Sp<Vec<Sp<String>>>>,
    pub read_only: Option<Sp<bool>>,
    pub init: Option<Sp<bool>>,
    pub network: Option<RawNetwork>,
    pub volume: Option<Sp<Vec<RawVolume>>>,
    pub tmpfs: Option<Sp<Vec<RawTmpfs>>>,
    pub resources: Option<RawResources>,
    pub security: Option<RawSecurity>,
    pub health: Option<RawHealth>,
    pub service: Option<RawService>,
    pub secret: Option<Sp<Vec<RawSecret>>>,
    /// `labels = { K = "V" }`: shown by inspect, filtered by `ps --filter`.
    pub labels: Option<EnvMap>,
    /// `annotations = { K = "V" }`: the OCI spec's annotations.
    pub annotations: Option<EnvMap>,
    /// `timezone = "local"` or a zone name under /usr/share/zoneinfo.
    pub timezone: Option<Sp<String>>,
    /// `[build]`: built by berth instead of `image`/`rootfs`.
    pub build: Option<RawBuild>,
}

/// `[build]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuild {
    pub context: Option<Sp<String>>,
    pub file: Option<Sp<String>>,
    /// `args = { NAME = "VALUE" }`: the build's ARG values.
    pub args: Option<EnvMap>,
    pub target: Option<Sp<String>>,
    #[serde(skip)]
    pub at: At,
}

/// `[network]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub mode: Option<Sp<String>>,
    pub networks: Option<Sp<Vec<Sp<String>>>>,
    pub publish: Option<Sp<Vec<Sp<String>>>>,
    /// `ip = { NETWORK = "ADDRESS" }`: network name → address, each with its
    /// span (an unknown network is reported at its name).
    pub ip: Option<EnvMap>,
    pub aliases: Option<Sp<Vec<Sp<String>>>>,
    pub dns: Option<Sp<Vec<Sp<String>>>>,
    pub dns_search: Option<Sp<Vec<Sp<String>>>>,
    pub extra_hosts: Option<Sp<Vec<Sp<String>>>>,
}

/// One `[[volume]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVolume {
    pub source: Option<Sp<String>>,
    pub target: Option<Sp<String>>,
    pub read_only: Option<Sp<bool>>,
    pub propagation: Option<Sp<String>>,
    pub chown: Option<Sp<bool>>,
    #[serde(skip)]
    pub at: At,
}

/// One `[[tmpfs]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTmpfs {
    pub target: Option<Sp<String>>,
    pub size: Option<Sp<StrOrInt>>,
    pub mode: Option<Sp<StrOrInt>>,
    /// Mount flags: noexec, nosuid, nodev, ro… (`container_keys::TMPFS_OPTIONS`).
    pub options: Option<Sp<Vec<Sp<String>>>>,
    pub uid: Option<Sp<i64>>,
    pub gid: Option<Sp<i64>>,
    #[serde(skip)]
    pub at: At,
}

/// `[resources]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    pub memory: Option<Sp<StrOrInt>>,
    pub cpus: Option<Sp<f64>>,
    pub pids: Option<Sp<i64>>,
    pub io_weight: Option<Sp<i64>>,
    /// `ulimits = { nofile = "65536:65536" }`: name → "SOFT:HARD" or a number.
    pub ulimits: Option<KeyMap<StrOrInt>>,
    /// The size of /dev/shm.
    pub shm_size: Option<Sp<StrOrInt>>,
    pub memory_swap: Option<Sp<StrOrInt>>,
    pub memory_reservation: Option<Sp<StrOrInt>>,
    pub cpuset: Option<Sp<String>>,
    pub cpu_weight: Option<Sp<i64>>,
    /// Device path → "rbps=10M wbps=… riops=… wiops=…".
    pub io_max: Option<EnvMap>,
}

/// `[security]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    pub cap_add: Option<Sp<Vec<Sp<String>>>>,
    pub cap_drop: Option<Sp<Vec<Sp<String>>>>,
    pub no_new_privileges: Option<Sp<bool>>,
    pub seccomp: Option<Sp<String>>,
    pub userns: Option<Sp<String>>,
    /// `HOST[:CONTAINER][:rwm]` device nodes or directories of them.
    pub devices: Option<Sp<Vec<Sp<String>>>>,
    /// Namespaced sysctls: name → value.
    pub sysctls: Option<EnvMap>,
    /// Paths masked beside the defaults.
    pub mask: Option<Sp<Vec<Sp<String>>>>,
    /// Default masked or read-only paths left visible, or "ALL".
    pub unmask: Option<Sp<Vec<Sp<String>>>>,
    /// Supplementary groups: gids or names from the image's /etc/group.
    pub group_add: Option<Sp<Vec<Sp<StrOrInt>>>>,
    pub uid_map: Option<Sp<Vec<Sp<String>>>>,
    pub gid_map: Option<Sp<Vec<Sp<String>>>>,
}

/// `[health]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub command: Option<Sp<Vec<String>>>,
    pub interval: Option<Sp<StrOrInt>>,
    pub timeout: Option<Sp<StrOrInt>>,
    pub retries: Option<Sp<i64>>,
    pub start_period: Option<Sp<StrOrInt>>,
    pub on_failure: Option<Sp<String>>,
    pub start_interval: Option<Sp<StrOrInt>>,
    #[serde(skip)]
    pub at: At,
}

/// `[service]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub restart: Option<Sp<String>>,
    pub requires: Option<Sp<Vec<Sp<String>>>>,
    pub after: Option<Sp<Vec<Sp<String>>>>,
    pub wanted_by: Option<Sp<Vec<Sp<String>>>>,
    pub stop_timeout: Option<Sp<StrOrInt>>,
    pub notify: Option<Sp<String>>,
    pub pull: Option<Sp<String>>,
    pub auto_update: Option<Sp<bool>>,
    pub group: Option<Sp<String>>,
    pub wants: Option<Sp<Vec<Sp<String>>>>,
    pub binds_to: Option<Sp<Vec<Sp<String>>>>,
    pub part_of: Option<Sp<Vec<Sp<String>>>>,
    pub before: Option<Sp<Vec<Sp<String>>>>,
    pub stop_signal: Option<Sp<String>>,
    pub reload_signal: Option<Sp<String>>,
    pub reload_command: Option<Sp<Vec<String>>>,
    pub restart_sec: Option<Sp<StrOrInt>>,
    pub start_limit_burst: Option<Sp<i64>>,
}

/// One `[[secret]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub credential: Option<Sp<String>>,
    pub target: Option<Sp<String>>,
    /// `type`: "mount" (default) or "env".
    #[serde(rename = "type")]
    pub kind: Option<Sp<String>>,
    /// `name`: the environment variable of `type = "env"`.
    pub name: Option<Sp<String>>,
    pub encrypted: Option<Sp<bool>>,
    #[serde(skip)]
    pub at: At,
}

/// A network definition, `networks/NAME.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetworkDef {
    pub subnet: Option<Sp<String>>,
    pub gateway: Option<Sp<String>>,
    pub subnet6: Option<Sp<String>>,
    pub internal: Option<Sp<bool>>,
    pub mtu: Option<Sp<i64>>,
    pub dns: Option<Sp<bool>>,
}

/// A volume file, `volumes/NAME.toml` (Podman's `volume create --opt`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVolumeDef {
    #[serde(rename = "type")]
    pub fstype: Option<Sp<String>>,
    pub device: Option<Sp<String>>,
    pub options: Option<Sp<Vec<Sp<String>>>>,
    pub uid: Option<Sp<i64>>,
    pub gid: Option<Sp<i64>>,
    pub mode: Option<Sp<StrOrInt>>,
}

/// Drop-in merge: tables merge key by key, scalars and arrays replace
/// (DESIGN.md §1, as systemd drop-ins do for most settings).
pub trait Merge {
    fn merge(&mut self, over: Self);
}

fn merge_table<T: Merge>(base: &mut Option<T>, over: Option<T>) {
    match (base.as_mut(), over) {
        (Some(b), Some(o)) => b.merge(o),
        (None, Some(o)) => *base = Some(o),
        (_, None) => {}
    }
}

/// Replace each listed leaf that `over` sets; merge each listed sub-table.
macro_rules! impl_merge {
    ($ty:ident { leaves: [$($leaf:ident),*], tables: [$($table:ident),*], at: $at:tt }) => {
        impl Merge for $ty {
            fn merge(&mut self, over: Self) {
                $(if over.$leaf.is_some() { self.$leaf = over.$leaf; })*
                $(merge_table(&mut self.$table, over.$table);)*
                impl_merge!(@at $at self over);
            }
        }
    };
    (@at true $s:ident $o:ident) => { if $s.at.0.is_none() { $s.at = $o.at; } };
    (@at false $s:ident $o:ident) => {};
}

impl Merge for EnvMap {
    fn merge(&mut self, over: Self) {
        self.0.extend(over.0);
    }
}

impl_merge!(RawDefinition {
    leaves: [
        image,
        rootfs,
        command,
        entrypoint,
        workdir,
        user,
        hostname,
        environment_files,
        read_only,
        init,
        volume,
        tmpfs,
        secret,
        timezone
    ],
    tables: [
        environment,
        network,
        resources,
        security,
        health,
        service,
        labels,
        annotations,
        build
    ],
    at: false
});
impl_merge!(RawBuild {
    leaves: [context, file, target],
    tables: [args],
    at: true
});
impl_merge!(RawNetwork {
    leaves: [
        mode,
        networks,
        publish,
        aliases,
        dns,
        dns_search,
        extra_hosts
    ],
    tables: [ip],
    at: false
});
impl_merge!(RawVolume {
    leaves: [source, target, read_only, propagation, chown],
    tables: [],
    at: true
});
impl_merge!(RawTmpfs {
    leaves: [target, size, mode, options, uid, gid],
    tables: [],
    at: true
});
impl_merge!(RawResources {
    leaves: [
        memory,
        cpus,
        pids,
        io_weight,
        shm_size,
        memory_swap,
        memory_reservation,
        cpuset,
        cpu_weight
    ],
    tables: [ulimits, io_max],
    at: false
});
impl_merge!(RawSecurity {
    leaves: [
        cap_add,
        cap_drop,
        no_new_privileges,
        seccomp,
        userns,
        devices,
        mask,
        unmask,
        group_add,
        uid_map,
        gid_map
    ],
    tables: [sysctls],
    at: false
});
impl_merge!(RawHealth {
    leaves: [
        command,
        interval,
        timeout,
        retries,
        start_period,
        on_failure,
        start_interval
    ],
    tables: [],
    at: true
});
impl_merge!(RawService {
    leaves: [
        restart,
        requires,
        after,
        wanted_by,
        stop_timeout,
        notify,
        pull,
        auto_update,
        group,
        wants,
        binds_to,
        part_of,
        before,
        stop_signal,
        reload_signal,
        reload_command,
        restart_sec,
        start_limit_burst
    ],
    tables: [],
    at: false
});
impl_merge!(RawSecret {
    leaves: [credential, target, kind, name, encrypted],
    tables: [],
    at: true
});
impl_merge!(RawVolumeDef {
    leaves: [fstype, device, options, uid, gid, mode],
    tables: [],
    at: false
});
impl_merge!(RawNetworkDef {
    leaves: [subnet, gateway, subnet6, internal, mtu, dns],
    tables: [],
    at: false
});

/// A problem found while parsing one file: byte span (None = whole file), key
/// path, message. `load.rs` turns it into a [`super::Diagnostic`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawError {
    pub span: Option<Range<usize>>,
    pub key: String,
    pub message: String,
}

/// How deep `[`/`{` may nest in a file. Definitions need 3; the limit keeps a
/// hostile file from exhausting the stack in the recursive parser and `Drop`.
pub const MAX_NESTING: usize = 32;

/// Parse one definition file (`file` is its index in the definition's file
/// list). Returns what could be read and every error found.
pub fn parse_definition(text: &str, file: usize) -> (RawDefinition, Vec<RawError>) {
    parse_document(text, file, |table, span, errs| {
        parse_definition_table(table, span, errs, file)
    })
}

/// Parse one network file.
pub fn parse_network(text: &str, file: usize) -> (RawNetworkDef, Vec<RawError>) {
    parse_document(text, file, |table, span, errs| {
        parse_keys::<RawNetworkDef>(table, span, "", errs)
    })
}

/// Parse one volume file.
pub fn parse_volume(text: &str, file: usize) -> (RawVolumeDef, Vec<RawError>) {
    parse_document(text, file, |table, span, errs| {
        parse_keys::<RawVolumeDef>(table, span, "", errs)
    })
}

fn parse_document<T: Default>(
    text: &str,
    file: usize,
    body: impl FnOnce(DeTable<'_>, Range<usize>, &mut Vec<RawError>) -> T,
) -> (T, Vec<RawError>) {
    let mut errs = Vec::new();
    if let Some(offset) = nesting_exceeds(text, MAX_NESTING) {
        errs.push(RawError {
            span: Some(offset..offset + 1),
            key: String::new(),
            message: format!("arrays or tables nested more than {MAX_NESTING} levels deep"),
        });
        return (T::default(), errs);
    }
    let (doc, parse_errors) = DeTable::parse_recoverable(text);
    if !parse_errors.is_empty() {
        for e in parse_errors {
            let mut message = e.message().to_string();
            let span = e.span();
            if message == "duplicate key" {
                if let Some(key) = span.as_ref().and_then(|s| text.get(s.clone())) {
                    message = format!(
                        "duplicate key \"{}\": each key may appear once per file",
                        key.trim()
                    );
                }
            }
            errs.push(RawError {
                span,
                key: String::new(),
                message: format!("invalid TOML: {message}"),
            });
        }
        return (T::default(), errs);
    }
    CURRENT_FILE.with(|c| c.set(file));
    let span = doc.span();
    let value = body(doc.into_inner(), span, &mut errs);
    errs.sort_by_key(|e| e.span.as_ref().map_or(0, |s| s.start));
    (value, errs)
}

/// Offset of the first `[` or `{` (outside strings and comments) that opens
/// more than `limit` levels, if any.
fn nesting_exceeds(text: &str, limit: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'"' | b'\'') => {
                let triple = b.get(i..i + 3) == Some(&[q, q, q][..]);
                if triple {
                    i += 3;
                    while i < b.len() && b.get(i..i + 3) != Some(&[q, q, q][..]) {
                        i += if q == b'"' && b[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 2;
                } else {
                    i += 1;
                    while i < b.len() && b[i] != q && b[i] != b'\n' {
                        i += if q == b'"' && b[i] == b'\\' { 2 } else { 1 };
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_definition_table(
    table: DeTable<'_>,
    span: Range<usize>,
    errs: &mut Vec<RawError>,
    file: usize,
) -> RawDefinition {
    let mut def = RawDefinition::default();
    let mut rest = DeTable::new();
    for (key, value) in table {
        match key.get_ref().as_ref() {
            "network" => def.network = sub_table(value, "[network]", errs, file),
            "resources" => def.resources = sub_table(value, "[resources]", errs, file),
            "security" => def.security = sub_table(value, "[security]", errs, file),
            "health" => def.health = sub_table(value, "[health]", errs, file),
            "service" => def.service = sub_table(value, "[service]", errs, file),
            "volume" => def.volume = table_array(value, "[[volume]]", errs, file),
            "tmpfs" => def.tmpfs = table_array(value, "[[tmpfs]]", errs, file),
            "secret" => def.secret = table_array(value, "[[secret]]", errs, file),
            "build" => def.build = sub_table(value, "[build]", errs, file),
            _ => {
                rest.insert(key, value);
            }
        }
    }
    def.merge(parse_keys::<RawDefinition>(rest, span, "", errs));
    def
}

/// Something with a table location that parsing fills in.
trait HasAt {
    fn set_at(&mut self, at: At);
}
macro_rules! has_at {
    ($($ty:ident: $yes:tt),*) => {$(
        impl HasAt for $ty {
            #[allow(unused_variables)]
            fn set_at(&mut self, at: At) { has_at!(@set $yes self at); }
        }
    )*};
    (@set true $s:ident $a:ident) => { $s.at = $a; };
    (@set false $s:ident $a:ident) => {};
}
has_at!(RawNetwork: false, RawResources: false, RawSecurity: false, RawService: false,
        RawHealth: true, RawVolume: true, RawTmpfs: true, RawSecret: true, RawBuild: true);

fn sub_table<T: DeserializeOwned + Default + Merge + HasAt>(
    value: Spanned<DeValue<'_>>,
    section: &str,
    errs: &mut Vec<RawError>,
    file: usize,
) -> Option<T> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(t) => {
            let mut v = parse_keys::<T>(t, span.clone(), section, errs);
            v.set_at(At(Some((file, span))));
            Some(v)
        }
        other => {
            errs.push(RawError {
                span: Some(span),
                key: section.to_string(),
                message: format!("invalid type: {}, expected a table", other.type_str()),
            });
            None
        }
    }
}

fn table_array<T: DeserializeOwned + Default + Merge + HasAt>(
    value: Spanned<DeValue<'_>>,
    section: &str,
    errs: &mut Vec<RawError>,
    file: usize,
) -> Option<Sp<Vec<T>>> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        errs.push(RawError {
            span: Some(span),
            key: section.to_string(),
            message: format!("expected an array of tables, written \"{section}\""),
        });
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        let item_span = item.span();
        match item.into_inner() {
            DeValue::Table(t) => {
                let mut v = parse_keys::<T>(t, item_span.clone(), section, errs);
                v.set_at(At(Some((file, item_span))));
                out.push(v);
            }
            other => errs.push(RawError {
                span: Some(item_span),
                key: section.to_string(),
                message: format!("invalid type: {}, expected a table", other.type_str()),
            }),
        }
    }
    Some(Sp::new(out, file, span))
}

/// Deserialize `table` into `T` one key at a time, so every bad key is reported.
fn parse_keys<T: DeserializeOwned + Default + Merge>(
    table: DeTable<'_>,
    span: Range<usize>,
    section: &str,
    errs: &mut Vec<RawError>,
) -> T {
    let fields = struct_fields::<T>();
    // Fast path: a table whose keys are all known and whose values all have
    // the right type deserializes in one go, to the same value the key-by-key
    // loop below would build (every field is an independent Option). Only
    // when that fails is the table taken apart to report every bad key.
    if table.keys().all(|k| fields.contains(&k.get_ref().as_ref())) {
        let de = toml::de::Deserializer::from(Spanned::new(span.clone(), table.clone()));
        if let Ok(v) = T::deserialize(de.into_deserializer()) {
            return v;
        }
    }
    parse_keys_one_by_one(table, span, section, errs, fields)
}

/// The slow path of [`parse_keys`]: one key at a time, every error reported.
fn parse_keys_one_by_one<T: DeserializeOwned + Default + Merge>(
    table: DeTable<'_>,
    span: Range<usize>,
    section: &str,
    errs: &mut Vec<RawError>,
    fields: &[&str],
) -> T {
    let mut out = T::default();
    for (key, value) in table {
        let name = key.get_ref().to_string();
        let key_path = if section.is_empty() {
            name.clone()
        } else {
            format!("{section} {name}")
        };
        if !fields.contains(&name.as_str()) {
            let hint = did_you_mean(&name, fields.iter().copied())
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            let place = if section.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in {section}")
            };
            errs.push(RawError {
                span: Some(key.span()),
                key: key_path,
                message: format!(
                    "unknown key \"{name}\" {place}{hint}: expected one of {}",
                    keys_list(fields),
                ),
            });
            continue;
        }
        let value_span = value.span();
        let mut one = DeTable::new();
        one.insert(key, value);
        let de = toml::de::Deserializer::from(Spanned::new(span.clone(), one));
        match T::deserialize(de.into_deserializer()) {
            Ok(v) => out.merge(v),
            Err(e) => errs.push(RawError {
                span: e.span().or(Some(value_span)),
                key: key_path,
                message: friendly_type_error(e.message()),
            }),
        }
    }
    out
}

fn keys_list(fields: &[&str]) -> String {
    let quoted: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
    quoted.join(", ")
}

/// serde speaks of sequences, maps and Rust integer types; a TOML user reads
/// arrays, tables and numbers.
fn friendly_type_error(message: &str) -> String {
    message
        .replace("invalid type: sequence", "invalid type: array")
        .replace("invalid type: map", "invalid type: table")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table")
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("struct ", "table ")
}

/// The field names serde derives for `T` (what `deny_unknown_fields` accepts),
/// read by asking `T` to deserialize from a deserializer that only records them.
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Grab<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Grab<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Grab(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (RawDefinition, Vec<RawError>) {
        parse_definition(text, 0)
    }

    #[test]
    fn reads_every_section_with_spans() {
        let text = r#"image = "nginx"
command = ["nginx"]
environment = { TZ = "UTC" }
[network]
publish = ["8080:80"]
[[volume]]
source = "data"
target = "/data"
[[volume]]
source = "/srv"
target = "/srv"
[resources]
memory = "256M"
cpus = 0.5
[health]
command = ["true"]
[service]
requires = ["db"]
[[secret]]
credential = "pw"
target = "/run/secrets/pw"
"#;
        let (d, errs) = parse(text);
        assert!(errs.is_empty(), "{errs:?}");
        let image = d.image.unwrap();
        assert_eq!(image.value, "nginx");
        assert_eq!(&text[image.span], "\"nginx\"");
        assert_eq!(d.volume.as_ref().unwrap().value.len(), 2);
        assert_eq!(
            d.resources.as_ref().unwrap().cpus.as_ref().unwrap().value,
            0.5
        );
        assert_eq!(
            d.resources.unwrap().memory.unwrap().value,
            StrOrInt::Str("256M".into())
        );
        assert!(d.health.unwrap().at.0.is_some());
        let env = d.environment.unwrap();
        assert_eq!(env.0["TZ"].1.value, "UTC");
        assert_eq!(&text[env.0["TZ"].0.span.clone()], "TZ");
    }

    #[test]
    fn reports_every_bad_key() {
        let text = "imgae = \"x\"\nread_only = \"yes\"\n[resources]\ncpu = 1\npids = \"many\"\n";
        let (_, errs) = parse(text);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs[0].message.contains("did you mean \"image\""),
            "{}",
            errs[0].message
        );
        assert_eq!(errs[1].key, "read_only");
        assert!(
            errs[1].message.contains("expected a boolean"),
            "{}",
            errs[1].message
        );
        assert_eq!(errs[2].key, "[resources] cpu");
        assert!(errs[2].message.contains("did you mean \"cpus\""));
        assert_eq!(errs[3].key, "[resources] pids");
        assert_eq!(&text[errs[3].span.clone().unwrap()], "\"many\"");
    }

    #[test]
    fn syntax_and_duplicate_errors() {
        let (_, errs) = parse("image = \"a\"\nimage = \"b\"\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.contains("duplicate key \"image\""),
            "{errs:?}"
        );
        let (_, errs) = parse("image = \n");
        assert!(!errs.is_empty());
    }

    #[test]
    fn wrong_container_types() {
        let (_, errs) = parse("network = 5\nvolume = { a = 1 }\n[[tmpfs]]\ntarget = 3\n");
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].message.contains("expected a table"));
        assert!(errs[1].message.contains("[[volume]]"));
        assert_eq!(errs[2].key, "[[tmpfs]] target");
    }

    #[test]
    fn merge_tables_and_replace_leaves() {
        let (mut a, _) = parse_definition(
            "image = \"a\"\ncommand = [\"x\", \"y\"]\nenvironment = { A = \"1\", B = \"2\" }\n[resources]\nmemory = \"1G\"\ncpus = 1\n",
            0,
        );
        let (b, _) = parse_definition(
            "command = [\"z\"]\nenvironment = { B = \"3\" }\n[resources]\ncpus = 2\n",
            1,
        );
        a.merge(b);
        assert_eq!(a.image.unwrap().value, "a");
        let cmd = a.command.unwrap();
        assert_eq!(cmd.value, vec!["z".to_string()]);
        assert_eq!(cmd.file, 1);
        let env = a.environment.unwrap().0;
        assert_eq!(
            (env["A"].1.value.as_str(), env["B"].1.value.as_str()),
            ("1", "3")
        );
        let r = a.resources.unwrap();
        assert_eq!(r.memory.unwrap().file, 0);
        assert_eq!(r.cpus.unwrap().value, 2.0);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = format!("x = {}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let (_, errs) = parse(&text);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("nested"));
        // Brackets inside strings and comments do not count.
        let text = format!("image = \"{}\" # {}\n", "[".repeat(100), "{".repeat(100));
        assert!(parse(&text).1.is_empty());
    }

    #[test]
    fn field_lists_come_from_serde() {
        assert!(struct_fields::<RawDefinition>().contains(&"environment_files"));
        assert!(!struct_fields::<RawVolume>().contains(&"at"));
    }

    #[test]
    fn whole_table_fast_path_matches_key_by_key() {
        let text = r#"
image = "a"
command = ["x", "y"]
environment = { A = "1", B = "2" }
read_only = true
[resources]
memory = "1G"
cpus = 0.5
pids = 7
[service]
requires = ["b"]
stop_timeout = 30
"#;
        let doc = DeTable::parse(text).unwrap();
        let span = doc.span();
        let table = doc.into_inner();
        for (key, value) in table.clone() {
            let name = key.get_ref().to_string();
            if let (DeValue::Table(t), "resources" | "service") =
                (value.get_ref().clone(), name.as_str())
            {
                let section = format!("[{}]", key.get_ref());
                let mut e1 = Vec::new();
                let mut e2 = Vec::new();
                let (a, b): (String, String) = match key.get_ref().as_ref() {
                    "resources" => (
                        format!(
                            "{:?}",
                            parse_keys::<RawResources>(t.clone(), value.span(), &section, &mut e1)
                        ),
                        format!(
                            "{:?}",
                            parse_keys_one_by_one::<RawResources>(
                                t,
                                value.span(),
                                &section,
                                &mut e2,
                                struct_fields::<RawResources>()
                            )
                        ),
                    ),
                    _ => (
                        format!(
                            "{:?}",
                            parse_keys::<RawService>(t.clone(), value.span(), &section, &mut e1)
                        ),
                        format!(
                            "{:?}",
                            parse_keys_one_by_one::<RawService>(
                                t,
                                value.span(),
                                &section,
                                &mut e2,
                                struct_fields::<RawService>()
                            )
                        ),
                    ),
                };
                assert_eq!(a, b);
                assert!(e1.is_empty() && e2.is_empty());
            }
        }
        let mut top = DeTable::new();
        for (k, v) in table {
            if !matches!(k.get_ref().as_ref(), "resources" | "service") {
                top.insert(k, v);
            }
        }
        let (mut e1, mut e2) = (Vec::new(), Vec::new());
        let a = parse_keys::<RawDefinition>(top.clone(), span.clone(), "", &mut e1);
        let b = parse_keys_one_by_one::<RawDefinition>(
            top,
            span,
            "",
            &mut e2,
            struct_fields::<RawDefinition>(),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert!(a.environment.is_some() && a.command.is_some());
        assert!(e1.is_empty() && e2.is_empty());
        // A bad value still gets the key-by-key report.
        let doc = DeTable::parse("image = 5\nhostname = 6\n").unwrap();
        let span = doc.span();
        let mut errs = Vec::new();
        let _ = parse_keys::<RawDefinition>(doc.into_inner(), span, "", &mut errs);
        assert_eq!(errs.len(), 2);
    }
}
