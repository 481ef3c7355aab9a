#!/bin/sh
# Benchmark (issue 14): what bridge networking with one published port costs a
# container, against its peers, interleaved in one run; medians and ratios.
#
#   1. nft: one nftables transaction of berth's plan (a start: the table's
#      skeleton, rules, a network's elements and 2 published ports; a
#      container's 2 `create element`s alone; a stop's 2 `delete element`s),
#      applied by `nft -f -`, by libnftables in process (kept loaded, and
#      dlopen'd + dlclose'd per transaction) and by `nft -j -f -`; then the
#      memory libnftables costs a long-lived process before, while and after
#      it is loaded. The transactions are read from src/network/plan.rs.
#   2. peers, each a container's network setup plus teardown:
#      - the floor: `ip -batch` (veth onto a bridge, address, route) plus one
#        `nft -f` of the 2 `create element`s, then one `nft -f` of the
#        deletes and `ip link del`;
#      - netavark (Podman's, called directly: setup then teardown of a
#        container with one published port, on a network that already has
#        another member, as it usually has);
#      - `podman run --rm` of /bin/true with `--network none` and with the
#        default bridge and `-p 8080:80` (the difference is the network);
#      - the same with Docker when dockerd can run here (else it says why).
#   3. berth: `systemctl start` of one declared container in `mode = "none"`,
#      one in bridge mode with `publish = ["8080:80"]` that is its bridge's
#      only member (the bridge is made at each start) and one with a published
#      port on a network another container keeps up, interleaved, from just before `systemctl
#      start` until its program has been exec'd (a static stamp writes the
#      time), in a real systemd booted in fresh namespaces (the recipe of
#      TESTING.md and tests/support/systemd_box.rs). Uses target/release/berth
#      (or $BERTH): `sh benches/network.sh 30 berth`.
#
# Needs root. Everything happens inside `unshare --mount --pid --net --cgroup
# --uts --ipc --fork` placed in a fresh child cgroup of
# /sys/fs/cgroup/unified with a cgroup2 mount of it at /sys/fs/cgroup, and a
# tmpfs on /run (TESTING.md): bridges, veths, nft tables, iptables rules,
# Podman's and Docker's state all die with it. The machine's own network
# namespace, firewall and cgroups are never touched. Not a timed test; run by
# hand:  sh benches/network.sh [ITERATIONS] [nft|peers|berth|all]
set -eu

ITER=${1:-30}
WHAT=${2:-all}
HERE=$(cd "$(dirname "$0")/.." && pwd)

# 3. BERTH ROW: a systemd box (own PID, mount, UTS, IPC, cgroup and network
# namespaces, the host's root as a copy-on-write overlay), berth installed in
# it, two declared containers, interleaved starts.
berth_row() {
    echo
    echo "== 3. berth: systemctl start until the program is exec'd, none vs bridge + 1 published port (first member of its bridge, and beside another member), $ITER interleaved rounds"
    BERTH=${BERTH:-$HERE/target/release/berth}
    [ -x "$BERTH" ] || { echo "# skipped: no $BERTH (cargo build --release)"; return 0; }
    D=$WORK/box
    mkdir -p "$D/upper" "$D/work" "$D/merged" "$D/varlib" "$D/srv/rootfs" "$D/srv/out"
    cp -a "$WORK/rootfs/." "$D/srv/rootfs/"
    cat > "$D/stamp.c" <<'STAMP'
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, n) != n) return 1;
    return 0;
}
STAMP
    gcc -static -O2 -o "$D/srv/rootfs/stamp" "$D/stamp.c"
    # The machine's own enabled units would start in the box too: masked.
    masks="console-getty.service container-getty@.service getty@.service postgresql@.service systemd-journal-flush.service"
    masks="$masks $(ls /etc/systemd/system/*.wants /etc/systemd/system/*.requires 2>/dev/null | grep -v ':$' | grep -v '\.target$' | sort -u | tr '\n' ' ')"
    cat > "$D/boot.sh" <<BOOT
