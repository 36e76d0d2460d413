# Two commands for a fresh machine: `make run` and `make test`. Everything else is installed by them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium
PLAYGROUND := tools/playground/node_modules/.package-lock.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck sandbox clean bench

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(STAMP)

# Debian's Chromium for the browser tests (never a browser download).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium

# The Microsoft 365 Agents Playground, pinned by the lockfile.
$(PLAYGROUND): tools/playground/package-lock.json
	npm ci --no-audit --no-fund --prefix tools/playground

# Runs the bot. With no tenant configured (.env without PROVISIONING_CLIENT_ID) it starts the local
# emulated Microsoft cloud in-process, points the bot at it, and starts the Agents Playground.
run: $(STAMP) $(PLAYGROUND)
	$(PY) -m scripts.run

# Installs what the tests need, then runs every test.
test: $(STAMP) $(CHROMIUM) $(PLAYGROUND)
	NO_PROXY=127.0.0.1,localhost $(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench.run

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy app.py bot dialogs cards provisioning sandbox

# The emulated Microsoft cloud alone, printing its .env lines.
sandbox: $(STAMP)
	$(PY) -m sandbox

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache test-output
