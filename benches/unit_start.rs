//! Benchmark (issue 13): `systemctl start` of a declared container until its
//! program has been exec'd, beside a bare unit running the same program and
//! crun in a `Delegate=yes` unit, interleaved in one run inside a real
//! systemd booted in fresh namespaces (tests/support/systemd_box.rs); then the
//! memory of the supervisors waiting on five idle containers.
//!
//! A fourth unit, `delegate`, is the bare one with what every berth@NAME
//! and the crun unit have and a bare unit has not: `Delegate=yes` in
//! `berth.slice`. The difference to `bare` is systemd's own cost of a
//! delegated unit, which no runtime started inside one can win back.
//!
//! A fifth, `berth-copy` (`berth@copy`), is `berth@bench` with
//! CAP_SYS_PTRACE added, which makes its supervisor re-execute from a
//! protected copy of berth instead of using the trampoline
//! (runtime/trampoline.rs): the difference is what the trampoline saves.
//!
//! A sixth, `berth-net` (`berth@net`), is what most containers are: an
//! image (an OCI layout loaded into the store by the warm-up rounds, so
//! each measured start mounts its layers as an overlay) on the default
//! bridge network with a published port (a lease, a veth pair, addresses
//! and routes, one nft transaction), the same stamp as its program.
//!
//! Run: `cargo bench --bench unit_start [-- ROUNDS]` as root (release build).
//! Each round starts the units one after the other; each program is a
//! static stamp that writes CLOCK_REALTIME in ns to a file and exits, and the
//! time counted is from just before `systemctl start --no-block` to that
//! stamp. Medians and ratios go to stdout; copy them into
//! benches/unit-start-results.md with the machine they came from.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it only says how
//! to run it.

#[path = "../tests/support/registry.rs"]
mod reg;
#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use support::systemd_box::{BoxOptions, SystemdBox};

const STAMP_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static long long ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
/* stamp FILE [linger|wait]: writes "REALTIME MONOTONIC" (ns) to FILE, or to
   stdout for "-"; then lingers 300 ms (long enough for the bench to read
   systemd's fork timestamp of a unit still loaded) or waits forever. */
int main(int argc, char **argv) {
    long long real = ns(CLOCK_REALTIME), mono = ns(CLOCK_MONOTONIC);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%lld %lld\n", real, mono);
    int fd = strcmp(argv[1], "-") ? open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644) : 1;
    if (fd < 0 || write(fd, buf, n) != n) return 1;
    if (fd != 1) close(fd);
    if (argc > 2 && !strcmp(argv[2], "linger")) {
        struct timespec l = {0, 300000000};
        nanosleep(&l, 0);
    } else if (argc > 2) {
        pause();
    }
    return 0;
}
"#;

/// One round, in the box: start each unit, wait for its stamp, print
/// `NAME NS`, wait until the unit is inactive again.
const ROUND: &str = r#"
for u in $UNITS; do
    f=/srv/out/$u
    rm -f $f
    set -- $(/srv/rootfs/stamp -); t0=$1; m0=$2
    echo "t0 $u $t0"
    systemctl start --no-block $(unit_of $u)
    i=0; while [ ! -s $f ] && [ $i -lt 2000 ]; do sleep 0.005; i=$((i+1)); done
    if [ -s $f ]; then
        read r m < $f
        fork=$(systemctl show -p ExecMainStartTimestampMonotonic --value $(unit_of $u))
        act=$(systemctl show -p ActiveEnterTimestampMonotonic --value $(unit_of $u))
        echo "$u $((r - t0)) $((fork * 1000 - m0)) $((m - fork * 1000)) $fork $(( (act - fork) * 1000 ))"
    else
        echo "$u failed"
    fi
    i=0; while [ $i -lt 2000 ]; do
        s=$(systemctl show -p ActiveState --value $(unit_of $u))
        [ $s = inactive ] || [ $s = failed ] && break
        sleep 0.005; i=$((i+1))
    done
    systemctl reset-failed $(unit_of $u) 2>/dev/null || true
