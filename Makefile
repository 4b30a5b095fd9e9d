# Everything CI runs is `make test`; nothing here needs a manual step first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Re-install when the dependency list changes; the stamp lives inside the venv.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test lint typecheck pytest run bench chaos clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,gateway]'
	rm -f $(VENV)/.installed-*
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

run: install
	$(BIN)/factory run

bench: install
	$(BIN)/python -m bench

# Kills and outages with the figures printed; exits non-zero if an invariant breaks (minutes).
chaos: install
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) .factory .mypy_cache .ruff_cache
