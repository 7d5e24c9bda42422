# hftaccel: the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PYTEST_ARGS ?= -n auto

.PHONY: demo test bench sim clean distclean venv

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "hftaccel needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

venv: $(VENV)/.stamp-base

# The package alone: what `make demo` needs.
$(VENV)/.stamp-base: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	@touch $@

# Everything the test suite needs: dev tools, training stack (torch CPU build), bench peers.
$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-base
	$(PIP) install --quiet -e '.[dev,train,bench]'
	@touch $@

demo: $(VENV)/.stamp-base
	$(BIN)/hftaccel run

test: $(VENV)/.stamp-test
	@$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow and not gpu"; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

bench: $(VENV)/.stamp-test
	$(BIN)/python scripts/bench_book.py

clean:
	rm -rf build out .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info host/*.egg-info
