//! Applying berth's nftables transactions (the text `network::plan`
//! renders) and reading the host's forward policy.
//!
//! How: libnftables in the process, opened with `dlopen` for each call (or
//! each [`Session`] of calls) and closed after it, so nothing is linked at
//! build time and nothing stays
//! mapped in the supervisor for the container's life. libnftables.so.1 is
//! what the `nft` program itself links, so it is there wherever `nft` is;
//! where it cannot be loaded (a static build, a host without it) the same
//! text goes to `nft -f -`. Measured in benches/network-results.md: the
//! library saves ~1.7 ms of starting `nft` on each transaction (a
//! container's two published ports: 1.6 ms against 3.3 ms), and once closed
//! again leaves ~140 KiB of anonymous memory (kept loaded: 1.1 MiB, for
//! 1.1 ms less). `nft -j` was the third candidate: it is a spawn as well,
//! no faster, and Debian 12's nft 1.0.6 crashes (SIGSEGV) on the JSON form
//! of the plan's `dnat ... map` rules. Whatever the way, a transaction that
//! deletes anything (a stop; a start that re-adds the chains) waits 5-15 ms
//! in the kernel when its netlink socket closes: see [`table_exists`].
//!
//! One call, one transaction: nft sends a whole buffer as one netlink batch,
//! so a failed `create element` (a host port another container holds)
//! leaves the ruleset exactly as it was.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::io::Write as _;
use std::process::{Command, Stdio};

/// The failure of a transaction or a listing, with nft's own message.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables: {what} is already published by container \"{holder}\": stop \"{holder}\" or publish another host port (nothing was changed)\n{message}")]
    PortTaken {
        /// The port as a user writes it: `8080/tcp`, `127.0.0.1:8443/tcp`.
        what: String,
        holder: String,
        message: String,
        /// The element: its map and key as the plan writes it, so a stale
        /// one (its holder is gone) can be deleted.
        map: String,
        key: String,
    },
    #[error("nftables transaction failed (nothing was changed): {0}")]
    Rejected(String),
    #[error("cannot run \"nft\": {0} (install the nftables package)")]
    Spawn(std::io::Error),
    #[error("cannot read the output of nft {command:?}: {reason}")]
    Output { command: String, reason: String },
}

/// How a transaction reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// libnftables.so.1, loaded for the call.
    Library,
    /// `nft -f -`.
    Program,
}

/// Apply `script` as one transaction: in process when libnftables loads,
/// else through `nft -f -`. A `create element` of a port another container
/// holds fails with [`NftError::PortTaken`], naming the holder.
pub fn apply(script: &str) -> Result<(), NftError> {
    Session::open().apply(script)
}

/// Calls that load libnftables once between them (or, where it cannot be
/// loaded, run `nft` for each): a start's listing and transactions. Each
/// load and unload cost a bridge's first member ~1-2 ms (benches/unit_start.rs,
/// berth@net), so the library is loaded at the first call, not before: a
/// start whose elements went by `network::nftnl` loads it never. Dropped,
/// the library is unloaded as after a single call.
pub struct Session {
    library: std::cell::OnceCell<Option<Library>>,
}

impl Session {
    pub fn open() -> Session {
        Session {
            library: std::cell::OnceCell::new(),
        }
    }

    fn run(&self, text: &str, json: bool) -> Result<String, RunError> {
        match self.library.get_or_init(|| Library::open().ok()) {
            Some(l) => l.run(text, json),
            None => run_program(text, json),
        }
    }

    /// [`apply`] in this session.
    pub fn apply(&self, script: &str) -> Result<(), NftError> {
        finish(script, self.run(script, false))
    }

    fn list_json(&self, command: &str) -> Result<String, NftError> {
        self.run(command, true).map_err(|e| list_error(command, e))
    }
}

/// [`apply`] through one chosen backend (tests and benches use both).
pub fn apply_via(backend: Backend, script: &str) -> Result<(), NftError> {
    let r = run(backend, script, false);
    finish(script, r)
}

