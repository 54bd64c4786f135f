# The newcomer's two commands (README, "Quick start"):
#   make demo   set up, write the bundled spinal-gm example, segment it, write a QC page
#   make test   set up, run the test suite
# Set-up is README "Install" in a virtualenv ($(VENV)), done once: it is skipped while
# $(VENV)/bin/segtool exists (delete $(VENV) to reinstall).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
DEMO_DIR ?= build/demo
PYTEST_ARGS ?=

BIN := $(VENV)/bin
DEMO := $(abspath $(DEMO_DIR))

.PHONY: demo test setup

setup: $(BIN)/segtool

# torch first, so pip takes the CPU build; then segtool with its test extras (README "Install").
$(BIN)/segtool:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e ".[test]"

demo: $(BIN)/segtool
	@set -e; \
	image=$$($(BIN)/segtool example spinal-gm -o "$(DEMO)" --overwrite -q); \
	rm -rf "$(DEMO)/qc"; \
	mask=$$($(BIN)/segtool run spinal-gm "$$image" --qc "$(DEMO)/qc" --overwrite); \
	echo "image:   $$image"; \
	echo "mask:    $$mask"; \
	echo "QC page: $(DEMO)/qc/index.html"

# README "Tests": `pytest -q` in the activated virtualenv.
test: $(BIN)/segtool
	. $(BIN)/activate && pytest -q $(PYTEST_ARGS)