done
"#;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("unit_start: a benchmark; run it with `cargo bench --bench unit_start` as root");
        return;
    }
    let rounds: usize = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    assert!(support::is_root(), "unit_start needs root");
    let tmp = tempfile::tempdir().unwrap();
    let stamp = tmp.path().join("stamp");
    let src = tmp.path().join("stamp.c");
    std::fs::write(&src, STAMP_C).unwrap();
    let st = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&stamp)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(st.success(), "gcc -static stamp.c");
    let rootfs = tmp.path().join("rootfs");
    support::busybox_rootfs(&rootfs);
    std::fs::copy(&stamp, rootfs.join("stamp")).unwrap();
    std::fs::create_dir_all(rootfs.join("out")).unwrap();
    let layout = tmp.path().join("img");
    write_image(&layout, &std::fs::read(&stamp).unwrap());

    let crun = support::have_program("crun");
    let b = SystemdBox::boot(
        BoxOptions::default()
            .with_berth()
            .file(
                "/etc/berth/containers/bench.toml",
                "rootfs = \"/srv/rootfs\"\ncommand = [\"/stamp\", \"/out/berth\", \"linger\"]\n\
                 [network]\nmode = \"none\"\n\
                 [[volume]]\nsource = \"/srv/out\"\ntarget = \"/out\"\n\
                 [service]\nrestart = \"no\"\n",
            )
            .file(
                "/etc/berth/containers/net.toml",
                "image = \"oci:/srv/img:1\"\ncommand = [\"/stamp\", \"/out/berth-net\", \"linger\"]\n\
                 [network]\npublish = [\"8080:80\"]\n\
                 [[volume]]\nsource = \"/srv/out\"\ntarget = \"/out\"\n\
                 [service]\nrestart = \"no\"\n",
            )
            .file(
                "/etc/systemd/system/bench-bare.service",
                "[Service]\nExecStart=/srv/rootfs/stamp /srv/out/bare linger\n",
            )
            .file(
                "/etc/berth/containers/copy.toml",
                "rootfs = \"/srv/rootfs\"\ncommand = [\"/stamp\", \"/out/berth-copy\", \"linger\"]\n\
                 [network]\nmode = \"none\"\n\
                 [[volume]]\nsource = \"/srv/out\"\ntarget = \"/out\"\n\
                 [security]\ncap_add = [\"SYS_PTRACE\"]\n\
                 [service]\nrestart = \"no\"\n",
            )
            .file(
                "/etc/systemd/system/bench-delegate.service",
                "[Service]\nDelegate=yes\nSlice=berth.slice\n\
                 ExecStart=/srv/rootfs/stamp /srv/out/delegate linger\n",
            )
            .file(
                "/etc/systemd/system/bench-crun.service",
                "[Service]\nDelegate=yes\n\
                 ExecStart=/usr/bin/crun --root /run/crun-bench run --bundle /srv/bundle bench-crun\n",
            ),
    )
    .unwrap_or_else(|e| panic!("box did not boot: {e}"));
    // BERTH_TRACE_START=1 cargo bench ...: the berth unit traces its start
    // steps (src/trace.rs); the last start's lines are printed at the end.
    let trace = std::env::var_os("BERTH_TRACE_START").is_some();
    if trace {
        for unit in ["bench", "net"] {
            b.write_file(
                &format!("/etc/systemd/system/berth@{unit}.service.d/90-trace.conf"),
                b"[Service]\nEnvironment=BERTH_TRACE_START=1\n",
            );
        }
    }
    b.copy_in(&rootfs, "/srv/rootfs");
    b.copy_in(&layout, "/srv/img");
    b.sh_ok("mkdir -p /srv/out /srv/bundle");
    if crun {
        write_crun_bundle(&b);
    }
    b.sh_ok("systemctl daemon-reload");
    let units = if crun {
        "bare delegate crun berth berth-copy berth-net"
    } else {
        "bare delegate berth berth-copy berth-net"
    };
    if !crun {
        println!("# crun is not installed: the crun-in-a-unit column is missing");
    }
    let prelude = format!(
        "UNITS=\"{units}\"\nunit_of() {{ case $1 in berth) echo berth@bench.service;; berth-net) echo berth@net.service;; berth-copy) echo berth@copy.service;; *) echo bench-$1.service;; esac; }}\n"
    );
    // Two rounds to warm the page cache, then the measured ones.
    let mut times: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    // When the last round asked systemd to start berth@bench (CLOCK_REALTIME ns).
    let mut last_berth_t0 = None;
    // When systemd forked its main process (CLOCK_MONOTONIC µs).
    let mut last_berth_fork_us = None;
    for round in 0..rounds + 2 {
        let out = b.sh_ok(&format!("{prelude}{ROUND}"));
        for line in out.lines() {
            if let Some(t0) = line.strip_prefix("t0 berth ") {
                last_berth_t0 = t0.trim().parse::<u64>().ok();
            }
            if line.starts_with("t0 ") {
                continue;
            }
            let mut w = line.split_whitespace();
            let Some(name) = w.next() else {
                continue;
            };
            // NAME TOTAL BEFORE-FORK AFTER-FORK (ns) FORK (µs, monotonic)
            // FORK-TO-ACTIVE (ns: READY=1 for berth's Type=notify)
            let ns: Vec<f64> = w.filter_map(|n| n.parse().ok()).collect();
            if ns.len() != 5 {
                panic!(
                    "round {round}: {line}\n{}",
                    b.journal("berth@bench.service")
                );
            }
            if round >= 2 {
                if name == "berth" {
                    last_berth_fork_us = Some(ns[3] as u64);
                }
                let parts = [
                    ("", ns[0]),
                    (":fork", ns[1]),
                    (":exec", ns[2]),
                    (":active", ns[4]),
                ];
                for (part, v) in parts {
                    times
                        .entry(format!("{name}{part}"))
                        .or_default()
                        .push(v / 1e6);
                }
            }
        }
    }
    println!(
        "# {} {}, {} cpus; {rounds} rounds, interleaved",
        chrono_free_date(),
        kernel(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let mut med = std::collections::BTreeMap::new();
    for (name, v) in times.iter_mut() {
        let m = median(v);
        med.insert(name.clone(), m);
        if !name.contains(':') {
            println!(
                "{name:>8}: median {m:6.1} ms  (min {:.1}, max {:.1})",
                v[0],
                v[v.len() - 1]
            );
        }
    }
    // systemd's fork of the main process (ExecMainStartTimestamp) splits
    // each start: the job and the unit's loading before it, and after it
    // the child's setup (cgroup, credentials, the exec) plus the runtime.
    println!("split at systemd's fork of the main process (medians, ms):");
    for name in [
        "bare",
        "delegate",
        "crun",
        "berth",
        "berth-copy",
        "berth-net",
    ] {
        if let (Some(f), Some(e)) = (
            med.get(&format!("{name}:fork")),
            med.get(&format!("{name}:exec")),
        ) {
            println!("{name:>8}: start to fork {f:5.1}, fork to the program {e:5.1}");
        }
    }
    // A Type=notify unit is active at READY=1, when `systemctl start` returns.
    if let Some(a) = med.get("berth:active") {
        println!("   berth: fork to READY=1 (the unit active) {a:5.1}");
    }
    if let (Some(bare), Some(berth)) = (med.get("bare"), med.get("berth")) {
        println!("berth@NAME over a bare unit: +{:.1} ms", berth - bare);
        if let Some(d) = med.get("delegate") {
            println!(
                "a bare Delegate=yes unit in berth.slice over a bare unit: +{:.1} ms; berth@NAME over it: +{:.1} ms",
                d - bare,
                berth - d
            );
        }
        if let Some(crun) = med.get("crun") {
            println!(
                "crun in a Delegate=yes unit over a bare unit: +{:.1} ms; berth/crun: {:.2}x",
                crun - bare,
                berth / crun
            );
        }
        if let Some(copy) = med.get("berth-copy") {
            println!(
                "berth@NAME re-executing from a protected copy (CAP_SYS_PTRACE) over the trampoline: +{:.1} ms",
                copy - berth
            );
        }
        if let (Some(net), Some(d)) = (med.get("berth-net"), med.get("delegate")) {
            println!(
                "berth@NAME from an image on a bridge, one port published, over a bare unit: +{:.1} ms; over the bare Delegate=yes unit: +{:.1} ms",
                net - bare,
                net - d
            );
        }
    }
    if trace {
        // Each start's lines: the unit's invocation, its supervisor's
        // process and the init's (src/trace.rs writes a process's lines
        // when it executes or exits, so the journal holds them per process,
        // not in time order).
        let traced = |unit: &str| {
            traced_starts(&b.sh_ok(&format!(
                "journalctl -q -o json --output-fields=MESSAGE,_SYSTEMD_INVOCATION_ID \
                 -u berth@{unit}.service | grep berth-trace:"
            )))
        };
        let mut starts = Vec::new();
        for (unit, what) in [
            ("net", "berth@net (image, bridge, published port)"),
            ("bench", "berth@bench"),
        ] {
            starts = traced(unit);
            println!(
                "{what}, each step's median time since the step before, over {} traced starts (ms):",
                starts.len()
            );
            for (step, ms) in step_medians(&starts) {
                println!("  {ms:7.3}  {step}");
            }
        }
        println!("the last berth@bench start, step by step (BERTH_TRACE_START):");
        let last = starts.last().cloned().unwrap_or_default();
        for (ms, pid, label) in &last {
            println!("  {ms:8.3} ms  [{pid}] {label}");
        }
        // That start around berth's first `main` (the trace prints both
        // clocks there): systemd's part until its fork, then the child's
        // setup in systemd and the dynamic loader until `main`.
        let field = |key: &str| {
            last.iter().find_map(|(_, _, l)| {
                l.split(key)
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse::<u64>().ok())
            })
        };
        if let (Some(t0), Some(fork_us), Some(real), Some(mono)) = (
            last_berth_t0,
            last_berth_fork_us,
            field("(realtime "),
            field("monotonic "),
        ) {
            let main_after_start = real.saturating_sub(t0) as f64 / 1e6;
            // Signed: under load systemd's parent can take its timestamp
            // after the child already reached `main`.
            let main_after_fork = (mono as i64 - (fork_us * 1000) as i64) as f64 / 1e6;
            println!(
                "that start: systemctl start to systemd's fork {:.3} ms, fork to berth's first main {:.3} ms",
                main_after_start - main_after_fork,
                main_after_fork
            );
        }
    }
    supervisor_memory(&b);
    if crun && support::have_program("conmon") {
        conmon_memory(&b);
    } else {
        println!("# conmon or crun is not installed: no conmon figures");
    }
}