set -eu
D=$D
M=\$D/merged
mount -t overlay overlay -o "lowerdir=/,upperdir=\$D/upper,workdir=\$D/work" "\$M"
mount -t proc proc "\$M/proc"
mount --bind "\$M/proc/sys" "\$M/proc/sys"
mount -o remount,bind,ro "\$M/proc/sys"
mount --bind "\$M/proc/sys/net" "\$M/proc/sys/net"
mount -o remount,bind,rw "\$M/proc/sys/net"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "\$M/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "\$M/sys/fs/cgroup"
mount --rbind /dev "\$M/dev"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "\$M/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "\$M/tmp"
mkdir -p "\$M/var/lib/berth" "\$M/srv"
mount --bind "\$D/varlib" "\$M/var/lib/berth"
mount --bind "\$D/srv" "\$M/srv"
rm -rf "\$M/usr/bin/berth" "\$M/usr/bin/berth-runtime" "\$M/etc/berth" "\$M/usr/lib/berth" \\
    "\$M/usr/lib/systemd/system-generators/berth-generator" "\$M/usr/lib/systemd/system/berth@.service"
sh $HERE/packaging/install.sh --destdir "\$M" --bin $BERTH >/dev/null
mkdir -p "\$M/etc/systemd/system" "\$M/etc/systemd/system-generators" "\$M/etc/systemd/journald.conf.d" "\$M/etc/berth/containers"
for u in $masks; do ln -sfn /dev/null "\$M/etc/systemd/system/\$u"; done
for g in systemd-sysv-generator postgresql-generator systemd-getty-generator; do ln -sfn /dev/null "\$M/etc/systemd/system-generators/\$g"; done
printf '[Journal]\nStorage=volatile\n' > "\$M/etc/systemd/journald.conf.d/90-bench.conf"
printf 'rootfs = "/srv/rootfs"\ncommand = ["/stamp", "/out/none"]\n[network]\nmode = "none"\n[[volume]]\nsource = "/srv/out"\ntarget = "/out"\n[service]\nrestart = "no"\n' > "\$M/etc/berth/containers/none.toml"
printf 'rootfs = "/srv/rootfs"\ncommand = ["/stamp", "/out/bridge"]\n[network]\npublish = ["8080:80"]\n[[volume]]\nsource = "/srv/out"\ntarget = "/out"\n[service]\nrestart = "no"\n' > "\$M/etc/berth/containers/bridge.toml"
printf 'rootfs = "/srv/rootfs"\ncommand = ["/stamp", "/out/member"]\n[network]\nnetworks = ["app"]\npublish = ["8081:80"]\n[[volume]]\nsource = "/srv/out"\ntarget = "/out"\n[service]\nrestart = "no"\n' > "\$M/etc/berth/containers/member.toml"
printf 'rootfs = "/srv/rootfs"\ncommand = ["sleep", "1000000"]\n[network]\nnetworks = ["app"]\n[service]\nrestart = "no"\n' > "\$M/etc/berth/containers/keep.toml"
mkdir -p "\$M/etc/berth/networks"
printf 'subnet = "10.89.5.0/24"\n' > "\$M/etc/berth/networks/app.toml"
mkdir -p "\$M/.oldroot"
cd "\$M"
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
exec env -i container=berth-bench /lib/systemd/systemd --system
BOOT
    # The shell joins the cgroup before unshare makes the cgroup namespace,
    # so the namespace's root is exactly that cgroup.
    mkdir "$CG/box"
    sh -c "echo \$\$ > $CG/box/cgroup.procs; exec unshare --fork --pid --mount --uts --ipc --cgroup --net --propagation private sh $D/boot.sh" > "$D/console.log" 2>&1 &
    upid=$!
    pid=
    i=0
    while [ $i -lt 300 ] && [ -z "$pid" ]; do
        c=$(cut -d' ' -f1 "/proc/$upid/task/$upid/children" 2>/dev/null || true)
        if [ -n "$c" ] && [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = /usr/lib/systemd/systemd ]; then pid=$c; fi
        sleep 0.05; i=$((i+1))
    done
    [ -n "$pid" ] || { echo "# skipped: the box did not boot:"; tail -5 "$D/console.log"; return 0; }
    inbox() { nsenter -t "$pid" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_PAGER= sh -c "$1"; }
    i=0
    while :; do
        s=$(inbox "systemctl is-system-running" 2>/dev/null || true)
        [ "$s" = running ] || [ "$s" = degraded ] && break
        i=$((i+1))
        [ $i -lt 300 ] || { echo "# skipped: the box is '$s' after 30 s"; kill -TERM "$pid"; return 0; }
        sleep 0.1
    done
    inbox "ip link set lo up; sysctl -qw net.ipv4.ip_forward=1"
    # `member` joins network app, whose bridge `keep` holds up all along: the
    # usual case. `bridge` is the first member of `default` at every start,
    # so its bridge, sysctls and the table's skeleton are made each time.
    inbox "systemctl start berth@keep.service"
    round='for u in $UNITS; do
        f=/srv/out/$u; rm -f $f
        t0=$(date +%s%N)
        systemctl start --no-block berth@$u.service
        i=0; while [ ! -s $f ] && [ $i -lt 2000 ]; do sleep 0.002; i=$((i+1)); done
        [ -s $f ] && echo "$u $(( $(cat $f) - t0 ))" || echo "$u failed"
        i=0; while [ $i -lt 2000 ]; do
            s=$(systemctl show -p ActiveState --value berth@$u.service)
            [ $s = inactive ] || [ $s = failed ] && break
            sleep 0.005; i=$((i+1))
        done
        systemctl reset-failed berth@$u.service 2>/dev/null || true
    done'
    : > "$D/times"
    n=0
    while [ $n -lt $((ITER + 2)) ]; do
        case $((n % 3)) in
            0) units="none bridge member" ;;
            1) units="bridge member none" ;;
            *) units="member none bridge" ;;
        esac
        out=$(inbox "UNITS='$units'; $round")
        [ $n -lt 2 ] || echo "$out" >> "$D/times"
        n=$((n+1))
    done
    python3 - "$D/times" <<'MEDIANS'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    w = line.split()
    if len(w) == 2:
        t.setdefault(w[0], []).append(float(w[1]) / 1e6 if w[1] != "failed" else None)
