#!/bin/sh
# install.sh — install berth: `make install` with a given binary, for hosts
# and tests that have a berth binary but not a build tree to write into.
#
#   packaging/install.sh [--destdir DIR] [--bin PATH]
#
# --destdir DIR  install below DIR instead of / (a package build root); the
#                symlinks still point at /usr/bin/berth, where the package puts it
# --bin PATH     the berth binary (default: target/release/berth, else
#                target/debug/berth, next to this script's source tree)
#
# Installs the layout of the Makefile (PREFIX=/usr): the binary and its two
# other names, the units, /etc/berth/berth.toml (kept if present), the
# definition directories, the man pages and the bash, zsh and fish
# completions. The generated pages and completions are made by the binary
# itself into a temporary directory, so the source tree may be read-only.
# Idempotent: run it again to upgrade in place; the binary is replaced by a
# rename, so a running berth keeps its old copy. It neither runs
# `systemctl daemon-reload` nor enables anything: that is the administrator's
# (or the package's postinst) call. Without --destdir, follow it with
# `systemctl daemon-reload`, so systemd runs the generator.
set -eu

usage() {
	sed -n '2,10s/^# \{0,1\}//p' "$0"
}

destdir=
bin=
while [ $# -gt 0 ]; do
	case $1 in
	--destdir) [ $# -ge 2 ] || { usage >&2; exit 2; }; destdir=$2; shift 2 ;;
	--destdir=*) destdir=${1#--destdir=}; shift ;;
	--bin) [ $# -ge 2 ] || { usage >&2; exit 2; }; bin=$2; shift 2 ;;
	--bin=*) bin=${1#--bin=}; shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "install.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done

src=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$bin" ]; then
	for b in "$src/target/release/berth" "$src/target/debug/berth"; do
		if [ -x "$b" ]; then bin=$b; break; fi
	done
	if [ -z "$bin" ]; then
		echo "install.sh: no berth binary in '$src/target'; build one (make, or cargo build --release) or pass --bin PATH" >&2
		exit 1
	fi
fi
if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
	echo "install.sh: '$bin' is not an executable file" >&2
	exit 1
fi
command -v make >/dev/null || { echo "install.sh: needs make (apt-get install make)" >&2; exit 1; }
# Strip trailing slashes so "$destdir/usr" never becomes "//usr".
destdir=${destdir%/}
gen=$(mktemp -d "${TMPDIR:-/tmp}/berth-install.XXXXXX")
trap 'rm -rf "$gen"' EXIT
make -s -f "$src/Makefile" install PREFIX=/usr DESTDIR="$destdir" BERTH="$bin" GEN="$gen"
