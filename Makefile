# Everything CI runs is `make test`; nothing here needs a manual step first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Re-install when the dependency list changes; the stamp lives inside the venv.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test lint typecheck pytest run bench bench-sweep chaos screenshots image image-smoke clean

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

# The sweeps the autoscaler's shipped defaults were chosen from (Fly, then DigitalOcean over five seeds:
# about half an hour; not part of `make bench`; `python -m bench sweep-digitalocean` for the latter alone).
bench-sweep: install
	$(BIN)/python -m bench sweep

# The worker image, built without a Docker engine: buildah (vfs storage, chroot isolation) on a
# Python 3.11 base made from Debian packages (images/base/build-base.sh, cached). Needs root and
# `apt-get install -y buildah debootstrap`.
IMAGE      ?= localhost/factory-worker:latest
BASE_IMAGE ?= localhost/factory-python:3.11-bookworm

image:
	images/base/build-base.sh $(BASE_IMAGE)
	buildah --storage-driver vfs bud --isolation chroot --layers=false -f images/worker/Dockerfile \
		--build-arg PYTHON_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

# Boot the built image's entrypoint against a SQLite store and the stub model (not in `make test`:
# building the image takes minutes): gateway ready, one message processed, SIGTERM drains, exit 0.
image-smoke: install
	FACTORY_IMAGE=$(IMAGE) $(BIN)/pytest -m image tests/image
# Kills and outages with the figures printed; exits non-zero if an invariant breaks (minutes).
chaos: install
	$(BIN)/python -m bench.chaos

clean:
	rm -rf $(VENV) .factory .mypy_cache .ruff_cache
