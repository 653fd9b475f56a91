# seawall — developer entry points. Every target bootstraps .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
NATIVE := $(VENV)/.native-built
CARGO  ?= cargo
# Cargo's build cache, kept outside the checkout and shared by every clone on this
# machine (a fresh clone, CI's, rebuilds only seawall's own crates, not tokio, hyper,
# rustls, ring...): `make CARGO_TARGET_DIR=target` keeps it in the checkout instead.
CARGO_TARGET_DIR ?= $(HOME)/.cache/seawall/cargo-target
export CARGO_TARGET_DIR
# The fuzz targets' (nightly, sanitizers): a cache of their own.
FUZZ_TARGET_DIR ?= $(HOME)/.cache/seawall/fuzz-target
# The Rust core is rebuilt (incrementally, from that cache) when any of these change.
RUST_SOURCES := Cargo.toml $(wildcard Cargo.lock) $(shell find crates -name '*.rs' -o -name Cargo.toml 2>/dev/null)

.PHONY: test rust-check native demo demo-policy lint typecheck bench-policy bench-proxy bench-control docs clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "seawall needs Python 3.11+"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q 'maturin>=1.8,<2'
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The extension module seawall._native, built in release (fat LTO) into src/seawall/.
$(NATIVE): $(STAMP) $(RUST_SOURCES)
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release --quiet
	@touch $(NATIVE)

native: $(NATIVE)

# cargo fmt, clippy (warnings are errors) and the Rust unit tests.
rust-check:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings
	$(CARGO) test --workspace --exclude seawall-native --quiet

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts

typecheck: $(STAMP)
	$(BIN)/mypy src tests/typing

test: $(NATIVE) lint typecheck rust-check fuzz-smoke
	bash scripts/install_etcd.sh
	bash scripts/install_browser.sh
	bash scripts/apt_install.sh promtool prometheus
	$(BIN)/python -m pytest

# ---------------------------------------------------------------- fuzzing
# The data plane's fuzz targets (fuzz/, its own cargo workspace), run with
# cargo-fuzz (crates.io) on the nightly toolchain: docs/proxy/fuzzing.md.
# `make fuzz` runs each target for FUZZ_SECONDS, then the differential tests
# of the two runtimes (docs/proxy/differential.md) with FUZZ_DIFF_EXAMPLES
# random sequences per policy (`make test` runs 500); `make fuzz-smoke` (part
# of `make test`) runs each target for FUZZ_SMOKE_SECONDS, after fuzz-check
# (fmt, clippy, and every seed and fixed crash replayed on stable).
.PHONY: fuzz fuzz-smoke fuzz-check fuzz-tool
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_DIFF_EXAMPLES ?= 5000
FUZZ_TARGETS ?= request_head trace_context spec_json response_head connect_head otlp_decode
FUZZ_TOOLCHAIN ?= nightly
CARGO_FUZZ_ROOT ?= $(HOME)/.cargo
CARGO_FUZZ ?= $(CARGO_FUZZ_ROOT)/bin/cargo-fuzz
FUZZ_RUN = CARGO_FUZZ=$(CARGO_FUZZ) FUZZ_TOOLCHAIN=$(FUZZ_TOOLCHAIN) CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR)/nightly bash fuzz/run.sh

# Installed once (skipped while `cargo-fuzz fuzz --version` works).
fuzz-tool:
	@$(CARGO_FUZZ) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked --root $(CARGO_FUZZ_ROOT)

fuzz-check:
	cd fuzz && $(CARGO) fmt --check
	cd fuzz && CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR)/stable $(CARGO) clippy --all-targets --quiet -- -D warnings
	cd fuzz && CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR)/stable $(CARGO) test --quiet

fuzz: fuzz-tool $(NATIVE)
	$(FUZZ_RUN) $(FUZZ_SECONDS) $(FUZZ_TARGETS)
	SEAWALL_DIFF_EXAMPLES=$(FUZZ_DIFF_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider tests/conformance -k random

fuzz-smoke: fuzz-tool fuzz-check
	$(FUZZ_RUN) $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

demo: $(NATIVE)
	$(BIN)/python -m examples.mesh_demo

demo-policy: $(NATIVE)
	$(BIN)/python -m examples.demo

bench-policy: $(NATIVE)
	$(BIN)/python -m pip install -q -r benchmarks/requirements-policy.txt
	$(BIN)/python benchmarks/policy_overhead.py

bench-proxy: $(NATIVE)
	bash benchmarks/install_proxy_peers.sh
	$(BIN)/python -m pip install -q -r benchmarks/requirements-proxy.txt
	$(BIN)/python benchmarks/proxy_throughput.py

bench-control: $(NATIVE)
	bash scripts/install_etcd.sh
	$(BIN)/python benchmarks/control_push.py

# The trace store of `seawall traces` (benchmarks/trace_store.py): ingest, fetch by id and
# search over TRACE_SPANS spans, against a naive SQLite schema; pure Python, no native build.
# `make bench-traces TRACE_SPANS=200000` for a quick run.
# SLO evaluation (benchmarks/slo_eval.py): one pass over 1,000 SLOs of 30 days of 10 s
# samples, against a naive evaluator; the history's memory per objective.
.PHONY: bench-slo
bench-slo: $(STAMP)
	$(BIN)/python benchmarks/slo_eval.py

.PHONY: bench-traces
TRACE_SPANS ?= 1000000
bench-traces: $(STAMP)
	$(BIN)/python benchmarks/trace_store.py --spans $(TRACE_SPANS)

docs: $(STAMP)
	$(BIN)/python scripts/gen_api_reference.py

# The shared cargo caches stay (rm -rf $(CARGO_TARGET_DIR) $(FUZZ_TARGET_DIR) for those).
clean:
	rm -rf $(VENV) target src/seawall/_native*.so .mypy_cache .ruff_cache .pytest_cache .hypothesis