fn finish(script: &str, r: Result<String, RunError>) -> Result<(), NftError> {
    let message = match r {
        Ok(_) => return Ok(()),
        Err(RunError::Failed(m)) => m,
        Err(RunError::Spawn(e)) => return Err(NftError::Spawn(e)),
        // Only from `Backend::Library` asked for by name.
        Err(RunError::NoLibrary) => {
            return Err(NftError::Rejected(
                "libnftables.so.1 cannot be loaded".into(),
            ))
        }
    };
    let message = message.trim_end().to_string();
    if message.contains("File exists") {
        // Best effort: when the holder cannot be read, nft's own message
        // still says which element.
        if let Some((map, key, holder)) = find_holder(&taken_candidates(&message, script)) {
            return Err(NftError::PortTaken {
                what: describe_port(&key),
                holder,
                message,
                map,
                key,
            });
        }
    }
    Err(NftError::Rejected(message))
}

/// The container (the element's comment) that holds `key` (as the plan
/// renders it: `tcp . 8080`, `127.0.0.1 . tcp . 8443`) in `map` of
/// `inet berth` (`dnat4`, `dnat4_host`, `dnat6`, `dnat6_host`).
pub fn port_holder(map: &str, key: &str) -> Result<Option<String>, NftError> {
    let command = format!("list map inet berth {map}");
    let json = list_json(&command)?;
    holder_in_map(&json, key).map_err(|reason| NftError::Output { command, reason })
}

/// `nft -j list map inet berth MAP`: the map's elements with their
/// comments (the holders), for [`holder_in_map`].
pub fn map_json(map: &str) -> Result<String, NftError> {
    list_json(&format!("list map inet berth {map}"))
}

/// Whether berth's table is loaded (the tests ask; a start no longer
/// does: `network::nftnl` finds a missing table by the kernel's ENOENT).
/// Why a start leaves out the skeleton when it can: re-adding the base
/// chains and flushing their rules makes the kernel wait 5-15 ms when the
/// transaction's socket closes (an RCU grace period for what it
/// destroyed), where a transaction of element additions alone takes
/// 0.5-1.6 ms (benches/network-results.md).
pub fn table_exists() -> Result<bool, NftError> {
    let command = "list tables";
    let json = list_json(command)?;
    has_table(&json, "inet", "berth").map_err(|reason| NftError::Output {
        command: command.into(),
        reason,
    })
}

/// Pure: whether `nft -j list tables` output holds table `family name`.
pub fn has_table(json: &str, family: &str, name: &str) -> Result<bool, String> {
    let items = nftables_items(json)?;
    Ok(items.iter().filter_map(|i| i.get("table")).any(|t| {
        t.get("family").and_then(|f| f.as_str()) == Some(family)
            && t.get("name").and_then(|n| n.as_str()) == Some(name)
    }))
}

/// Base chains hooked on `forward` in the ip, ip6 and inet families whose
/// verdict for what no rule accepts is drop, outside berth's own table:
/// `table ip filter, chain FORWARD` (Docker's iptables-nft `FORWARD DROP`),
/// and firewalld's forward chain (it rejects what no zone allows).
pub fn foreign_forward_drops() -> Result<Vec<String>, NftError> {
    let command = "list chains";
    let json = list_json(command)?;
    forward_drops(&json).map_err(|reason| NftError::Output {
        command: command.into(),
        reason,
    })
}

/// What a dropping forward chain does to berth's bridges, and the fixes;
/// `None` when there is nothing to say. Pure.
pub fn forward_policy_warning(chains: &[String], bridges: &[String]) -> Option<String> {
    if chains.is_empty() || bridges.is_empty() {
        return None;
    }
    let b = &bridges[0];
    let names = bridges.join(", ");
    Some(format!(
        "the host's forward policy drops what no rule accepts ({}): traffic that containers on \
         bridge {names} send out, or receive on published ports from other hosts, will be dropped \
         unless a rule there accepts it. Fix, per bridge: with Docker's iptables, \
         `iptables -I DOCKER-USER -i {b} -j ACCEPT` and `iptables -I DOCKER-USER -o {b} -j ACCEPT`; \
         with nftables, `nft insert rule ip filter FORWARD iifname \"{b}\" accept` and \
         `... oifname \"{b}\" accept`; with firewalld, `firewall-cmd --permanent --zone=trusted \
         --add-interface={b}` and `firewall-cmd --reload`",
        chains.join("; ")
    ))
}

/// Pure: the objects of `nft -j` output (its `nftables` array).
fn nftables_items(json: &str) -> Result<Vec<serde_json::Value>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    match v.get("nftables") {
        Some(serde_json::Value::Array(items)) => Ok(items.clone()),
        _ => Err("no \"nftables\" array".into()),
    }
}

