#!/bin/sh
# install.sh — install berth: the binary, its two other names, the systemd
# units, the config directories and the man page.
#
#   packaging/install.sh [--destdir DIR] [--bin PATH]
#
# --destdir DIR  install below DIR instead of / (a package build root); the
#                symlinks still point at /usr/bin/berth, where the package puts it
# --bin PATH     the berth binary (default: target/release/berth, else
#                target/debug/berth, next to this script's source tree)
#
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
		echo "install.sh: no berth binary in '$src/target'; build one (cargo build --release) or pass --bin PATH" >&2
		exit 1
	fi
fi
if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
	echo "install.sh: '$bin' is not an executable file" >&2
	exit 1
fi
# Strip trailing slashes so "$destdir/usr" never becomes "//usr".
destdir=${destdir%/}

# Copy to a temporary name in the target directory, then rename over the old
# file: atomic, and safe while the old binary runs (no "text file busy").
install_file() { # mode source target
	mkdir -p "$(dirname "$3")"
	tmp="$3.berth-install.$$"
	cp "$2" "$tmp"
	chmod "$1" "$tmp"
	mv -f "$tmp" "$3"
}

# A symlink, replaced if it exists (also over a stale regular file).
install_link() { # target linkname
	mkdir -p "$(dirname "$2")"
	ln -sfn "$1" "$2"
}

install_file 0755 "$bin" "$destdir/usr/bin/berth"
# One binary, three personalities, picked by argv[0] (src/main.rs).
install_link /usr/bin/berth "$destdir/usr/bin/berth-runtime"
install_link /usr/bin/berth "$destdir/usr/lib/systemd/system-generators/berth-generator"

for unit in "$src"/units/*; do
	[ -f "$unit" ] || continue
	case $unit in
	*.service|*.slice|*.socket|*.timer|*.target|*.path|*.mount) ;;
	*) continue ;;
	esac
	install_file 0644 "$unit" "$destdir/usr/lib/systemd/system/$(basename "$unit")"
done

# Definitions: /etc for the administrator, /usr/lib for vendors and packages.
# /run/berth/containers is made by whoever writes runtime definitions (it is
# tmpfs and would not survive a reboot anyway).
mkdir -p "$destdir/etc/berth/containers" "$destdir/usr/lib/berth/containers"

for page in "$src"/packaging/*.[1-8]; do
	[ -f "$page" ] || continue
	section=${page##*.}
	install_file 0644 "$page" "$destdir/usr/share/man/man$section/$(basename "$page")"
done
