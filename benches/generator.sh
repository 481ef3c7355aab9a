#!/bin/bash
# Time the systemd generator (`berth-generator`) over 100, 500 and 1000
# definitions, each with two drop-ins (one vendor, one admin), to show it stays
# linear and fast enough to run at every boot (goal: < 50 ms for 1000).
#
# usage: benches/generator.sh [BERTH_BINARY]   (default target/release/berth;
#        build it first with `cargo build --release`)
# needs: hyperfine
#
# Reports, per size: wall time (median, mean ± σ, min), CPU time (user +
# system, the generator's own cost: on a shared machine wall time includes
# waiting for a CPU), the per-definition slope between sizes, and the floor:
# `xargs cat` of exactly the files the generator reads, nothing parsed or
# written (two process starts, where the generator has one).
#
# Inputs live under /tmp (page-cached after the warm-up, as after early boot);
# output goes to /dev/shm when available, a tmpfs like the /run/systemd/generator
# directory systemd gives generators. Nothing is deleted between timed runs
# except the output tree, in --prepare (not timed).
set -euo pipefail

BIN=$(realpath "${1:-target/release/berth}")
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine is not installed" >&2; exit 1; }
RUNS=${RUNS:-30}

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

echo "# berth generator benchmark, $(date -u +%FT%TZ)"
echo "# $(uname -srm), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine inflates wall time, not CPU time)"
echo "# $("$BIN" version), $(hyperfine --version), $RUNS runs each after 3 warm-ups"
echo "# input: N definitions (half /etc, half /usr/lib) x 2 drop-ins, on $(df --output=fstype /tmp | tail -1); output on $(df --output=fstype "$out" | tail -1)"
for n in 100 500 1000; do
    make_root "$work/root-$n" "$n"
    # The files the generator reads, for the floor.
    find "$work/root-$n" -type f -name '*.toml' | sort > "$work/files-$n"
done
sleep 2 # let writeback of the fixture settle before timing (TESTING.md: ext4 without journal)

# bench NAME PREPARE COMMAND: one hyperfine run, its CSV row kept.
bench() {
    local name=$1 prepare=$2 cmd=$3
    hyperfine -N --warmup 3 --runs "$RUNS" --style none --prepare "$prepare" \
        --export-csv "$work/h.csv" --command-name "$name" "$cmd" >/dev/null 2>>"$work/warnings"
    # command,mean,stddev,median,user,system,min,max (seconds)
    tail -n 1 "$work/h.csv" >> "$work/all.csv"
}
: > "$work/all.csv"
for n in 100 500 1000; do
    export BERTH_ROOT=$work/root-$n
    "$work/berth-generator" "$out/check-$n"
    made=$(find "$out/check-$n" -name 50-berth-generated.conf | wc -l)
    [ "$made" -eq "$n" ] || { echo "generated $made of $n definitions" >&2; exit 1; }
    bench "generator $n" "rm -rf $out/run-$n" "$work/berth-generator $out/run-$n"
    # xargs: the list is too long for one hyperfine argument; one cat reads all.
    bench "floor $n (cat $(wc -l < "$work/files-$n") files)" "true" "xargs -a $work/files-$n cat"
done

awk -F, '
    function ms(s) { return s * 1000 }
    BEGIN {
        printf "\n%-28s %9s %16s %8s %9s %9s %9s\n", "", "median", "mean ± σ", "min", "user", "system", "CPU"
    }
    {
        printf "%-28s %6.1f ms %7.1f ± %4.1f ms %5.1f ms %6.1f ms %6.1f ms %6.1f ms\n",
            $1, ms($4), ms($2), ms($3), ms($7), ms($5), ms($6), ms($5 + $6)
        if ($1 ~ /^generator/) { split($1, w, " "); med[w[2]] = $4; cpu[w[2]] = $5 + $6 }
    }
    END {
        printf "\nper definition (generator):\n"
        for (n = 100; n <= 1000; n += (n == 100 ? 400 : 500))
            printf "  %4d definitions: %.1f us wall, %.1f us CPU\n", n, 1e6 * med[n] / n, 1e6 * cpu[n] / n
        printf "  slope 100 -> 1000: %.1f us wall and %.1f us CPU per extra definition\n",
            1e6 * (med[1000] - med[100]) / 900, 1e6 * (cpu[1000] - cpu[100]) / 900
        printf "  slope 500 -> 1000: %.1f us wall per extra definition\n", 1e6 * (med[1000] - med[500]) / 500
    }
' "$work/all.csv"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