/// Pure: the dropping forward chains in `nft -j list chains` output.
pub fn forward_drops(json: &str) -> Result<Vec<String>, String> {
    let items = nftables_items(json)?;
    let mut out = Vec::new();
    for c in items.iter().filter_map(|i| i.get("chain")) {
        let s = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let (family, table, name) = (s("family"), s("table"), s("name"));
        if s("hook") != "forward" || !matches!(family, "ip" | "ip6" | "inet") {
            continue;
        }
        if family == "inet" && table == "berth" {
            continue;
        }
        // firewalld's chains accept by policy and end in a reject rule for
        // what its zones do not allow (firewalld: src/firewall/core/nftables.py).
        let firewalld = table == "firewalld";
        if s("policy") == "drop" || firewalld {
            let mut d = format!("table {family} {table}, chain {name}");
            if firewalld {
                d.push_str(" (firewalld)");
            }
            out.push(d);
        }
    }
    Ok(out)
}

/// Pure: the comment of the element of `nft -j list map` output whose key,
/// written as the plan writes it (`tcp . 8080`), is `key`.
pub fn holder_in_map(json: &str, key: &str) -> Result<Option<String>, String> {
    let want = key
        .split(" . ")
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" . ");
    Ok(elements_in_map(json)?
        .into_iter()
        .find(|(k, _)| *k == want)
        .map(|(_, holder)| holder))
}

