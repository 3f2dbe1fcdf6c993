# Quick start: `make demo` (the main job on the built-in synthetic data) and `make test`.
# Each target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Extra index for torch, e.g. https://download.pytorch.org/whl/cpu or .../whl/cu128 (see README).
TORCH_INDEX ?=
PIP_EXTRA := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
STAMP := $(VENV)/.installed
# Extra arguments for `cxr-anomaly demo`, e.g. ARGS=--reference (the reference configuration).
ARGS ?=

.PHONY: install demo readme test test-slow test-all lint typecheck check browser clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_EXTRA) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cxr-anomaly demo --out runs/demo $(ARGS)

# The generated tables of docs/results.md and the demo figures, from runs/demo and benchmarks/results.
readme: $(STAMP)
	test -f runs/demo/results.json || $(MAKE) demo
	$(PY) benchmarks/update_readme.py --figures runs/demo

# Headless Chromium for the report-rendering test; best effort, the test skips without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	  || echo "chromium not installed: the report-rendering test will be skipped"; }

# The fast tests (the default); `test-slow`: the ones marked slow (several processes, whole
# benchmarks, kill-and-resume), which CI runs too; `test-all`: both.
test: $(STAMP) browser
	$(PY) -m pytest

test-slow: $(STAMP) browser
	$(PY) -m pytest -m slow

test-all: $(STAMP) browser
	$(PY) -m pytest -m ''

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# What CI runs (.ci/run), in the same order.
check: lint typecheck test test-slow

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
