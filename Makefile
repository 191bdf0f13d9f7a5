# imgcls: the two commands a newcomer needs are `make serve` and `make test`.
# Both do the whole set-up on a fresh machine (virtualenv, package, dependencies) first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --disable-pip-version-check -c constraints.txt
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: install install-test serve test test-fast test-slow bench lint clean help

help:
	@echo "make serve       install, then run the server on http://$(HOST):$(PORT) (default model)"
	@echo "make test        install everything the suite needs, then run the whole suite"
	@echo "make lint        ruff static check (undefined names, unused imports); make test runs it first"
	@echo "make test-fast   unit + integration tests only (no browser/ray/parity/container/slow)"
	@echo "make bench       benchmark suite side by side with the seed baseline"
	@echo "make image       build the OCI image; make image-test runs and checks it"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip

# The package with the export extra (torch CPU, pinned by constraints.txt): artifacts are built
# on first use; and the HEIC decoder, so iPhone photos work out of the box. Re-runs only when the
# project metadata changes.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e ".[export,heic]"
	@touch $@

install: $(VENV)/.installed
	@$(BIN)/imgcls --help > /dev/null && echo "imgcls installed: $(BIN)/imgcls"

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e ".[export,heic,train,video,ray,bench,openvino,test]"
	@touch $@

install-test: $(VENV)/.installed-test
	@bash scripts/install-system-deps.sh

serve: install
	$(BIN)/imgcls serve --host $(HOST) --port $(PORT)

# Static check first: it takes a second and catches an undefined name on a path no test reaches.
lint: install-test
	$(BIN)/ruff check src tests

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: lint
	$(BIN)/python -m pytest -m "not slow and not browser and not parity and not ray and not container and not fuzz" $(PYTEST_ARGS)

bench: install-test
	$(BIN)/imgcls bench

clean:
	rm -rf $(VENV) .venv-ref build dist src/*.egg-info .pytest_cache test-artifacts

-include container/image.mk
-include tests/parity/parity.mk