/// A traced start: (ms since its first `main`, process, step), by time.
type Start = Vec<(f64, String, String)>;

/// The traced starts in `journalctl -o json` lines: per invocation of the
/// unit, the supervisor (the process whose `main (realtime …)` loads the
/// definition; `berth cleanup` has a `main` too) until it comes back from
/// the idle waiter (a plain `main`), and the container's init (PID 1 in
/// its namespace), ordered by time.
fn traced_starts(json: &str) -> Vec<Start> {
    let mut by_invocation: Vec<(String, Start)> = Vec::new();
    for line in json.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(msg), Some(inv)) = (v["MESSAGE"].as_str(), v["_SYSTEMD_INVOCATION_ID"].as_str())
        else {
            continue;
        };
        let Some(rest) = msg.split("berth-trace:").nth(1) else {
            continue;
        };
        let Some((ms, rest)) = rest.trim_start().split_once(" ms") else {
            continue;
        };
        let Some((pid, label)) = rest.trim_start().split_once("] ") else {
            continue;
        };
        let Ok(ms) = ms.trim().parse::<f64>() else {
            continue;
        };
        let entry = (
            ms,
            pid.trim_start_matches('[').to_string(),
            label.trim().to_string(),
        );
        match by_invocation.iter_mut().find(|(i, _)| i == inv) {
            Some((_, lines)) => lines.push(entry),
            None => by_invocation.push((inv.to_string(), vec![entry])),
        }
    }
    let mut starts = Vec::new();
    for (_, lines) in by_invocation {
        let supervisor = lines.iter().find_map(|(_, pid, label)| {
            let loads = lines
                .iter()
                .any(|(_, p, l)| p == pid && l == "supervise: definition loaded");
            (label.starts_with("main (realtime") && loads).then(|| pid.clone())
        });
        let Some(supervisor) = supervisor else {
            continue;
        };
        let mut start: Start = Vec::new();
        let mut resumed = false;
        for (ms, pid, label) in lines {
            if pid == supervisor && label == "main" {
                resumed = true;
            }
            if (pid == supervisor && !resumed) || pid == "1" {
                start.push((ms, pid, label));
            }
        }
        start.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        if start.len() > 2 {
            starts.push(start);
        }
    }
    starts
}

