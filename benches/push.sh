#!/bin/bash
# Push benchmark: `berth push` vs `skopeo copy` of the same ~100 MB image
# (one incompressible 100 MB layer, gzip) to a docker-registry on loopback.
#
# Runs itself in a network namespace of its own (`unshare --net`, lo up), so
# the registry listens nowhere else, and a mount namespace whose
# /var/lib/containers (skopeo's blob-info cache) is a tmpfs. Each round
# pushes into a fresh, empty registry, interleaved:
#   berth push IMAGE 127.0.0.1:PORT/b/berthN:1      (from berth's store)
#   skopeo copy oci:LAYOUT docker://127.0.0.1:PORT/b/skopeoN:1
# then one more berth push of the same image to the first repository (every
# blob is already there: HEAD only). Prints medians and the ratio.
#
# Usage: benches/push.sh [ROUNDS]   (root; needs docker-registry, skopeo)
set -euo pipefail
if [ -z "${BERTH_BENCH_INNER:-}" ]; then
    exec env BERTH_BENCH_INNER=1 unshare --net --mount --propagation private "$0" "$@"
fi
ip link set lo up
[ -d /var/lib/containers ] && mount -t tmpfs tmpfs /var/lib/containers
ROUNDS=${1:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BERTH=${BERTH:-$HERE/target/release/berth}
W=$(mktemp -d /var/tmp/berth-push-bench.XXXXXX)
REG_PID=
trap '[ -n "$REG_PID" ] && kill $REG_PID; rm -rf "$W"' EXIT
mkdir -p "$W/rootfs" "$W/root/etc/berth"
head -c 100000000 /dev/urandom > "$W/rootfs/blob"
tar -C "$W/rootfs" -cf "$W/rootfs.tar" .
PORT=5999
# A fresh, empty registry for each push, so that no tool can mount a blob
# an earlier round left (skopeo remembers where blobs are, in its cache).
fresh_registry() {
    [ -n "$REG_PID" ] && { kill $REG_PID; wait $REG_PID 2>/dev/null || true; }
    local d; d=$(mktemp -d "$W/data.XXXXXX")
    printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' "$d" $PORT > "$W/reg.yml"
    docker-registry serve "$W/reg.yml" 2>/dev/null & REG_PID=$!
    until curl -s "127.0.0.1:$PORT/v2/" >/dev/null; do sleep 0.05; done
}
printf '[storage]\nroot = "%s/store"\n[[registry]]\nhost = "127.0.0.1:%s"\ninsecure = true\n' "$W" $PORT > "$W/root/etc/berth/berth.toml"
export BERTH_ROOT=$W/root
"$BERTH" import "$W/rootfs.tar" bench/big:1 >/dev/null
"$BERTH" save -o "$W/big.tar" bench/big:1 2>/dev/null
mkdir "$W/layout" && tar -C "$W/layout" -xf "$W/big.tar"
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
B=(); S=()
for i in $(seq "$ROUNDS"); do
    fresh_registry
    B+=("$(ms "$BERTH" push -q bench/big:1 127.0.0.1:$PORT/b/berth$i:1)")
    fresh_registry
    S+=("$(ms skopeo copy -q --dest-tls-verify=false oci:$W/layout:docker.io/bench/big:1 docker://127.0.0.1:$PORT/b/skopeo$i:1)")
done
"$BERTH" push -q bench/big:1 127.0.0.1:$PORT/b/again:1 >/dev/null 2>&1
AGAIN=$(ms "$BERTH" push -q bench/big:1 127.0.0.1:$PORT/b/again:1)
bm=$(printf '%s\n' "${B[@]}" | median); sm=$(printf '%s\n' "${S[@]}" | median)
echo "berth push:  ${B[*]} ms, median $bm ms"
echo "skopeo copy: ${S[*]} ms, median $sm ms"
echo "berth push again (all blobs there): $AGAIN ms"
awk -v b="$bm" -v s="$sm" 'BEGIN {printf "ratio berth/skopeo: %.2f\n", b / s}'
echo "on: $(nproc) cores, $(uname -r), $(skopeo --version), berth $("$BERTH" version 2>/dev/null | head -1)"
