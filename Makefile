# The two commands (see README): `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# the explorer's browser tests drive Debian's chromium (as root here; sudo otherwise)
CHROMIUM := /usr/bin/chromium
# pytest-xdist workers (CI has 2 cores; the tests wait on nodes and chains a lot)
TEST_WORKERS ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test check setup setup-dev lint typecheck clean

demo: $(VENV)/.core
	$(BIN)/idlegrid demo

test: check

# format check, lint, type check and the test suite, in that order (one check script);
# compileall first writes the package's bytecode: the suite starts many node, helper and
# CLI processes, and where PYTHONDONTWRITEBYTECODE is set each would compile it again
check: $(VENV)/.dev node_modules/.installed $(CHROMIUM)
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/python -m compileall -q src
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20

setup: $(VENV)/.core
setup-dev: $(VENV)/.dev node_modules/.installed $(CHROMIUM)

$(VENV)/.core: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.core
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev,embed,train,fl,zk]'
	$(PIP) install --no-deps flwr==1.42.0
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get install -y -q chromium \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

lint:
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

typecheck:
	$(BIN)/mypy

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
