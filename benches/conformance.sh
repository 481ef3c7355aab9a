#!/bin/sh
# OCI runtime conformance: opencontainers/runtime-tools validation suite at
# commit 0105384 (the one Debian packages), run against berth-runtime and crun.
#
# The suite is built into /tmp (never committed) with Debian's golang-go,
# offline from the tree's own vendor/ (GOFLAGS=-mod=vendor GOPROXY=off).
# Source: a git dir of the upstream repository, RTOOLS_GIT (default: the
# snapshot the `fetch` tool leaves at /work/.mirror/opencontainers+runtime-tools/repo).
#
# Every program runs with a timeout inside `unshare --mount --pid --net
# --cgroup --uts --ipc --fork` in a fresh child cgroup of
# /sys/fs/cgroup/unified with a pure cgroup2 mounted at /sys/fs/cgroup
# (crun refuses the host's hybrid layout; TESTING.md). A program passes when it
# exits 0 with no "not ok" line, and for the programs with no test points
# (a "1..0" plan: hooks, prestart, poststart, poststart_fail, poststop_fail
# report a failure only as a YAML diagnostic) no non-empty "error". Prints both pass counts; per-program results
# go to $BUILD/results-RUNTIME.txt.
#   cargo build && sh benches/conformance.sh
set -eu

COMMIT=0105384
HERE=$(cd "$(dirname "$0")/.." && pwd)
BERTH=${BERTH:-$HERE/target/debug/berth}
SRC=${RTOOLS_GIT:-/work/.mirror/opencontainers+runtime-tools/repo}
BUILD=${BUILD:-/tmp/berth-conformance}
TIMEOUT=${TIMEOUT:-60}

if [ "${BERTH_CONF_INNER:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
    command -v go >/dev/null || { echo "needs Debian's golang-go (apt-get install -y golang-go)" >&2; exit 1; }
    [ -x "$BERTH" ] || { echo "build berth first (cargo build)" >&2; exit 1; }
    if [ ! -x "$BUILD/runtimetest" ]; then
        rm -rf "$BUILD"
        mkdir -p "$BUILD"
        git --git-dir="$SRC" archive "$COMMIT" | tar x -C "$BUILD"
        (cd "$BUILD" && GOFLAGS=-mod=vendor GOPROXY=off GO111MODULE=on GOCACHE="$BUILD/.gocache" \
            make runtimetest validation-executables >"$BUILD/build.log" 2>&1) \
            || { tail -20 "$BUILD/build.log" >&2; exit 1; }
    fi
    mkdir -p "$BUILD/bin"
    ln -sf "$BERTH" "$BUILD/bin/berth-runtime"
    CG=/sys/fs/cgroup/unified/berth-conformance-$$
    mkdir "$CG"
    cleanup() {
        echo 1 > "$CG/cgroup.kill" 2>/dev/null || true
        sleep 0.3
        find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    }
    trap cleanup EXIT
    sh -c "echo \$\$ > $CG/cgroup.procs; exec env BERTH_CONF_INNER=1 BUILD=$BUILD TIMEOUT=$TIMEOUT unshare --mount --pid --net --cgroup --uts --ipc --fork --propagation private sh $0"
    exit $?
fi

# Inside the box.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t proc proc /proc
mount -t tmpfs tmpfs /run
cd "$BUILD"
# The suite's bundles (and what a killed program leaves) stay inside $BUILD.
export TMPDIR="$BUILD/tmp"
rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
PROGRAMS=$(find validation -name '*.t' -type f | sort)
TOTAL=$(echo "$PROGRAMS" | wc -l)
for RT in "$BUILD/bin/berth-runtime" crun; do
    NAME=$(basename "$RT")
    OUT="$BUILD/results-$NAME.txt"
    : > "$OUT"
    PASS=0
    for P in $PROGRAMS; do
        LOG="$BUILD/logs/$NAME/$(basename "$P" .t).log"
        mkdir -p "$(dirname "$LOG")"
        if RUNTIME=$RT timeout "$TIMEOUT" "./$P" >"$LOG" 2>&1 && ! grep -q '^not ok' "$LOG" \
            && ! { grep -q '^1\.\.0$' "$LOG" && grep -q '"error": "[^"]' "$LOG"; }; then
            PASS=$((PASS + 1))
            echo "pass $P" >> "$OUT"
        else
            echo "FAIL $P" >> "$OUT"
        fi
    done
    echo "$NAME: $PASS of $TOTAL programs with no failing point (details: $OUT)"
done
