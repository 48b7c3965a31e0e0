# The two commands of the README, and the pieces they are made of.
# Everything a target needs is fetched by scripts/setup.sh (idempotent).

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test bench bench-operate setup lint layering doc

## Set up, build, and run the example graph in the foreground until Ctrl-C.
## `cargo run` finds the binary wherever CARGO_TARGET_DIR puts it.
demo: setup
	$(CARGO) run --release --bin spindle -- run examples/quickstart.lua --http 127.0.0.1:7700

## Set up, then every check CI runs: format, clippy, layering, rustdoc, tests.
test: setup lint layering doc
	$(CARGO) test --workspace
	$(CARGO) test --workspace --doc

## Benchmarks with their anchors in the same run; JSON under target/bench/.
bench: setup
	$(CARGO) bench --bench supervisor
	$(CARGO) bench --bench embed
	$(CARGO) bench --bench operate

## Control-plane latency and reload of a 200-service graph beside supervisord.
bench-operate:
	$(CARGO) bench --bench operate

setup:
	bash scripts/setup.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

layering:
	bash scripts/check-layering.sh

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
