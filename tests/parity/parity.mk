# Parity tier: compares imgcls against REAL torchvision, which lives in its own venv (.venv-ref,
# git-ignored) because the project venv is pinned to the CPU torch 2.13.0 build that PyPI's
# torchvision cannot load. Included from the main Makefile (`-include tests/parity/parity.mk`).
#
#   make venv-ref      build .venv-ref (torch 2.14.1 + torchvision 0.29.1 from PyPI, ~5.6 GB, ~3.5 min)
#   make test-parity   build both venvs, then run only the parity tests
#
# `make install-test` (so `make test` and CI) builds .venv-ref too. Locally, IMGCLS_NO_REF_VENV=1
# skips it; the parity tests then skip with a message (never in CI: with CI set they fail).

REF_VENV := .venv-ref

.PHONY: venv-ref test-parity

# Rebuilt (an idempotent check, or a Pillow/numpy re-pin) when the script or the project venv
# changes: the script pins Pillow/numpy to the project venv's versions.
$(REF_VENV)/.ref-ready: scripts/make-ref-venv.sh $(VENV)/.installed
	REF_VENV="$(REF_VENV)" PYTHON="$(PYTHON)" bash scripts/make-ref-venv.sh

venv-ref: $(REF_VENV)/.ref-ready

ifneq ($(IMGCLS_NO_REF_VENV),1)
install-test: venv-ref
endif

test-parity: install-test venv-ref
	$(BIN)/python -m pytest tests/parity -m parity $(PYTEST_ARGS)
