# Every target creates .venv and installs what it needs, so each works on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JSON_FORMATS := envoy-json,caddy,traefik-json,cloudflare,kong-json,json

.PHONY: demo test check bench fmt clean install uninstall

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m compileall -q auditor
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/ruff format --check auditor tests benchmarks examples
	$(BIN)/ruff check auditor tests benchmarks examples
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format auditor tests benchmarks examples
	$(BIN)/ruff check --fix auditor tests benchmarks examples

# bench: nginx at 1M lines beside goaccess; every format at 200k lines; the JSON formats
# at 1M lines (sustained: a scan's fixed start and end, ~0.4 s, weigh 13% at 200k);
# the JSON formats under hit-heavy traffic (--traffic stress).
# Byte-compiled first, as a real install (pip install .) leaves it: an editable install
# does not, and with PYTHONDONTWRITEBYTECODE set every start would compile every module.
bench: $(STAMP)
	$(BIN)/python -m compileall -q auditor
	$(BIN)/python benchmarks/bench_scan.py
	$(BIN)/python benchmarks/bench_formats.py
	$(BIN)/python benchmarks/bench_formats.py --lines 1000000 --no-decode --only $(JSON_FORMATS)
	$(BIN)/python benchmarks/bench_formats.py --traffic stress --only $(JSON_FORMATS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache

install:
	PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" sh scripts/install.sh

uninstall:
	PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" PURGE="$(PURGE)" sh scripts/uninstall.sh
