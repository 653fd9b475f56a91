# seawall — developer entry points. Every target bootstraps .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: test demo demo-policy lint typecheck bench-policy bench-proxy bench-control docs clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "seawall needs Python 3.11+"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts

typecheck: $(STAMP)
	$(BIN)/mypy src tests/typing

test: $(STAMP) lint typecheck
	bash scripts/install_etcd.sh
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m examples.mesh_demo

demo-policy: $(STAMP)
	$(BIN)/python -m examples.demo

bench-policy: $(STAMP)
	$(BIN)/python -m pip install -q -r benchmarks/requirements-policy.txt
	$(BIN)/python benchmarks/policy_overhead.py

bench-proxy: $(STAMP)
	bash benchmarks/install_proxy_peers.sh
	$(BIN)/python -m pip install -q -r benchmarks/requirements-proxy.txt
	$(BIN)/python benchmarks/proxy_throughput.py

bench-control: $(STAMP)
	bash scripts/install_etcd.sh
	$(BIN)/python benchmarks/control_push.py

docs: $(STAMP)
	$(BIN)/python scripts/gen_api_reference.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
