# The two commands of the README, and the pieces they are made of.
# Everything a target needs is fetched by scripts/setup.sh (idempotent).

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test bench bench-debugger setup lint layering doc test-dap

## Set up, build, and run the example graph in the foreground until Ctrl-C.
## `cargo run` finds the binary wherever CARGO_TARGET_DIR puts it.
demo: setup
	$(CARGO) run --release --bin spindle -- run examples/quickstart.lua --http 127.0.0.1:7700

## Set up, then every check CI runs: format, clippy, layering, rustdoc, tests.
test: setup lint layering doc
	$(CARGO) test --workspace
	$(CARGO) test --workspace --doc

## Benchmarks with their anchors in the same run; JSON under target/bench/.
bench: setup bench-debugger
	$(CARGO) bench --bench supervisor
	$(CARGO) bench --bench embed

## What an attached debugger costs the requests it does not stop
## (target/bench/debugger.json).
bench-debugger:
	$(CARGO) bench -p spindle-dap --bench debugger

## `spindle dap` driven by a DAP client nobody here wrote
## (@vscode/debugadapter-testsupport's DebugClient, pinned by
## dap/tests/node/package-lock.json), on the debug build of the binary.
test-dap:
	$(CARGO) build --bin spindle
	cd dap/tests/node && npm ci --no-audit --no-fund
	cd dap/tests/node && SPINDLE_BIN="$(abspath $(or $(CARGO_TARGET_DIR),target))/debug/spindle" \
		node --test --test-concurrency=1 dap.test.mjs

setup:
	bash scripts/setup.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

layering:
	bash scripts/check-layering.sh

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
