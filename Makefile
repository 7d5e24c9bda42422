# hftaccel: the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PYTEST_ARGS ?= -n auto

.PHONY: demo test bench sim sim-deps formal fuzz clean distclean venv

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "hftaccel needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

venv: $(VENV)/.stamp-base

# The package and its dashboard: what `make demo` (and then `hftaccel dash`) needs.
$(VENV)/.stamp-base: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dash]'
	@touch $@

# Everything the test suite needs: dev tools, training stack (torch CPU build), bench peers,
# gateware tools (Amaranth, cocotb 1.8.1 for Debian's Verilator 5.006), the dashboard and
# Playwright (which drives Debian's chromium: no browser download).
$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-base
	$(PIP) install --quiet -e '.[dev,train,bench,hw,dash]'
	@touch $@

# Simulators for the gateware tests (Debian's verilator and iverilog) and the browser of the
# dashboard test (Debian's chromium), installed with apt-get when running as root; otherwise a
# clear message (those tests then skip, saying why).
sim-deps:
	@missing=""; for t in verilator iverilog chromium; do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null \
	      || { echo "apt-get install$$missing failed"; exit 1; }; \
	  else \
	    echo "NOTE: the gateware and browser tests need the Debian packages$$missing:"; \
	    echo "      sudo apt-get install$$missing   (until then they are skipped)"; \
	  fi; \
	fi

demo: $(VENV)/.stamp-base
	$(BIN)/hftaccel run

test: $(VENV)/.stamp-test sim-deps
	@$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow and not gpu"; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

bench: $(VENV)/.stamp-test
	$(BIN)/python scripts/bench_book.py
	$(BIN)/python scripts/bench_pipeline.py

# Every cocotb testbench, long inputs included, on Verilator and on Icarus (the same tests
# pytest runs; `make -C hw/sim DUT=... SIM=...` runs one testbench interactively), including the
# full AMZN day through the whole RTL pipeline (writes build/sim/latency.json).
sim: $(VENV)/.stamp-test sim-deps
	$(BIN)/python -m pytest tests/rtl -m sim $(PYTEST_ARGS)

# Every SymbiYosys proof at its full bound (make test runs the quick ones); writes
# build/formal/formal.json.
formal: $(VENV)/.stamp-test
	$(BIN)/python hw/formal/run.py

# Coverage-guided fuzzing campaigns of every decoder (atheris, >= 1M executions per harness,
# hours on 2 cores); writes build/fuzz/campaign.json. Crashes go to build/fuzz/<harness>/.
fuzz: $(VENV)/.stamp-test
	nice -n 19 $(BIN)/python scripts/fuzz.py run

clean:
	rm -rf build out .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info host/*.egg-info
