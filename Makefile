# The newcomer's two commands (README, "Quick start"):
#   make demo   set up, write the bundled spinal-gm example, segment it, write a QC page
#   make test   set up, run the test suite without the tests marked slow (under 3 minutes on 2 cores)
#   make test-all   the whole suite, slow tests included (what CI runs)
# and `make readme-check`: the demo, then every command of README.md, in order, in a temporary folder.
# Set-up is README "Install" in a virtualenv ($(VENV)), done once: it is skipped while
# $(VENV)/bin/segtool exists (delete $(VENV) to reinstall).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
DEMO_DIR ?= build/demo
PYTEST_ARGS ?=

BIN := $(VENV)/bin
DEMO := $(abspath $(DEMO_DIR))

.PHONY: demo test test-all setup readme-check

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

# README "Tests": `pytest -q -m "not slow"` (make test) and `pytest -q` (make test-all) in the activated virtualenv.
test: $(BIN)/segtool
	. $(BIN)/activate && pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: $(BIN)/segtool
	. $(BIN)/activate && pytest -q $(PYTEST_ARGS)

# Every ```bash and ```python block of README.md as written (scripts/readme_check.py says how blocks are marked).
readme-check: demo
	$(BIN)/python scripts/readme_check.py
