# proa: the two commands a newcomer runs are `make demo` and `make test`.
# Every target installs what it needs (rustup components), so it works on a fresh machine.

CARGO ?= cargo
.DEFAULT_GOAL := help

.PHONY: help demo test tools nginx fmt lint unit release clean

help:
	@echo "make demo     show proa's whole lifecycle locally, no cluster needed"
	@echo "make test     format check, clippy, unit and integration tests"
	@echo "make release  optimised build in target/release/proa"

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

## Both variants: the default build, and the kill feature's (releases ship both).
lint:
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features kill -- -D warnings

unit: nginx
	$(CARGO) test --all-targets
	$(CARGO) test --all-targets --features kill

release:
	$(CARGO) build --release --bin proa
	@ls -l target/release/proa

clean:
	$(CARGO) clean