/// Pure: every element of `nft -j list map` output as (key as the plan
/// writes it, `tcp . 8080`; its comment, the holder, empty when none).
pub fn elements_in_map(json: &str) -> Result<Vec<(String, String)>, String> {
    let items = nftables_items(json)?;
    let mut out = Vec::new();
    for map in items.iter().filter_map(|i| i.get("map")) {
        let Some(elems) = map.get("elem").and_then(|e| e.as_array()) else {
            continue;
        };
        // Each is [KEY, DATA]; KEY is {"elem": {"val": …, "comment": …}}
        // when it has a comment, else the value itself.
        for pair in elems {
            let Some(k) = pair.get(0) else { continue };
            let (val, comment) = match k.get("elem") {
                Some(e) => (e.get("val"), e.get("comment").and_then(|c| c.as_str())),
                None => (Some(k), None),
            };
            let parts: Vec<String> = match val.and_then(|v| v.get("concat")) {
                Some(c) => c.as_array().into_iter().flatten().map(scalar).collect(),
                None => val.into_iter().map(scalar).collect(),
            };
            out.push((parts.join(" . "), comment.unwrap_or("").to_string()));
        }
    }
    Ok(out)
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first of `candidates` (map, key) that a container holds, and who.
/// The transaction was undone, so an element found is another's.
fn find_holder(candidates: &[(String, String)]) -> Option<(String, String, String)> {
    let mut listed: Vec<(&str, String)> = Vec::new();
    for (map, key) in candidates {
        let json = match listed.iter().find(|(m, _)| m == map) {
            Some((_, j)) => j.clone(),
            None => {
                let j = list_json(&format!("list map inet berth {map}")).ok()?;
                listed.push((map, j.clone()));
                j
            }
        };
        if let Ok(Some(holder)) = holder_in_map(&json, key) {
            return Some((map.clone(), key.clone(), holder));
        }
    }
    None
}

/// Pure: the `create element`s that may have been refused as existing, as
/// (map, key). `nft -f -` quotes the offending line after its "File
/// exists"; libnftables 1.0.6, given a buffer, quotes the buffer's first
/// line instead, so then every create of the script is a candidate.
fn taken_candidates(message: &str, script: &str) -> Vec<(String, String)> {
    let quoted: Vec<_> = message
        .lines()
        .filter_map(|l| l.find("create element ").map(|i| &l[i..]))
        .filter_map(parse_create)
        .collect();
    if !quoted.is_empty() {
        return quoted;
    }
    script.lines().filter_map(parse_create).collect()
}

/// `create element inet berth MAP { KEY [comment "…"] : DATA }` → (MAP, KEY).
fn parse_create(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("create element inet berth ")?;
    let (map, rest) = rest.split_once(" { ")?;
    let key_end = [" comment ", " : ", " }"]
        .iter()
        .filter_map(|s| rest.find(s))
        .min()?;
    Some((map.to_string(), rest[..key_end].trim().to_string()))
}

/// Pure: `tcp . 8080` → `8080/tcp`; `127.0.0.1 . tcp . 8443` →
/// `127.0.0.1:8443/tcp`; `::1 . udp . 53` → `[::1]:53/udp`.
fn describe_port(key: &str) -> String {
    let p: Vec<&str> = key.split(" . ").collect();
    match p.as_slice() {
        [proto, port] => format!("{port}/{proto}"),
        [ip, proto, port] if ip.contains(':') => format!("[{ip}]:{port}/{proto}"),
        [ip, proto, port] => format!("{ip}:{port}/{proto}"),
        _ => key.to_string(),
    }
}

/// `nft -j COMMAND`'s output.
fn list_json(command: &str) -> Result<String, NftError> {
    Session::open().list_json(command)
}

fn list_error(command: &str, e: RunError) -> NftError {
    match e {
        RunError::Spawn(e) => NftError::Spawn(e),
        RunError::Failed(m) => NftError::Output {
            command: command.into(),
            reason: m.trim_end().into(),
        },
        RunError::NoLibrary => NftError::Output {
            command: command.into(),
            reason: "libnftables.so.1 cannot be loaded".into(),
        },
    }
}

enum RunError {
    NoLibrary,
    Spawn(std::io::Error),
    /// nft's error message.
    Failed(String),
}

/// Run `text` (a script, or one command when `json` asks for JSON output),
/// returning nft's standard output.
fn run(backend: Backend, text: &str, json: bool) -> Result<String, RunError> {
    match backend {
        Backend::Library => Library::open()?.run(text, json),
        Backend::Program => run_program(text, json),
    }
}

fn run_program(text: &str, json: bool) -> Result<String, RunError> {
    let mut cmd = Command::new("nft");
    if json {
        // A listing: its words as arguments (`nft -j list chains`).
        cmd.arg("-j").args(text.split_whitespace());
        cmd.stdin(Stdio::null());
    } else {
        cmd.args(["-f", "-"]).stdin(Stdio::piped());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // nft reads all of its input before it says anything, so writing
        // first cannot deadlock on a full stderr pipe. A write error shows
        // as nft's own failure below.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(RunError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut m = String::from_utf8_lossy(&out.stderr).into_owned();
        if m.trim().is_empty() {
            m = format!("nft exited with {}", out.status);
        }
        Err(RunError::Failed(m))
    }
}

/// nftables' `NFT_CTX_OUTPUT_JSON` (nftables/libnftables.h).
const OUTPUT_JSON: c_uint = 1 << 4;

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type CtxFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxGet = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type CtxSetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// libnftables, loaded for one call: `dlclose` when dropped, then the
/// heap it used goes back to the system (`malloc_trim`), so a supervisor
/// that stays for the container's life keeps none of it.
struct Library {
    handle: *mut c_void,
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxFn,
    buffer_error: CtxFn,
    get_output: CtxGet,
    get_error: CtxGet,
    set_flags: CtxSetFlags,
    run_cmd: RunCmd,
}

impl Library {
    fn open() -> Result<Library, RunError> {
        // SAFETY: a NUL-terminated name; RTLD_LOCAL keeps its symbols (and
        // those of libnftnl, libmnl, … it pulls in) out of the global scope.
        let handle = unsafe {
            libc::dlopen(
                c"libnftables.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            )
        };
        if handle.is_null() {
            return Err(RunError::NoLibrary);
        }
        let sym = |name: &CStr| {
            // SAFETY: a live handle and a NUL-terminated name.
            let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        let syms = (|| {
            Some([
                sym(c"nft_ctx_new")?,
                sym(c"nft_ctx_free")?,
                sym(c"nft_ctx_buffer_output")?,
                sym(c"nft_ctx_buffer_error")?,
                sym(c"nft_ctx_get_output_buffer")?,
                sym(c"nft_ctx_get_error_buffer")?,
                sym(c"nft_ctx_output_set_flags")?,
                sym(c"nft_run_cmd_from_buffer")?,
            ])
        })();
        let Some([new, free, bo, be, go, ge, sf, rc]) = syms else {
            // SAFETY: the handle from dlopen above, closed once.
            unsafe { libc::dlclose(handle) };
            return Err(RunError::NoLibrary);
        };
        // SAFETY: these are the signatures of libnftables.so.1's
        // LIBNFTABLES_1 symbols (nftables: include/nftables/libnftables.h),
        // stable since 0.9.
        unsafe {
            Ok(Library {
                handle,
                ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(new),
                ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(free),
                buffer_output: std::mem::transmute::<*mut c_void, CtxFn>(bo),
                buffer_error: std::mem::transmute::<*mut c_void, CtxFn>(be),
                get_output: std::mem::transmute::<*mut c_void, CtxGet>(go),
                get_error: std::mem::transmute::<*mut c_void, CtxGet>(ge),
                set_flags: std::mem::transmute::<*mut c_void, CtxSetFlags>(sf),
                run_cmd: std::mem::transmute::<*mut c_void, RunCmd>(rc),
            })
        }
    }

    fn run(&self, text: &str, json: bool) -> Result<String, RunError> {
        let text = CString::new(text)
            .map_err(|_| RunError::Failed("the nft script holds a NUL byte".into()))?;
        // SAFETY: a context made, used and freed here; the buffers it hands
        // back are read before nft_ctx_free.
        unsafe {
            let ctx = (self.ctx_new)(0);
            if ctx.is_null() {
                return Err(RunError::Failed("nft_ctx_new failed".into()));
            }
            // Both buffered: libnftables would print to our stdout/stderr.
            (self.buffer_output)(ctx);
            (self.buffer_error)(ctx);
            if json {
                (self.set_flags)(ctx, OUTPUT_JSON);
            }
            let rc = (self.run_cmd)(ctx, text.as_ptr());
            let read = |p: *const c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            };
            let out = read((self.get_output)(ctx));
            let err = read((self.get_error)(ctx));
            (self.ctx_free)(ctx);
            if rc == 0 {
                Ok(out)
            } else if err.trim().is_empty() {
                Err(RunError::Failed(format!("libnftables returned {rc}")))
            } else {
                Err(RunError::Failed(err))
            }
        }
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: the handle from dlopen, closed once; no pointer into the
        // library outlives this value.
        unsafe {
            libc::dlclose(self.handle);
            // libnftables freed its heap at nft_ctx_free, but glibc keeps
            // the pages: ~850 KiB of anonymous memory per supervisor.
            libc::malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_forward_chains_are_found_outside_berths_table() {
        // Shaped as nft 1.0.6 prints `nft -j list chains`: iptables-nft's
        // filter table with Docker's FORWARD DROP, firewalld's, berth's own
        // (accept, and skipped anyway), an ip6 drop, and a bridge-family
        // forward chain (not routed traffic: skipped).
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}},
 {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
 {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 9}},
 {"chain": {"family": "inet", "table": "firewalld", "name": "filter_FORWARD", "handle": 3, "type": "filter", "hook": "forward", "prio": 10, "policy": "accept"}},
 {"chain": {"family": "inet", "table": "berth", "name": "forward", "handle": 4, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
 {"chain": {"family": "ip6", "table": "filter", "name": "FORWARD", "handle": 5, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
 {"chain": {"family": "inet", "table": "mine", "name": "fw", "handle": 6, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
 {"chain": {"family": "bridge", "table": "filter", "name": "FORWARD", "handle": 7, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}]}"#;
        assert_eq!(
            forward_drops(json).unwrap(),
            [
                "table ip filter, chain FORWARD",
                "table inet firewalld, chain filter_FORWARD (firewalld)",
                "table ip6 filter, chain FORWARD",
            ]
        );
        assert_eq!(
            forward_drops(r#"{"nftables": [{"metainfo": {}}]}"#).unwrap(),
            Vec::<String>::new()
        );
        assert!(forward_drops("Error: oops").is_err());
    }

    #[test]
    fn the_warning_names_the_chains_the_bridge_and_the_fixes() {
        let chains = vec!["table ip filter, chain FORWARD".to_string()];
        let bridges = vec!["berth0".to_string()];
        let w = forward_policy_warning(&chains, &bridges).unwrap();
        assert!(w.contains("(table ip filter, chain FORWARD)"), "{w}");
        assert!(w.contains("will be dropped"), "{w}");
        assert!(
            w.contains("iptables -I DOCKER-USER -i berth0 -j ACCEPT"),
            "{w}"
        );
        assert!(
            w.contains("iptables -I DOCKER-USER -o berth0 -j ACCEPT"),
            "{w}"
        );
        assert!(w.contains("--zone=trusted --add-interface=berth0"), "{w}");
        assert_eq!(forward_policy_warning(&[], &bridges), None);
        assert_eq!(forward_policy_warning(&chains, &[]), None);
    }

    #[test]
    fn berths_table_is_found_among_the_tables() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}, {"table": {"family": "inet", "name": "berth", "handle": 2}}]}"#;
        assert_eq!(has_table(json, "inet", "berth"), Ok(true));
        assert_eq!(has_table(json, "ip", "berth"), Ok(false));
        assert_eq!(
            has_table(r#"{"nftables": [{"metainfo": {}}]}"#, "inet", "berth"),
            Ok(false)
        );
    }

    #[test]
    fn the_holder_of_a_port_is_its_elements_comment() {
        // `nft -j list map inet berth dnat4` as nft 1.0.6 prints it.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"map": {"family": "inet", "name": "dnat4", "table": "berth", "type": ["inet_proto", "inet_service"], "handle": 8, "map": "ipv4_addr . inet_service", "elem": [[{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "web"}}, {"concat": ["10.89.0.2", 80]}], [{"elem": {"val": {"concat": ["udp", 5353]}, "comment": "dns"}}, {"concat": ["10.89.0.3", 53]}]]}}]}"#;
        assert_eq!(
            holder_in_map(json, "tcp . 8080").unwrap().as_deref(),
            Some("web")
        );
        assert_eq!(
            holder_in_map(json, "udp . 5353").unwrap().as_deref(),
            Some("dns")
        );
        assert_eq!(holder_in_map(json, "udp . 8080").unwrap(), None);
        let host = r#"{"nftables": [{"map": {"name": "dnat4_host", "elem": [[{"elem": {"val": {"concat": ["127.0.0.1", "tcp", 8443]}, "comment": "db"}}, {"concat": ["10.89.0.2", 443]}]]}}]}"#;
        assert_eq!(
            holder_in_map(host, "127.0.0.1 . tcp . 8443")
                .unwrap()
                .as_deref(),
            Some("db")
        );
        // A map that is empty has no "elem" at all.
        assert_eq!(
            holder_in_map(r#"{"nftables": [{"map": {"name": "dnat6"}}]}"#, "tcp . 1").unwrap(),
            None
        );
    }

    #[test]
    fn the_refused_create_is_read_from_nfts_message() {
        let script = "add table inet berth\n\
            create element inet berth dnat4 { tcp . 8080 comment \"db\" : 10.89.1.2 . 5432 }\n\
            create element inet berth dnat4_host { 127.0.0.1 . tcp . 9000 comment \"db\" : 10.89.1.2 . 90 }\n";
        let message = "Error: Could not process rule: File exists\n\
            create element inet berth dnat4_host { 127.0.0.1 . tcp . 9000 comment \"db\" : 10.89.1.2 . 90 }\n\
            \x20                                      ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n";
        assert_eq!(
            taken_candidates(message, script),
            [("dnat4_host".into(), "127.0.0.1 . tcp . 9000".into())]
        );
        // Spawned nft prefixes the line with its place in the file.
        let m2 = "/dev/stdin:2:1-80: Error: Could not process rule: File exists\n\
            create element inet berth dnat4 { tcp . 8080 comment \"db\" : 10.89.1.2 . 5432 }\n";
        assert_eq!(
            taken_candidates(m2, script),
            [("dnat4".into(), "tcp . 8080".into())]
        );
        // libnftables 1.0.6 quotes the buffer's first line: every create.
        let m3 = "Error: Could not process rule: File exists\nadd table inet berth\n   ^^^^\n";
        assert_eq!(
            taken_candidates(m3, script),
            [
                ("dnat4".to_string(), "tcp . 8080".to_string()),
                ("dnat4_host".into(), "127.0.0.1 . tcp . 9000".into())
            ]
        );
        assert_eq!(describe_port("tcp . 8080"), "8080/tcp");
        assert_eq!(
            describe_port("127.0.0.1 . tcp . 9000"),
            "127.0.0.1:9000/tcp"
        );
        assert_eq!(describe_port("::1 . udp . 53"), "[::1]:53/udp");
    }
}