med = {}
for k, v in t.items():
    ok = sorted(x for x in v if x is not None)
    if not ok:
        print(f"berth {k:<8} every start failed")
        continue
    med[k] = statistics.median(ok)
    print(f"berth {k:<8} median {med[k]:6.1f} ms  (p10 {ok[len(ok) // 10]:.1f}, p90 {ok[len(ok) * 9 // 10]:.1f}, failed {len(v) - len(ok)})")
if "none" in med and "bridge" in med:
    print(f"berth bridge + 1 published port over none, first member (bridge made): {med['bridge'] - med['none']:+.1f} ms")
if "none" in med and "member" in med:
    print(f"berth bridge + 1 published port over none, on a running bridge: {med['member'] - med['none']:+.1f} ms (goal: <= 10 ms)")
MEDIANS
    inbox "journalctl -q -o cat -u berth@bridge.service | grep -i -m3 'warn\|loopback' || true" | sed 's/^/# berth@bridge: /'
    fifty
    kill -TERM "$pid" 2>/dev/null || true
}

# 4. 50 containers started at once on one network (with BERTH_TRACE_START):
# each one's network setup (leases before the clone, links and rules after
# it) from its trace, their sum, and the wall time until all 50 run.
fifty() {
    echo
    echo "== 4. berth: 50 containers started at once, on one network and in mode none"
    for mode in none bridge; do
        case $mode in
            none) netkeys='mode = \"none\"' ;;
            *) netkeys='networks = [\"many\"]' ;;
        esac
        inbox 'mkdir -p /etc/berth/containers; for i in $(seq 1 50); do
            printf "rootfs = \"/srv/rootfs\"\ncommand = [\"sleep\", \"1000000\"]\n[network]\n'"$netkeys"'\n[service]\nrestart = \"no\"\n" > /etc/berth/containers/p$i.toml
          done
          printf "subnet = \"10.89.50.0/24\"\n" > /etc/berth/networks/many.toml
          systemctl daemon-reload; systemctl set-environment BERTH_TRACE_START=1
          c=$(journalctl -q --show-cursor -n 0 | sed -n "s/^-- cursor: //p")
          t0=$(date +%s%N)
          systemctl start $(for i in $(seq 1 50); do echo berth@p$i.service; done)
          t1=$(date +%s%N)
          echo "wall $(( (t1 - t0) / 1000000 ))"
          echo "running $(systemctl list-units --state=active --no-legend "berth@p*" | wc -l)"
          echo "leases $(ls /run/berth/leases/many 2>/dev/null | grep -vc "^\." )"
          journalctl -q -o cat --after-cursor "$c" | grep "berth-trace:"
          systemctl stop "berth@p*"; systemctl unset-environment BERTH_TRACE_START' > "$WORK/fifty-$mode"
    done
    python3 - "$WORK/fifty-none" "$WORK/fifty-bridge" <<'FIFTY'
