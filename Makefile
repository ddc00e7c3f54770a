# pkgcell: build, test, demo, bench.
#
#   make demo    install deps, make the test base, build a package in a sandbox
#   make test    unit + integration tests, as an unprivileged user: all of
#                them on the sid base (pacman/makepkg 7.1), then the ones
#                that run pacman or makepkg (SMOKE_6) on bookworm's (6.0.2)
#   make bench   benchmarks against bwrap, unshare, cp -a, repo-add, makepkg

CARGO ?= cargo
HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RUNNER_VAR := CARGO_TARGET_$(shell echo '$(HOST_TRIPLE)' | tr 'a-z.-' 'A-Z__')_RUNNER
# Every test binary runs as an unprivileged user with a subuid range (created
# when make runs as root), so a test that needs root cannot pass.
AS_USER := $(CURDIR)/scripts/as-test-user

.PHONY: all build release deps test-base test demo bench clean lint

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

deps:
	scripts/install-deps

test-base:
	$(AS_USER) scripts/ensure-test-base sid
	$(AS_USER) scripts/ensure-test-base bookworm

# The integration tests run on pacman/makepkg 6.0.2 (bookworm's base) too:
# these modules run pacman or makepkg (make test SMOKE_6=... to choose).
# Not again: making a base with make-test-base (minutes; ensure-test-base
# just made the bookworm one).
SMOKE_6 ?= base:: makepkg:: plan:: build:: deps:: repro:: publish:: \
	--skip base::a_command_base_from_make_test_base_builds_hello_with_makepkg

test: deps
	$(CARGO) build --tests --bins
	base=$$($(AS_USER) $(CURDIR)/scripts/ensure-test-base sid) && \
	base6=$$($(AS_USER) $(CURDIR)/scripts/ensure-test-base bookworm) && \
	s3s=$$($(CURDIR)/scripts/install-s3s-fs) && \
	small=$$($(CURDIR)/scripts/small-fs mount) && \
	{ PKGCELL_TEST_BASE=$$base PKGCELL_TEST_SUITE=sid PKGCELL_TEST_S3S_FS=$$s3s PKGCELL_TEST_SMALL_FS=$$small \
		$(RUNNER_VAR)=$(AS_USER) $(CARGO) test --workspace -- $(TEST_ARGS) && \
	  echo "== integration tests on the bookworm base (pacman/makepkg 6.0.2): $(SMOKE_6)" && \
	  PKGCELL_TEST_BASE=$$base6 PKGCELL_TEST_SUITE=bookworm $(RUNNER_VAR)=$(AS_USER) \
		$(CARGO) test --test integration -- $(SMOKE_6) $(TEST_ARGS); \
	  st=$$?; $(CURDIR)/scripts/small-fs umount "$$small"; exit $$st; }

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

demo: deps release
	$(AS_USER) $(CURDIR)/scripts/demo $(CURDIR)/target/release/pkgcell

bench: deps release
	base=$$($(AS_USER) $(CURDIR)/scripts/ensure-test-base bookworm) && \
	real=$$(mktemp -d) && chmod 755 $$real && \
	scripts/pack-bench-source $$real/zstd.tar.gz && \
	$(AS_USER) env PKGCELL_TEST_BASE=$$base PKGCELL_BENCH_REAL_SRC=$$real/zstd.tar.gz \
		$(CURDIR)/scripts/bench $(CURDIR)/target/release/pkgcell; \
	st=$$?; rm -rf $$real; exit $$st

clean:
	$(CARGO) clean
