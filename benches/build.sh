#!/bin/bash
# Build benchmark: `berth build` vs `podman build` (and `buildah bud` when
# installed) of the same Containerfile over the same context: 2000 small
# files in 20 directories and one incompressible 50 MB file, on a busybox
# base, with two RUN steps (issue 17's shape):
#
#   FROM oci-archive:BASE          busybox, made by `berth import` + `save`
#   COPY small/ /small/
#   RUN ls -R /small | wc -l > /count
#   COPY big.bin /big.bin
#   RUN sha256sum /big.bin > /big.sum
#   ENV APP=bench
#   CMD ["/big.bin"]
#
# Cold: each round builds into a fresh, empty store (berth: its own storage
# root; podman/buildah: their own --root/--runroot), so no layer is cached.
# Cached: the same build again into the store the cold round filled (every
# step a cache hit, no RUN executed). Rounds interleave the tools; medians
# and ratios. Stores are made fresh, never deleted between timed steps (the
# root ext4 has no journal: creating files shortly after a big `rm -rf` is
# slow, TESTING.md), and removed at the end.
#
# Podman and buildah run RUN with `--isolation chroot` (their OCI isolation
# wants cgroups set up for them), `--cgroup-manager cgroupfs` and overlay
# storage on a real directory (/var/tmp); berth runs RUN in its own runtime
# with its default confinement and no network.
#
# Usage: benches/build.sh [ROUNDS]   (root; needs podman; a release berth:
#   cargo build --release, or BERTH=/path/to/berth)
set -euo pipefail
ROUNDS=${1:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BERTH=${BERTH:-$HERE/target/release/berth}
[ -x "$BERTH" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v podman >/dev/null || { echo "needs podman" >&2; exit 1; }
W=$(mktemp -d /var/tmp/berth-build-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT

# The context.
C=$W/ctx
for d in $(seq 20); do
    mkdir -p "$C/small/d$d"
    for f in $(seq 100); do
        printf 'file %s of directory %s\n' "$f" "$d" > "$C/small/d$d/f$f.txt"
    done
done
head -c 50000000 /dev/urandom > "$C/big.bin"
# The base: busybox as an OCI archive both tools read.
mkdir -p "$W/bb/bin"
cp /bin/busybox "$W/bb/bin/busybox"
ln -s busybox "$W/bb/bin/sh"
tar -C "$W/bb" -cf "$W/bb.tar" .
"$BERTH" import --storage-root "$W/base-store" "$W/bb.tar" localhost/bb:1 >/dev/null 2>&1 &&
    "$BERTH" save --storage-root "$W/base-store" -o "$W/base.tar" localhost/bb:1 >/dev/null 2>&1 ||
    { echo "berth import/save of the busybox base failed" >&2; exit 1; }
cat > "$C/Containerfile" <<EOF
FROM oci-archive:$W/base.tar
COPY small/ /small/
RUN ls -R /small | wc -l > /count
COPY big.bin /big.bin
RUN sha256sum /big.bin > /big.sum
ENV APP=bench
CMD ["/big.bin"]
EOF
sync

ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

berth_build() { # STORE
    mkdir -p "$1/root/etc/berth"
    printf '[storage]\nroot = "%s/store"\n' "$1" > "$1/root/etc/berth/berth.toml"
    BERTH_ROOT=$1/root "$BERTH" build -q -t localhost/bench:1 "$C"
}
podman_build() { # STORE
    podman --root "$1/storage" --runroot "$1/run" --storage-driver overlay \
        --cgroup-manager cgroupfs build --isolation chroot --layers -q -t localhost/bench:1 "$C"
}
buildah_build() { # STORE
    buildah --root "$1/storage" --runroot "$1/run" --storage-driver overlay \
        bud --isolation chroot --layers -q -t localhost/bench:1 "$C"
}
TOOLS=(berth podman)
command -v buildah >/dev/null && TOOLS+=(buildah)

declare -A COLD CACHED
for i in $(seq "$ROUNDS"); do
    for t in "${TOOLS[@]}"; do
        s=$W/$t-$i
        mkdir -p "$s"
        COLD[$t]+="$(ms "${t}_build" "$s") "
        CACHED[$t]+="$(ms "${t}_build" "$s") "
    done
done

for t in "${TOOLS[@]}"; do
    c=$(printf '%s\n' ${COLD[$t]} | median); k=$(printf '%s\n' ${CACHED[$t]} | median)
    printf '%-8s cold: %s ms, median %s ms; cached: %s ms, median %s ms\n' "$t" "${COLD[$t]% }" "$c" "${CACHED[$t]% }" "$k"
    eval "MED_COLD_$t=$c MED_CACHED_$t=$k"
done
for t in "${TOOLS[@]}"; do
    [ "$t" = berth ] && continue
    eval "oc=\$MED_COLD_$t ok=\$MED_CACHED_$t"
    awk -v b="$MED_COLD_berth" -v o="$oc" -v bk="$MED_CACHED_berth" -v ok="$ok" -v t="$t" \
        'BEGIN {printf "ratio berth/%s: cold %.2f, cached %.2f\n", t, b / o, bk / ok}'
done
echo "on: $(nproc) cores, $(uname -r), $(podman --version)$(command -v buildah >/dev/null && echo ", $(buildah --version)"), berth $("$BERTH" version 2>/dev/null | head -1)"