/// Each step's median time since the step before, over `starts`, in the
/// order of the first start.
fn step_medians(starts: &[Start]) -> Vec<(String, f64)> {
    let mut order: Vec<String> = Vec::new();
    let mut deltas: std::collections::HashMap<String, Vec<f64>> = Default::default();
    for s in starts {
        for w in s.windows(2) {
            let label = &w[1].2;
            if !order.contains(label) {
                order.push(label.clone());
            }
            deltas
                .entry(label.clone())
                .or_default()
                .push(w[1].0 - w[0].0);
        }
    }
    order
        .into_iter()
        .map(|l| {
            let v = deltas.get_mut(&l).unwrap();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let m = v[v.len() / 2];
            (l, m)
        })
        .collect()
}

/// An OCI layout with one layer: busybox and the stamp.
fn write_image(dir: &std::path::Path, stamp: &[u8]) {
    use reg::{Layout, Member};
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let layer = reg::tar_of(&[
        Member::Dir("bin/", 0o755, 0, 0),
        Member::File(
            "bin/busybox",
            Box::leak(busybox.into_boxed_slice()),
            0o755,
            0,
            0,
        ),
        Member::Symlink("bin/sh", "busybox"),
        Member::File(
            "stamp",
            Box::leak(stamp.to_vec().into_boxed_slice()),
            0o755,
            0,
            0,
        ),
        Member::Dir("out/", 0o755, 0, 0),
    ]);
    let mut layout = Layout::new(dir);
    let built = layout.image(
        &[layer],
        "amd64",
        serde_json::json!({"Cmd": ["/stamp", "-"]}),
    );
    layout.tag(&built, "1");
}