import re, statistics, sys
wall = {}
for mode, path in (("none", sys.argv[1]), ("bridge", sys.argv[2])):
    steps = {}
    for line in open(path):
        w = line.split()
        if w and w[0] == "wall":
            wall[mode] = int(w[1])
        if w and w[0] in ("running", "leases") and mode == "bridge":
            print(f"berth 50 at once, bridge: {w[0]} {w[1]}")
        m = re.search(r"berth-trace:\s+([\d.]+) ms\s+\[(\d+)\] (.*)", line)
        if m:
            steps.setdefault(m.group(2), {})[m.group(3).strip()] = float(m.group(1))
    print(f"berth 50 at once, {mode}: {wall.get(mode)} ms until all 50 run")
    need = ("supervise: plan inputs read", "supervise: network leases", "supervise: created", "supervise: network attached")
    cost = sorted(s[need[1]] - s[need[0]] + s[need[3]] - s[need[2]] for s in steps.values() if all(k in s for k in need))
    if cost:
        print(f"berth 50 at once, {mode}: network steps per container (wall, 2 cores shared by 50) median {statistics.median(cost):.1f} ms, max {cost[-1]:.1f} ms")
if "none" in wall and "bridge" in wall:
    print(f"berth 50 at once: bridge over none {wall['bridge'] - wall['none']:+d} ms for all 50 (goal: network setup for all 50 under 300 ms)")
FIFTY
}

