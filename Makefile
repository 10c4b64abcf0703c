# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The folders stream/, detectors/ and updaters/ install as vigil.stream, vigil.detectors and
# vigil.updaters; mypy cannot follow setuptools' editable mapping, so it reads a tree of links.
LINK_TREE = mkdir -p var/typecheck/vigil && for p in stream detectors updaters; do \
	ln -sfn ../../../$$p var/typecheck/vigil/$$p; done

.PHONY: install system-deps test lint typecheck unit demo docs bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Vigil needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -c 'from vigil.detectors.adaptive_kernel import warm_up; warm_up()'  # compile once
	$(LINK_TREE)
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

typecheck: install
	@$(LINK_TREE)
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q -m "not integration"

# Debian packages the tests use: prometheus (promtool), prometheus-alertmanager (amtool),
# kcat, socat, openssl. Quick when they are installed; installs them (as root) when not.
system-deps:
	.ci/install-system-deps.sh

test: system-deps lint typecheck
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir var/site
	$(BIN)/pytest -q

demo: install
	$(BIN)/vigil demo

# The documentation site (docs/, mkdocs.yml) on http://127.0.0.1:8000, rebuilt on every edit.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

BENCHMARKS := quality nab updaters drift engine throughput latency memory run_memory replay

bench: install
	@for name in $(BENCHMARKS); do \
	  [ -f bench/$$name.py ] || continue; \
	  echo "== bench/$$name.py"; $(BIN)/python bench/$$name.py || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var