/// A bundle for crun: the same rootfs and stamp, a bind of /srv/out, no
/// device rules (crun 1.8.1 then raises RLIMIT_MEMLOCK, which fails without
/// CAP_SYS_RESOURCE: TESTING.md), a cgroup under the unit's own.
fn write_crun_bundle(b: &SystemdBox) {
    b.sh_ok("cd /srv/bundle && berth-runtime spec -b /srv/bundle");
    let cfg = String::from_utf8(b.read_file("/srv/bundle/config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    cfg["root"]["path"] = serde_json::json!("/srv/rootfs");
    cfg["root"]["readonly"] = serde_json::json!(true);
    cfg["process"]["terminal"] = serde_json::json!(false);
    cfg["process"]["args"] = serde_json::json!(["/stamp", "/out/crun", "linger"]);
    cfg["mounts"].as_array_mut().unwrap().push(serde_json::json!(
        {"destination": "/out", "type": "bind", "source": "/srv/out", "options": ["rbind", "rw"]}
    ));
    if let Some(r) = cfg["linux"]["resources"].as_object_mut() {
        r.remove("devices");
    }
    cfg["linux"]["cgroupsPath"] = serde_json::json!("/system.slice/bench-crun.service/container");
    b.write_file(
        "/srv/bundle/config.json",
        serde_json::to_string_pretty(&cfg).unwrap().as_bytes(),
    );
}

/// RSS and PSS (KiB) of the supervisors of five idle containers.
fn supervisor_memory(b: &SystemdBox) {
    for i in 1..=5 {
        b.write_file(
            &format!("/etc/berth/containers/idle{i}.toml"),
            b"rootfs = \"/srv/rootfs\"\ncommand = [\"/stamp\", \"/tmp/t\", \"wait\"]\n\
              [network]\nmode = \"none\"\n[service]\nrestart = \"no\"\nstop_timeout = \"1s\"\n",
        );
    }
    b.sh_ok("systemctl daemon-reload && systemctl start berth@idle1 berth@idle2 berth@idle3 berth@idle4 berth@idle5");
    std::thread::sleep(Duration::from_secs(1));
    let out = b.sh_ok(
        "for i in 1 2 3 4 5; do p=$(systemctl show -p MainPID --value berth@idle$i); \
         echo $(awk '/^Rss:/{r=$2} /^Pss:/{p=$2} /^Anonymous:/{a=$2} END{print r, p, a}' /proc/$p/smaps_rollup); done",
    );
    println!("supervisors of 5 idle containers, KiB (RSS PSS anonymous):");
    for l in out.lines() {
        println!("  {l}");
    }
    // Where the first one's memory is, by mapping: its anonymous pages,
    // and all resident ones (file-backed pages are shared with the other
    // supervisors: PSS divides them).
    for (field, what) in [("Anonymous", "anonymous"), ("Rss", "resident")] {
        let by_map = b.sh_ok(&format!(
            "p=$(systemctl show -p MainPID --value berth@idle1); \
             awk '/^[0-9a-f]+-[0-9a-f]+ / {{n = ($6 == \"\" ? \"[anon]\" : $6) \" \" $2}} \
                  /^{field}:/ {{a[n] += $2}} END {{for (k in a) if (a[k] > 0) print a[k], k}}' \
             /proc/$p/smaps | sort -rn | head -10"
        ));
        println!("  the first one's {what} KiB by mapping:");
        for l in by_map.lines() {
            println!("    {l}");
        }
    }
    b.sh_ok("systemctl stop berth@idle1 berth@idle2 berth@idle3 berth@idle4 berth@idle5");
}

/// RSS and PSS (KiB) of five conmons (Podman's monitor) waiting on idle
/// crun containers of the same rootfs and program, in the same box: conmon
/// started as Podman starts it, the container then started with `crun start`.
fn conmon_memory(b: &SystemdBox) {
    let cfg = String::from_utf8(b.read_file("/srv/bundle/config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    for i in 1..=5 {
        // The root is read-only: the stamp goes to the /out bind.
        cfg["process"]["args"] = serde_json::json!(["/stamp", format!("/out/cm{i}"), "wait"]);
        cfg["linux"]["cgroupsPath"] = serde_json::json!(format!("/bench-conmon/cm{i}"));
        b.write_file(
            &format!("/srv/cm{i}/config.json"),
            serde_json::to_string_pretty(&cfg).unwrap().as_bytes(),
        );
    }
    let out = b.sh_ok(
        "mkdir -p /run/cm-exit /run/cm-sock
         for i in 1 2 3 4 5; do
           conmon --api-version 1 -c cm$i -u cm$i -n cm$i -r /usr/bin/crun -b /srv/cm$i \
             -p /srv/cm$i/pid --exit-dir /run/cm-exit -l k8s-file:/srv/cm$i/log \
             --socket-dir-path /run/cm-sock --conmon-pidfile /srv/cm$i/conmon.pid \
             --runtime-arg --root=/run/crun-cm >/dev/null 2>&1
           n=0; while [ ! -e /run/crun-cm/cm$i/status ] && [ $n -lt 400 ]; do sleep 0.005; n=$((n+1)); done
           crun --root /run/crun-cm start cm$i
         done
         sleep 1
         for i in 1 2 3 4 5; do p=$(cat /srv/cm$i/conmon.pid); \
           echo $(awk '/^Rss:/{r=$2} /^Pss:/{p=$2} /^Anonymous:/{a=$2} END{print r, p, a}' /proc/$p/smaps_rollup); done
         for i in 1 2 3 4 5; do crun --root /run/crun-cm kill cm$i KILL; done
         for i in 1 2 3 4 5; do n=0; until crun --root /run/crun-cm delete -f cm$i 2>/dev/null || [ $n -gt 100 ]; do sleep 0.01; n=$((n+1)); done; done",
    );
    println!("conmon 2.1.6 waiting on 5 idle crun containers, KiB (RSS PSS anonymous):");
    for l in out.lines() {
        println!("  {l}");
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn chrono_free_date() -> String {
    Command::new("date")
        .args(["-u", "+%FT%TZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
