#!/bin/bash
# Pull benchmark: berth vs skopeo + umoci, and berth's unpack vs `tar xzf`.
#
# Builds a 5-layer image of ~120 MB (random and base64 text files, so gzip
# has real work), pushes it to a docker-registry on 127.0.0.1 (a free port,
# killed by PID at exit), then interleaves ROUNDS rounds of:
#   berth pull REF                     (release build, into an empty store)
#   skopeo copy REF oci:DIR + umoci unpack
# and of:
#   berth pull oci:LAYOUT              (copy + verify + unpack, layers in parallel)
#   tar xzf of each layer blob         (serial, and all layers at once)
# Prints medians and ratios, with the hardware and versions they were taken on.
#
# Usage: benches/pull.sh [ROUNDS]   (root; needs docker-registry, skopeo, umoci)
# Fresh directories per step, deleted only at the end: on this machine's
# journal-less ext4, creating files right after a large rm -rf is several
# times slower (shared/TESTING.md).
set -euo pipefail

ROUNDS=${1:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BERTH=${BERTH:-$HERE/target/release/berth}
W=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
REG_PID=
cleanup() {
    [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

for p in docker-registry skopeo umoci tar gzip sha256sum; do
    command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 1; }
done
if [ ! -x "$BERTH" ]; then
    (cd "$HERE" && cargo build --release)
fi

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

# ---------------------------------------------------------------- the image
echo "building the image in $W ..." >&2
mkdir -p "$W/src" "$W/layout/blobs/sha256"
mk() { mkdir -p "$W/src/$1"; }
mk l1/bin; cp /bin/busybox "$W/src/l1/bin/"; ln -s busybox "$W/src/l1/bin/sh"
mk l1/etc
for i in $(seq 1 2000); do head -c 3000 /dev/urandom | base64 > "$W/src/l1/etc/f$i"; done
mk l2/opt/bin
for i in $(seq 1 10); do head -c 3000000 /dev/urandom > "$W/src/l2/opt/bin/blob$i"; done
mk l3/usr/share/doc
for i in $(seq 1 400); do head -c 75000 /dev/urandom | base64 > "$W/src/l3/usr/share/doc/t$i.txt"; done
mk l4/var/lib/many
for d in $(seq 1 50); do
    mkdir -p "$W/src/l4/var/lib/many/d$d"
    for i in $(seq 1 100); do head -c 3700 /dev/urandom | base64 > "$W/src/l4/var/lib/many/d$d/f$i"; done
done
mk l5/srv
for i in $(seq 1 10); do
    { head -c 1000000 /dev/urandom; head -c 1000000 /dev/zero; } > "$W/src/l5/srv/mix$i"
done

diff_ids=()
layers=()
total_tar=0
for l in l1 l2 l3 l4 l5; do
    tar --sort=name --numeric-owner --owner=0 --group=0 -C "$W/src/$l" -cf "$W/$l.tar" .
    d=$(sha256sum "$W/$l.tar" | cut -d' ' -f1)
    total_tar=$((total_tar + $(stat -c %s "$W/$l.tar")))
    gzip -6 -c "$W/$l.tar" > "$W/$l.tgz"
    b=$(sha256sum "$W/$l.tgz" | cut -d' ' -f1)
    s=$(stat -c %s "$W/$l.tgz")
    mv "$W/$l.tgz" "$W/layout/blobs/sha256/$b"
    rm "$W/$l.tar"
    diff_ids+=("\"sha256:$d\"")
    layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$b\",\"size\":$s}")
done
join() { local IFS=,; echo "$*"; }
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$(join "${diff_ids[@]}")" > "$W/config.json"
cd_=$(sha256sum "$W/config.json" | cut -d' ' -f1); cs=$(stat -c %s "$W/config.json")
mv "$W/config.json" "$W/layout/blobs/sha256/$cd_"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$cd_" "$cs" "$(join "${layers[@]}")" > "$W/manifest.json"
md=$(sha256sum "$W/manifest.json" | cut -d' ' -f1); msz=$(stat -c %s "$W/manifest.json")
mv "$W/manifest.json" "$W/layout/blobs/sha256/$md"
echo '{"imageLayoutVersion":"1.0.0"}' > "$W/layout/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$md" "$msz" > "$W/layout/index.json"
rm -rf "$W/src"
gz_total=$(du -cb "$W"/layout/blobs/sha256/* | tail -1 | cut -f1)

# ---------------------------------------------------------------- registry
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$W/registry.yml" >/dev/null 2>&1 &
REG_PID=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
REF=127.0.0.1:$PORT/bench/img:1
skopeo copy --quiet --dest-tls-verify=false "oci:$W/layout:bench" "docker://$REF"
mkdir -p "$W/hostroot/etc/berth"
printf '[[registry]]\nhost = "127.0.0.1:%s"\ninsecure = true\n' "$PORT" > "$W/hostroot/etc/berth/berth.toml"

# ---------------------------------------------------------------- rounds
berth_pull() {
    BERTH_ROOT=$W/hostroot "$BERTH" pull -q --storage-root "$1" "$REF" >/dev/null
}
skopeo_umoci() {
    mkdir -p "$1"
    skopeo copy --quiet --src-tls-verify=false "docker://$REF" "oci:$1/oci:img"
    umoci unpack --image "$1/oci:img" "$1/bundle" >/dev/null
}
berth_unpack() {
    "$BERTH" pull -q --storage-root "$1" "oci:$W/layout:bench" >/dev/null
}
tar_serial() {
    local i=0
    for b in "$W"/layout/blobs/sha256/*; do
        [ "$(stat -c %s "$b")" -gt 100000 ] || continue
        i=$((i + 1)); mkdir -p "$1/$i"; tar -xzf "$b" -C "$1/$i"
    done
}
tar_parallel() {
    local i=0 pids=()
    for b in "$W"/layout/blobs/sha256/*; do
        [ "$(stat -c %s "$b")" -gt 100000 ] || continue
        i=$((i + 1)); mkdir -p "$1/$i"; tar -xzf "$b" -C "$1/$i" &
        pids+=($!)
    done
    wait "${pids[@]}" # not a bare wait: the registry is a child too
}

declare -A T
run() { # name dir
    sync; sleep 1
    local t0 t1; t0=$(now); "$1" "$2"; t1=$(now)
    T[$1]+="$(ms "$t0" "$t1") "
}
for r in $(seq 1 "$ROUNDS"); do
    echo "round $r/$ROUNDS" >&2
    if (( r % 2 )); then
        run berth_pull "$W/r$r-berth"; run skopeo_umoci "$W/r$r-skopeo"
        run berth_unpack "$W/r$r-bu"; run tar_serial "$W/r$r-ts"; run tar_parallel "$W/r$r-tp"
    else
        run skopeo_umoci "$W/r$r-skopeo"; run berth_pull "$W/r$r-berth"
        run tar_parallel "$W/r$r-tp"; run tar_serial "$W/r$r-ts"; run berth_unpack "$W/r$r-bu"
    fi
done

med() { tr ' ' '\n' <<<"${T[$1]}" | grep . | median; }
bp=$(med berth_pull); su=$(med skopeo_umoci); bu=$(med berth_unpack); ts=$(med tar_serial); tp=$(med tar_parallel)
mb=$((total_tar / 1000000)); gzmb=$((gz_total / 1000000))

echo
echo "## berth pull benchmark ($(date -u +%F))"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r), $(findmnt -no FSTYPE -T "$W") at $W"
echo "versions: $("$BERTH" --version), $(skopeo --version), $(umoci --version), $(tar --version | head -1), $(docker-registry --version | cut -d' ' -f2-)"
echo "image: 5 layers, $mb MB uncompressed, $gzmb MB gzip; $ROUNDS interleaved rounds, medians"
echo
echo "| step | median ms | all rounds (ms) |"
echo "| --- | ---: | --- |"
echo "| berth pull (registry → unpacked layers) | $bp | ${T[berth_pull]}|"
echo "| skopeo copy + umoci unpack | $su | ${T[skopeo_umoci]}|"
echo "| berth pull oci:DIR (verify + unpack) | $bu | ${T[berth_unpack]}|"
echo "| tar xzf, layers one after another | $ts | ${T[tar_serial]}|"
echo "| tar xzf, all layers at once | $tp | ${T[tar_parallel]}|"
echo
awk -v a="$su" -v b="$bp" 'BEGIN {printf "pull: berth is %.2fx faster than skopeo+umoci\n", a/b}'
awk -v t="$ts" -v p="$tp" -v b="$bu" -v mb="$mb" 'BEGIN {printf "unpack: berth %.0f MB/s, tar serial %.0f MB/s, tar parallel %.0f MB/s (uncompressed bytes); berth/tar-serial time ratio %.2f\n", mb*1000/b, mb*1000/t, mb*1000/p, b/t}'
