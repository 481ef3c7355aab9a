#!/bin/sh
# Benchmark: cold `run` of a busybox bundle running /bin/true (create, start,
# wait for exit, delete) with berth-runtime (release build), crun and runc,
# interleaved in one run; medians and ratios. Then the RSS of the process that
# waits for an idle container (`run` of `sleep`).
#
# Needs root. Everything happens inside `unshare --mount --pid --net --cgroup
# --uts --ipc --fork` placed in a fresh child cgroup of
# /sys/fs/cgroup/unified with a cgroup2 mount of it at /sys/fs/cgroup
# (TESTING.md), removed at the end. Not a timed test; run by hand:
#   cargo build --release && sh benches/runtime.sh [ITERATIONS]
# BERTH_COMPARE=/path/to/another/berth adds a row for that build (e.g. the
# one before a change), interleaved with the rest.
set -eu

ITER=${1:-50}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BERTH=${BERTH:-$HERE/target/release/berth}
[ -x "$BERTH" ] || { echo "build first: cargo build --release" >&2; exit 1; }

if [ "${BERTH_BENCH_INNER:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
    WORK=$(mktemp -d /tmp/berth-bench-XXXXXX)
    CG=/sys/fs/cgroup/unified/berth-bench-$$
    mkdir "$CG"
    cleanup() {
        echo 1 > "$CG/cgroup.kill" 2>/dev/null || true
        sleep 0.2
        find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        rm -rf "$WORK"
    }
    trap cleanup EXIT
    mkdir -p "$WORK/bin" "$WORK/bundle/rootfs"
    ln -s "$BERTH" "$WORK/bin/berth-runtime"
    if [ -n "${BERTH_COMPARE:-}" ]; then
        mkdir -p "$WORK/bin-compare"
        ln -s "$BERTH_COMPARE" "$WORK/bin-compare/berth-runtime"
    fi
    R=$WORK/bundle/rootfs
    mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/etc"
    cp /bin/busybox "$R/bin/busybox"
    for a in sh true sleep; do ln -s busybox "$R/bin/$a"; done
    "$WORK/bin/berth-runtime" spec -b "$WORK/bundle"
    python3 - "$WORK/bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
# No device rules: crun 1.8.1 then raises RLIMIT_MEMLOCK, which fails on a
# host without CAP_SYS_RESOURCE (TESTING.md); the same config for all three.
c["linux"]["resources"].pop("devices", None)
json.dump(c, open(p, "w"), indent=1)
EOF
    sh -c "echo \$\$ > $CG/cgroup.procs; exec env BERTH_BENCH_INNER=1 WORK=$WORK unshare --mount --pid --net --cgroup --uts --ipc --fork --propagation private sh $0 $ITER"
    exit $?
fi

# Inside the box.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t proc proc /proc
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cpus, $(grep 'model name' /proc/cpuinfo | head -1 | cut -d: -f2 | sed 's/^ //')"
echo "# berth-runtime $("$WORK/bin/berth-runtime" --version | head -1), $(crun --version | head -1), $(runc --version | head -1)"
python3 - "$ITER" "$WORK" <<'EOF'
import os, statistics, subprocess, sys, time
iters, work = int(sys.argv[1]), sys.argv[2]
bundle = os.path.join(work, "bundle")
rts = {
    "berth-runtime": [os.path.join(work, "bin/berth-runtime"), "--root", os.path.join(work, "state-berth")],
    "crun": ["crun", "--root", os.path.join(work, "state-crun")],
    "runc": ["runc", "--root", os.path.join(work, "state-runc")],
}
compare = os.path.join(work, "bin-compare/berth-runtime")
if os.path.exists(compare):
    rts["berth-compare"] = [compare, "--root", os.path.join(work, "state-berth-compare")]
times = {k: [] for k in rts}
failures = {k: 0 for k in rts}
order = list(rts.items())
for i in range(iters + 3):
    # Each runtime goes first in turn: the first of a round came out a few
    # ms slower whichever it was (the previous round's deletes settling).
    k = i % len(order)
    for name, base in order[k:] + order[:k]:
        cid = f"b{i}"
        t0 = time.perf_counter()
        r = subprocess.run(base + ["run", "--bundle", bundle, cid], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t0
        # run deletes the container itself; make sure nothing is left either way.
        subprocess.run(base + ["delete", "--force", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            failures[name] += 1
            if failures[name] == 1:
                print(f"# {name} failed: {r.stderr.decode(errors='replace').strip()[:300]}")
            continue
        if i >= 3:  # warm-up rounds are not counted
            times[name].append(dt * 1000)
base = statistics.median(times["berth-runtime"]) if times["berth-runtime"] else float("nan")
print(f"run of /bin/true, create+start+wait+delete, {iters} interleaved iterations")
print(f"{'runtime':<15}{'median ms':>10}{'p10':>8}{'p90':>8}{'vs berth':>10}{'failed':>8}")
for name, t in times.items():
    if not t:
        print(f"{name:<15}{'-':>10}{'-':>8}{'-':>8}{'-':>10}{failures[name]:>8}")
        continue
    t.sort()
    med = statistics.median(t)
    p10, p90 = t[len(t) // 10], t[(len(t) * 9) // 10]
    print(f"{name:<15}{med:>10.2f}{p10:>8.2f}{p90:>8.2f}{med / base:>9.2f}x{failures[name]:>8}")

# RSS of the process that stays with an idle container.
import json
cfg = json.load(open(os.path.join(bundle, "config.json")))
cfg["process"]["args"] = ["sleep", "3"]
json.dump(cfg, open(os.path.join(bundle, "config.json"), "w"))
print("RSS of the foreground `run` process while the container idles (VmRSS, KiB)")
for name, base in rts.items():
    p = subprocess.Popen(base + ["run", "--bundle", bundle, "idle"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    rss = "?"
    try:
        for line in open(f"/proc/{p.pid}/status"):
            if line.startswith("VmRSS:"):
                rss = line.split()[1]
    except OSError:
        pass
    p.wait()
    subprocess.run(base + ["delete", "--force", "idle"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"{name:<15}{rss:>10}")
EOF
