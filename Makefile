# The two commands of the README, and the pieces they are made of.
# Everything a target needs is fetched by scripts/setup.sh (idempotent).

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test bench bench-debugger bench-debugger-instructions request-instructions bench-operate longrun setup lint layering doc setup-editor editor-test vsix test-jupyter bench-jupyter fuzz kmod-e2e test-dap

## Set up, build, and run the example graph in the foreground until Ctrl-C.
## `cargo run` finds the binary wherever CARGO_TARGET_DIR puts it.
demo: setup
	$(CARGO) run --release --bin spindle -- run examples/quickstart.lua --http 127.0.0.1:7700

## Set up, then every check CI runs: format, clippy, layering, rustdoc, the
## Rust tests, then the front ends against their real clients (Jupyter,
## the editor in code-server) and the kernel module in qemu.
## Each step runs even after one failed, and a timed summary of every step
## ends the output (scripts/test-all.sh).
test: setup
	MAKE="$(MAKE)" CARGO="$(CARGO)" bash scripts/test-all.sh

## The Jupyter front end against real clients: jupyter_kernel_test,
## nbclient on every notebook in notebooks/, jupyter console --existing on
## spindle run --jupyter, robustness (interrupt, forged signatures,
## disconnects), the debugger (debug_request/debug_event), and JupyterLab
## in headless Chromium, its debugger panel included (screenshots in
## target/jupyter-lab/).
JUPYTER_VENV := .cache/jupyter-venv/bin
SPINDLE_DEBUG_BIN = $(abspath $(or $(CARGO_TARGET_DIR),target))/debug/spindle
SPINDLE_RELEASE_BIN = $(abspath $(or $(CARGO_TARGET_DIR),target))/release/spindle
test-jupyter: setup
	$(CARGO) build --bin spindle
	cd kernel/jupyter/tests/clients && SPINDLE_BIN=$(SPINDLE_DEBUG_BIN) $(CURDIR)/$(JUPYTER_VENV)/python -m pytest -q
	cd kernel/jupyter/tests/lab && SPINDLE_BIN=$(SPINDLE_DEBUG_BIN) node --test --test-concurrency=1 lab.test.mjs debugger.test.mjs

## Spindle's Jupyter kernel against ipykernel (target/bench/jupyter.json).
bench-jupyter: setup
	$(CARGO) build --release --bin spindle
	$(JUPYTER_VENV)/python kernel/jupyter/benches/jupyter_latency.py $(SPINDLE_RELEASE_BIN)

## Every benchmark, each beside its anchor in the same run (supervisor,
## operate, embed, pipeline, gate, scheduler, lua_host, netlink, lsp, jupyter,
## debugger, journal, soak;
## BENCHES="soak supervisor" for some). Each writes target/bench/NAME.json and
## exits non-zero when its anchor could not run; all of them run, then
## target/bench/summary.json, and the target fails if any benchmark failed.
bench: setup
	CARGO=$(CARGO) python3 benches/summary.py $(BENCHES)

## The netlink codec's fuzz targets, FUZZ_SECONDS (default 60) each.
fuzz:
	bash kernel/netlink/fuzz/run.sh

## The kernel module and the daemon in a real Linux kernel under qemu.
kmod-e2e: setup
	$(CARGO) build --bin spindle
	SPINDLE_BIN=$(SPINDLE_DEBUG_BIN) bash kmod/e2e/run.sh

## Not in CI: 50 services under load for 30 minutes; slopes of zombies, fds,
## threads, RSS and CPU (target/bench/longrun.json). DURATION=3m for a trial.
longrun:
	$(CARGO) bench --bench longrun -- --duration $(or $(DURATION),30m)

## Control-plane latency and reload of a 200-service graph beside supervisord.
bench-operate:
	$(CARGO) bench --bench operate

## What an attached debugger costs the requests it does not stop
## (target/bench/debugger.json).
bench-debugger:
	$(CARGO) bench -p spindle-dap --bench debugger

## The same ways counted in instructions by callgrind, where the machine's
## load cannot move them (target/bench/debugger_instructions.json).
bench-debugger-instructions:
	CARGO=$(CARGO) bash scripts/bench-debugger-instructions.sh

## What one no-op request costs the daemon, per thread, in instructions
## counted by callgrind: a profile, no anchor (target/bench/request_instructions.json).
request-instructions:
	CARGO=$(CARGO) bash scripts/request-instructions.sh

## `spindle dap` driven by a DAP client nobody here wrote
## (@vscode/debugadapter-testsupport's DebugClient, pinned by
## dap/tests/node/package-lock.json), on the debug build of the binary.
test-dap:
	bash scripts/setup_dap.sh
	$(CARGO) build --bin spindle
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

## The language server and the VS Code extension against real clients:
## pytest-lsp drives `spindle lsp`; the TypeScript checks; the packaged
## extension in code-server, driven by headless Chromium (screenshots in
## target/e2e/). Needs scripts/setup-editor.sh (run by setup-editor).
editor-test: setup-editor vsix
	$(CARGO) build --bin spindle
	.cache/lsp-venv/bin/python -m pytest lsp/tests/pytest -q
	cd vscode-extension && npm run --silent check
	cd vscode-extension && node --test e2e/

## The VS Code extension as vscode-extension/spindle.vsix (@vscode/vsce).
vsix: setup-editor
	cd vscode-extension && npm run --silent check && npm run --silent package

setup-editor:
	bash scripts/setup-editor.sh
