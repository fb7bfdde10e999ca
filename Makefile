# proa: the two commands a newcomer runs are `make demo` and `make test`.
# Every target installs what it needs (rustup components), so it works on a fresh machine.

CARGO ?= cargo
.DEFAULT_GOAL := help

.PHONY: help demo test tools fmt lint unit release fuzz clean

help:
	@echo "make demo     show proa's whole lifecycle locally, no cluster needed"
	@echo "make test     format check, clippy, unit and integration tests"
	@echo "make release  optimised build in target/release/proa"
	@echo "make fuzz     fuzz the watch-line decoder and the readiness decision (FUZZ_SECONDS each, default 30)"

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

lint:
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test --all-targets

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

clean:
	$(CARGO) clean