if [ "${NETBENCH_INNER:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
    WORK=$(mktemp -d /tmp/berth-netbench-XXXXXX)
    CG=/sys/fs/cgroup/unified/berth-netbench-$$
    mkdir "$CG"
    cleanup() {
        echo 1 > "$CG/cgroup.kill" 2>/dev/null || true
        i=0
        while [ -n "$(find "$CG" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] && [ $i -lt 100 ]; do
            sleep 0.1; i=$((i+1))
        done
        find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        rm -rf "$WORK"
    }
    trap cleanup EXIT
    # A busybox root for the containers of Podman and Docker.
    R=$WORK/rootfs
    mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/etc"
    cp /bin/busybox "$R/bin/busybox"
    for a in sh true sleep; do ln -s busybox "$R/bin/$a"; done
    tar -C "$R" -cf "$WORK/rootfs.tar" .
    cp "$HERE/src/network/plan.rs" "$WORK/plan.rs"
    write_c() {
        cat > "$WORK/nftbench.c" <<'EOF'
/* One nft transaction applied several ways (benches/network.sh). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
struct nft_ctx;
static struct nft_ctx *(*ctx_new)(unsigned);
static int (*buffer_error)(struct nft_ctx *);
static int (*run_cmd)(struct nft_ctx *, const char *);
static const char *(*get_error)(struct nft_ctx *);
static void (*ctx_free)(struct nft_ctx *);
static void (*set_flags)(struct nft_ctx *, unsigned);
static void *lib;

static char *slurp(const char *p) {
    FILE *f = fopen(p, "r");
    if (!f) { perror(p); exit(1); }
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}
static void load(void) {
    lib = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); exit(1); }
    ctx_new = dlsym(lib, "nft_ctx_new");
    buffer_error = dlsym(lib, "nft_ctx_buffer_error");
    run_cmd = dlsym(lib, "nft_run_cmd_from_buffer");
    get_error = dlsym(lib, "nft_ctx_get_error_buffer");
    ctx_free = dlsym(lib, "nft_ctx_free");
    set_flags = dlsym(lib, "nft_ctx_output_set_flags");
}
static int lib_run(const char *text, int json) {
    struct nft_ctx *c = ctx_new(0);
    buffer_error(c);
    if (json) set_flags(c, 1 << 4);
    int r = run_cmd(c, text);
    if (r) fprintf(stderr, "libnftables: %s", get_error(c));
    ctx_free(c);
    return r;
}
static int spawn_run(const char *text, int json) {
    int in[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) exit(1);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    char *argv_t[] = {"nft", "-f", "-", 0}, *argv_j[] = {"nft", "-j", "-f", "-", 0};
    pid_t pid;
    if (posix_spawnp(&pid, "nft", &fa, 0, json ? argv_j : argv_t, environ)) exit(1);
    close(in[0]); close(err[1]);
    size_t n = strlen(text);
    if (write(in[1], text, n) != (ssize_t)n) exit(1);
    close(in[1]);
    char buf[4096];
    ssize_t m = read(err[0], buf, sizeof buf - 1);
    close(err[0]);
    int st;
    waitpid(pid, &st, 0);
    posix_spawn_file_actions_destroy(&fa);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) { buf[m > 0 ? m : 0] = 0; fprintf(stderr, "nft: %s", buf); return 1; }
    return 0;
}
static void mem(const char *what) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long rss = 0, anon = 0, pss = 0;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "Rss: %ld", &rss);
        sscanf(line, "Pss: %ld", &pss);
        sscanf(line, "Anonymous: %ld", &anon);
    }
    fclose(f);
    int mapped = 0;
    f = fopen("/proc/self/maps", "r");
    while (fgets(line, sizeof line, f)) if (strstr(line, "libnftables")) mapped = 1;
    fclose(f);
    printf("  %-36s RSS %5ld  PSS %5ld  anonymous %5ld KiB  (libnftables %s)\n", what, rss, pss, anon, mapped ? "mapped" : "not mapped");
}
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "mem")) {
        char *start = slurp(argv[2]), *stop = slurp(argv[3]);
        printf("memory of a process that applies a start and a stop through libnftables:\n");
        mem("before dlopen");
        load();
        mem("after dlopen");
        lib_run(start, 0);
        mem("after a start transaction");
        lib_run(stop, 0);
        mem("after a stop transaction");
        dlclose(lib);
        mem("after dlclose");
        malloc_trim(0);
        mem("after malloc_trim(0)");
        return 0;
    }
    int iters = atoi(argv[1]);
    const char *dir = argv[2];
    int gap = atoi(argv[3]) * 1000;
    char p[512];
#define T(name) (snprintf(p, sizeof p, "%s/%s", dir, name), slurp(p))
    char *start = T("start.nft"), *create = T("create.nft"), *stop = T("stop.nft");
    char *createj = T("create.json"), *stopj = T("stop.json");
    enum { SPAWN, LIBWARM, LIBCOLD, JSON, NM };
    const char *names[NM] = {"nft -f - (spawned)", "libnftables, kept loaded", "libnftables, dlopen+dlclose", "nft -j -f - (spawned)"};
    static double ts[NM][3][1000];
    if (iters > 990) iters = 990;
    load();
    /* The table exists, as after the first start on the host. */
    if (spawn_run(start, 0) || spawn_run(stop, 0)) return 1;
    for (int i = 0; i < iters + 3; i++) {
        for (int k = 0; k < NM; k++) {
            int m = (i + k) % NM; /* each method goes first in turn */
            int json = m == JSON;
            int (*run)(const char *, int) = (m == SPAWN || m == JSON) ? spawn_run : lib_run;
            const char *texts[3] = {start, json ? createj : create, json ? stopj : stop};
            /* nft 1.0.6 -j crashes on the JSON form of the start's dnat
               rules: the start of that row is the text one. */
            for (int s = 0; s < 3; s++) {
                /* Not timed: the library's state as the method has it. */
                if (m == LIBWARM && !lib) load();
                if (m == LIBCOLD && lib) { dlclose(lib); lib = 0; }
                usleep(gap);
                double t0 = now();
                if (m == LIBCOLD) load();
                int rc = s == 0 && json ? spawn_run(start, 0) : run(texts[s], json);
                if (m == LIBCOLD) { dlclose(lib); lib = 0; }
                double dt = now() - t0;
                if (rc) return 1;
                if (i >= 3) ts[m][s][i - 3] = dt;
                /* Not timed: the start's ports go again before the creates. */
                if (s == 0) { usleep(gap); if (spawn_run(stop, 0)) return 1; }
            }
        }
    }
    printf("%-30s %17s %17s %17s\n", "ms, median (p10-p90)", "start", "2 creates", "2 deletes");
    for (int m = 0; m < NM; m++) {
        printf("%-30s", names[m]);
        for (int s = 0; s < 3; s++) {
            double *v = ts[m][s];
            qsort(v, iters, sizeof *v, cmp);
            if (m == JSON && s == 0) { printf(" %17s", "(crashes)"); continue; }
            printf("   %5.2f (%4.1f-%4.1f)", v[iters / 2], v[iters / 10], v[iters * 9 / 10]);
        }
        printf("\n");
    }
    return 0;
}
EOF
    }
    write_c
    gcc -O2 -o "$WORK/nftbench" "$WORK/nftbench.c" -ldl
    if [ "$WHAT" != berth ]; then
        mkdir "$CG/peers"
        sh -c "echo \$\$ > $CG/peers/cgroup.procs; exec env NETBENCH_INNER=1 WORK=$WORK unshare --mount --pid --net --cgroup --uts --ipc --fork --propagation private sh $0 $ITER $WHAT"
    fi
    if [ "$WHAT" = berth ] || [ "$WHAT" = all ]; then
        berth_row
    fi
    exit 0
fi

# Inside the namespaces.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t proc proc /proc
mount -t tmpfs tmpfs /run
ip link set lo up
echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cpus, $(grep 'model name' /proc/cpuinfo | head -1 | cut -d: -f2 | sed 's/^ //')"
echo "# $(nft --version), netavark $(/usr/lib/podman/netavark --version | cut -d' ' -f2), $(podman --version), $(ip -V)"

# The transactions, from plan.rs's own text.
python3 - "$WORK" <<'EOF'
import json, os, re, sys
w = sys.argv[1]
src = open(os.path.join(w, "plan.rs")).read()
skel = re.search(r'const SKELETON: &str = "\\\n(.*?)";', src, re.S).group(1)
rules = re.findall(r'\("(\w+)", "((?:[^"\\]|\\.)*)"\)', re.search(r'const RULES.*?\];', src, re.S).group(0))
base = skel + "".join(f"add rule inet berth {c} {r}\n" for c, r in rules)
net = ('add element inet berth subnets4 { 10.89.0.0/24 }\n'
       'add element inet berth masquerade4 { 10.89.0.0/24 }\n'
       'add element inet berth bridges { "berth0" }\n'
       'add element inet berth intra { "berth0" . "berth0" }\n')
def create(ip, name):
    return (f'create element inet berth dnat4 {{ tcp . 8080 comment "{name}" : {ip} . 80 }}\n'
            f'create element inet berth dnat4 {{ udp . 5353 comment "{name}" : {ip} . 53 }}\n')
delete = ('delete element inet berth dnat4 { tcp . 8080 }\n'
          'delete element inet berth dnat4 { udp . 5353 }\n')
open(os.path.join(w, "base.nft"), "w").write(base + net)
open(os.path.join(w, "start.nft"), "w").write(base + net + create("10.89.0.2", "web"))
open(os.path.join(w, "create.nft"), "w").write(create("10.89.0.2", "web"))
open(os.path.join(w, "stop.nft"), "w").write(delete)
def cmd(verb, key, data=None):
    e = {"concat": key} if data is None else [{"elem": {"val": {"concat": key}, "comment": "web"}}, {"concat": data}]
    return {verb: {"element": {"family": "inet", "table": "berth", "name": "dnat4", "elem": [e]}}}
ports = [("tcp", 8080, 80), ("udp", 5353, 53)]
json.dump({"nftables": [cmd("create", [p, h], ["10.89.0.2", c]) for p, h, c in ports]}, open(os.path.join(w, "create.json"), "w"))
json.dump({"nftables": [cmd("delete", [p, h]) for p, h, c in ports]}, open(os.path.join(w, "stop.json"), "w"))
EOF

if [ "$WHAT" = nft ] || [ "$WHAT" = all ]; then
    echo
    echo "== 1. one nft transaction, $ITER interleaved rounds (each transaction 50 ms after the last)"
    # In a netns of its own, so that the peers' tables below are not in it.
    unshare --net "$WORK/nftbench" "$ITER" "$WORK" 50
    unshare --net "$WORK/nftbench" mem "$WORK/start.nft" "$WORK/stop.nft"
fi
[ "$WHAT" = peers ] || [ "$WHAT" = all ] || exit 0

echo
echo "== 2. network setup + teardown of one container with one published port, $ITER interleaved rounds"
python3 - "$ITER" "$WORK" <<'EOF'
import json, os, statistics, subprocess, sys, time
iters, work = int(sys.argv[1]), sys.argv[2]
DEVNULL = subprocess.DEVNULL
NETAVARK = "/usr/lib/podman/netavark"

def sh(cmd, check=True, inp=None):
    r = subprocess.run(cmd, shell=True, input=inp, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd}: {(r.stderr + r.stdout).strip()[:400]}")
    return r

# The floor's bridge and berth's table (loaded once, as by the first start).
sh("sysctl -qw net.ipv4.ip_forward=1")
sh("ip link add berth0 type bridge && ip addr add 10.89.0.1/24 dev berth0 && ip link set berth0 up")
sh(f"nft -f {work}/base.nft")

def floor(i):
    ns = f"fl{i}"
    sh(f"ip netns add {ns}")
    ip = f"10.89.0.{10 + i % 200}"
    create = open(f"{work}/create.nft").read().replace("10.89.0.2", ip)
    t0 = time.perf_counter()
    sh("ip -batch -", inp=f"link add vfl{i} type veth peer name eth0 netns {ns}\nlink set vfl{i} master berth0 up\n")
    sh(f"ip -n {ns} -batch -", inp=f"link set lo up\naddr add {ip}/24 dev eth0\nlink set eth0 up\nroute add default via 10.89.0.1\n")
    sh("nft -f -", inp=create)
    sh(f"nft -f {work}/stop.nft")
    sh(f"ip link del vfl{i}")
    dt = time.perf_counter() - t0
    sh(f"ip netns del {ns}")
    return dt

NET = {"name": "podman", "id": "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9",
       "driver": "bridge", "network_interface": "podman9",
       "subnets": [{"subnet": "10.90.0.0/16", "gateway": "10.90.0.1"}],
       "ipv6_enabled": False, "internal": False, "dns_enabled": False,
       "ipam_options": {"driver": "host-local"}}
def nv_opts(i, ports):
    return json.dumps({
        "container_id": f"{i + 1:064x}", "container_name": f"nv{i}",
        "port_mappings": [{"host_ip": "", "container_port": 80, "host_port": 8080 + i % 2, "range": 1, "protocol": "tcp"}] if ports else [],
        "networks": {"podman": {"static_ips": [f"10.90.{1 + i // 200}.{2 + i % 200}" if i >= 0 else "10.90.0.2"], "interface_name": "eth0"}},
        "network_info": {"podman": NET}})
nvconf = os.path.join(work, "netavark")
os.makedirs(nvconf, exist_ok=True)
# A resident member: the bridge and the network's chains exist, as usual.
sh("ip netns add nvres")
sh(f"{NETAVARK} --config {nvconf} setup /run/netns/nvres", inp=nv_opts(-1, False))
def netavark(i):
    ns = f"nv{i}"
    sh(f"ip netns add {ns}")
    o = nv_opts(i, True)
    t0 = time.perf_counter()
    sh(f"{NETAVARK} --config {nvconf} setup /run/netns/{ns}", inp=o)
    sh(f"{NETAVARK} --config {nvconf} teardown /run/netns/{ns}", inp=o)
    dt = time.perf_counter() - t0
    sh(f"ip netns del {ns}")
    return dt

PODMAN = (f"podman --root {work}/podman/root --runroot /run/podman --tmpdir /run/libpod "
          f"--cgroup-manager cgroupfs --events-backend none --network-backend netavark "
          f"--network-config-dir {work}/podman/net")
def podman(net):
    def run(i):
        t0 = time.perf_counter()
        sh(f"{PODMAN} run --rm --cgroups=disabled {net} --rootfs {work}/rootfs /bin/true")
        return time.perf_counter() - t0
    return run

DOCKER = "docker -H unix:///run/dockerb.sock"
def docker_up():
    if subprocess.run("command -v dockerd", shell=True, stdout=DEVNULL).returncode != 0:
        return "dockerd is not installed"
    log = open(f"{work}/dockerd.log", "w")
    subprocess.Popen(["dockerd", "--data-root", f"{work}/docker", "--exec-root", "/run/dockerb",
                      "--pidfile", "/run/dockerb.pid", "-H", "unix:///run/dockerb.sock",
                      "--exec-opt", "native.cgroupdriver=cgroupfs", "--oom-score-adjust", "0",
                      "--bip", "10.91.0.1/16"], stdout=log, stderr=log)
    for _ in range(300):
        if sh(f"{DOCKER} version", check=False).returncode == 0:
            break
        time.sleep(0.1)
    else:
        return "dockerd did not answer in 30 s: " + open(f"{work}/dockerd.log").read()[-400:].replace("\n", " ")
    r = sh(f"{DOCKER} import {work}/rootfs.tar berthbench:latest", check=False)
    if r.returncode != 0:
        return "docker import failed: " + r.stderr.strip()[:300]
    r = sh(f"{DOCKER} run --rm --network none berthbench /bin/true", check=False)
    if r.returncode != 0:
        return "docker run failed: " + r.stderr.strip()[:300]
    return None
def docker(net):
    def run(i):
        t0 = time.perf_counter()
        sh(f"{DOCKER} run --rm {net} berthbench /bin/true")
        return time.perf_counter() - t0
    return run

rows = {"floor (ip -batch + nft -f)": floor, "netavark setup+teardown": netavark,
        "podman --network none": podman("--network none"), "podman bridge -p 8080:80": podman("-p 8080:80")}
r = sh(f"{PODMAN} run --rm --cgroups=disabled -p 8080:80 --rootfs {work}/rootfs /bin/true", check=False)
if r.returncode != 0:
    print("# podman cannot run here, skipped:", r.stderr.strip()[:300])
    del rows["podman --network none"], rows["podman bridge -p 8080:80"]
why = docker_up()
if why:
    print("# docker skipped:", why)
else:
    rows["docker --network none"] = docker("--network none")
    rows["docker bridge -p 8080:80"] = docker("-p 8080:80")
times = {k: [] for k in rows}
order = list(rows.items())
for i in range(iters + 3):
    k = i % len(order)
    for name, f in order[k:] + order[:k]:
        dt = f(i)
        if i >= 3:
            times[name].append(dt * 1000)
med = {k: statistics.median(v) for k, v in times.items()}
print(f"{'ms':<28}{'median':>8}{'p10':>8}{'p90':>8}")
for k, v in times.items():
    v.sort()
    print(f"{k:<28}{med[k]:>8.1f}{v[len(v) // 10]:>8.1f}{v[len(v) * 9 // 10]:>8.1f}")
fl = med["floor (ip -batch + nft -f)"]
print("what the network adds to one container (setup + teardown), and x the floor:")
print(f"  floor                       {fl:7.1f} ms  1.0x")
print(f"  netavark                    {med['netavark setup+teardown']:7.1f} ms  {med['netavark setup+teardown'] / fl:.1f}x")
for p in ("podman", "docker"):
    b, n = f"{p} bridge -p 8080:80", f"{p} --network none"
    if b in med:
        d = med[b] - med[n]
        print(f"  {p} bridge -p over none    {d:7.1f} ms  {d / fl:.1f}x")
sh(f"{NETAVARK} --config {nvconf} teardown /run/netns/nvres", check=False, inp=nv_opts(-1, False))
if not why:
    sh("kill $(cat /run/dockerb.pid)", check=False)
EOF
