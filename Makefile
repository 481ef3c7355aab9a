# berth's build and install, the same layout for every distribution.
#
#   make                                  cargo build --release, then the man pages
#                                         and completions generated from it
#   make install DESTDIR=/tmp/root PREFIX=/usr
#   make install BERTH=path/to/berth      install another binary (a debug build)
#   make deb | make rpm                   packages (packaging/debian, packaging/berth.spec)
#
# The generated man pages (berth-SUBCOMMAND.1) and the shell completions come
# from the binary itself (`berth __man DIR`, `berth completion SHELL`: clap_mangen
# and clap_complete over the same clap definitions as --help), so they cannot
# drift from --help. They are made by the host's build of berth: a cross build
# sets BERTH to a binary of the build machine's architecture, or GEN to a
# directory that already holds them.
#
# `make install` neither runs `systemctl daemon-reload` nor enables anything:
# that is the administrator's (or the package's postinst) call.

SRC := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

PREFIX ?= /usr
DESTDIR ?=
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
UNITDIR ?= $(LIBDIR)/systemd/system
GENERATORDIR ?= $(LIBDIR)/systemd/system-generators
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
# Debian's zsh reads vendor-completions; Fedora's and upstream's site-functions.
ZSHCOMPDIR ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d

CARGO ?= cargo
CARGOFLAGS ?=
BERTH ?= $(SRC)/target/release/berth
GEN ?= $(SRC)/target/gen

INSTALL ?= install

.PHONY: all build gen install uninstall clean deb rpm

all: build gen

build:
	cd $(SRC) && $(CARGO) build --release $(CARGOFLAGS)

# The generated documentation, into $(GEN): man pages and one completion
# script per shell. Milliseconds: always remade, never stale.
gen:
	@test -x $(BERTH) || { echo "make: no berth binary at $(BERTH): run 'make' first or pass BERTH=PATH" >&2; exit 1; }
	rm -rf $(GEN)/man $(GEN)/completions
	mkdir -p $(GEN)/man $(GEN)/completions
	$(BERTH) __man $(GEN)/man
	$(BERTH) completion bash > $(GEN)/completions/berth.bash
	$(BERTH) completion zsh > $(GEN)/completions/_berth
	$(BERTH) completion fish > $(GEN)/completions/berth.fish

# The binary goes in under a temporary name and is renamed over the old one:
# atomic, and safe while the old binary runs (no "text file busy").
install: gen
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(GENERATORDIR) $(DESTDIR)$(UNITDIR)
	$(INSTALL) -m 0755 $(BERTH) $(DESTDIR)$(BINDIR)/.berth.install
	mv -f $(DESTDIR)$(BINDIR)/.berth.install $(DESTDIR)$(BINDIR)/berth
	# One binary, three personalities, picked by argv[0] (src/main.rs).
	ln -sfn $(BINDIR)/berth $(DESTDIR)$(BINDIR)/berth-runtime
	ln -sfn $(BINDIR)/berth $(DESTDIR)$(GENERATORDIR)/berth-generator
	$(INSTALL) -m 0644 $(wildcard $(SRC)/units/*.service $(SRC)/units/*.slice \
		$(SRC)/units/*.socket $(SRC)/units/*.timer $(SRC)/units/*.target) $(DESTDIR)$(UNITDIR)/
	# Definitions: /etc for the administrator, /usr/lib for vendors and
	# packages. /run/berth/containers is made by whoever writes runtime
	# definitions (tmpfs: it would not survive a reboot anyway).
	$(INSTALL) -d $(DESTDIR)$(SYSCONFDIR)/berth/containers $(DESTDIR)$(LIBDIR)/berth/containers
	# The global settings, every key commented out: an administrator's
	# edited copy is never overwritten (a package manager handles it as a
	# conffile instead).
	test -e $(DESTDIR)$(SYSCONFDIR)/berth/berth.toml || \
		$(INSTALL) -m 0644 $(SRC)/config/berth.toml $(DESTDIR)$(SYSCONFDIR)/berth/berth.toml
	for page in $(SRC)/packaging/*.[1-8] $(GEN)/man/*.[1-8]; do \
		section=$${page##*.}; \
		$(INSTALL) -d $(DESTDIR)$(MANDIR)/man$$section || exit 1; \
		$(INSTALL) -m 0644 $$page $(DESTDIR)$(MANDIR)/man$$section/ || exit 1; \
	done
	$(INSTALL) -D -m 0644 $(GEN)/completions/berth.bash $(DESTDIR)$(BASHCOMPDIR)/berth
	$(INSTALL) -D -m 0644 $(GEN)/completions/_berth $(DESTDIR)$(ZSHCOMPDIR)/_berth
	$(INSTALL) -D -m 0644 $(GEN)/completions/berth.fish $(DESTDIR)$(FISHCOMPDIR)/berth.fish

# What `install` put there, and only that: definitions, images and volumes
# (/etc/berth/containers, /var/lib/berth) are the administrator's.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/berth $(DESTDIR)$(BINDIR)/berth-runtime \
		$(DESTDIR)$(GENERATORDIR)/berth-generator \
		$(DESTDIR)$(BASHCOMPDIR)/berth $(DESTDIR)$(ZSHCOMPDIR)/_berth \
		$(DESTDIR)$(FISHCOMPDIR)/berth.fish
	for u in $(notdir $(wildcard $(SRC)/units/*)); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done
	rm -f $(DESTDIR)$(MANDIR)/man[1-8]/berth.[1-8] $(DESTDIR)$(MANDIR)/man[1-8]/berth[-.]*.[1-8]
	-rmdir $(DESTDIR)$(LIBDIR)/berth/containers $(DESTDIR)$(LIBDIR)/berth 2>/dev/null

clean:
	rm -rf $(GEN)

deb:
	cd $(SRC) && packaging/build-deb

rpm:
	cd $(SRC) && packaging/build-rpm
