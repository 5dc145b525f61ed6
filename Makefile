# The README's two commands: `make demo` (install + reproduce the quick profile + report)
# and `make test` (install + run the test suite). Both create ./.venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; on a machine without the local wheel, add
# TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu".
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install demo test lint report clean

$(BIN)/nanorepro: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# MovieLens-100k ships inside the recbole wheel; data only (never imported), so no dependencies
	$(BIN)/python -m pip install --quiet --no-deps "recbole==1.2.1"
	touch $@

install: $(BIN)/nanorepro

demo: install
	$(BIN)/nanorepro reproduce --profile quick

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks scripts

report: install
	$(BIN)/nanorepro report --profile full

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
