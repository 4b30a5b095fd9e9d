# Everything CI runs is `make test`; nothing here needs a manual step first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Re-install when the dependency list changes; the stamp lives inside the venv.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test lint typecheck pytest run bench screenshots clean

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

# A PNG of every operator console page in .factory/screenshots/ (Debian's chromium; apt-installed when missing).
screenshots: install
	$(BIN)/python -m tests.console.screenshots

clean:
	rm -rf $(VENV) .factory .mypy_cache .ruff_cache
