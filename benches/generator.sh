#!/bin/bash
# Time the systemd generator (`berth-generator`) over 100, 500 and 1000
# definitions, each with two drop-ins (one vendor, one admin), to show it stays
# linear and fast enough to run at every boot (goal: < 50 ms for 1000).
#
# usage: benches/generator.sh [BERTH_BINARY]   (default target/release/berth;
#        build it first with `cargo build --release`)
# needs: hyperfine
#
# Inputs live under /tmp (page-cached after the warm-up, as after early boot);
# output goes to /dev/shm when available, a tmpfs like the /run/systemd/generator
# directory systemd gives generators. Nothing is deleted between timed runs
# except the output tree, in --prepare (not timed).
set -euo pipefail

BIN=$(realpath "${1:-target/release/berth}")
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine is not installed" >&2; exit 1; }

work=$(mktemp -d /tmp/berth-genbench.XXXXXX)
out_base=/dev/shm
[ -d "$out_base" ] && [ -w "$out_base" ] || out_base=$work
out=$(mktemp -d "$out_base/berth-genbench-out.XXXXXX")
trap 'rm -rf "$work" "$out"' EXIT
ln -s "$BIN" "$work/berth-generator"

make_root() { # make_root DIR N
    local root=$1 n=$2 i
    local etc=$root/etc/berth/containers usr=$root/usr/lib/berth/containers
    mkdir -p "$etc" "$usr" "$root/etc/berth/networks"
    printf 'subnet = "10.90.0.0/24"\n' > "$root/etc/berth/networks/back.toml"
    for ((i = 0; i < n; i++)); do
        local dir=$etc; ((i % 2)) && dir=$usr   # half vendor, half admin
        cat > "$dir/c$i.toml" <<TOML
image = "registry.example.org/library/app$i:1.$i"
command = ["/usr/bin/app", "--port", "80"]
hostname = "c$i"
environment = { TZ = "UTC", ID = "$i" }
[network]
networks = ["default", "back"]
publish = ["$((10000 + i)):80"]
[[volume]]
source = "data$i"
target = "/data"
[[tmpfs]]
target = "/tmp"
size = "64M"
[resources]
memory = "256M"
cpus = 0.5
[security]
cap_drop = ["ALL"]
cap_add = ["NET_BIND_SERVICE"]
[health]
command = ["/usr/bin/app", "--check"]
interval = "30s"
[service]
restart = "on-failure"
wanted_by = ["multi-user.target"]
$( ((i > 0)) && echo "requires = [\"c$((i - 1))\"]" )
[[secret]]
credential = "token$i"
TOML
        mkdir -p "$usr/c$i.toml.d" "$etc/c$i.toml.d"
        printf '[resources]\npids = 100\n' > "$usr/c$i.toml.d/10-vendor.conf.toml"
        printf '[service]\nstop_timeout = "20s"\n' > "$etc/c$i.toml.d/20-admin.conf.toml"
    done
}

echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# $("$BIN" version), $(hyperfine --version)"
for n in 100 500 1000; do
    make_root "$work/root-$n" "$n"
done
sleep 2 # let writeback of the fixture settle before timing (TESTING.md: ext4 without journal)
# The floor on this machine: only reading the same files, no parsing or writing.
hyperfine -N --warmup 3 --runs 20 --command-name "floor: read the 1000-definition tree (find + cat)" \
    "find $work/root-1000 -type f -name *.toml -exec cat {} +" | grep -E 'Time|Range|floor'
for n in 100 500 1000; do
    export BERTH_ROOT=$work/root-$n
    "$work/berth-generator" "$out/check-$n"
    made=$(find "$out/check-$n" -name 50-berth-generated.conf | wc -l)
    [ "$made" -eq "$n" ] || { echo "generated $made of $n definitions" >&2; exit 1; }
    hyperfine -N --warmup 3 --runs 20 --export-json "$work/h-$n.json" \
        --prepare "rm -rf $out/run-$n" \
        --command-name "generator $n definitions" \
        "$work/berth-generator $out/run-$n" | grep -E 'Time|Range|generator'
done
# Wall time on a shared machine includes waiting for a CPU; User + System is
# the generator's own cost. Compare both with the floor above.
