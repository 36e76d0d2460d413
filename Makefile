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
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm; }
	npm ci --no-audit --no-fund --prefix tools/playground

# Runs the bot. With no tenant configured (.env without PROVISIONING_CLIENT_ID) it starts the local
# emulated Microsoft cloud in-process, points the bot at it, and starts the Agents Playground.
run: $(STAMP) $(PLAYGROUND)
	$(PY) -m scripts.run

# Installs what the tests need, then runs every test: inside a network namespace that has only loopback when the
# machine allows one, so nothing a test starts (bot, sandbox, Playground, Chromium) can reach anything else.
test: $(STAMP) $(CHROMIUM) $(PLAYGROUND)
	@if unshare --net --map-root-user true 2>/dev/null; then \
		echo "Running the tests in a loopback-only network namespace."; \
		unshare --net --map-root-user sh -c 'ip link set lo up && NO_PROXY=127.0.0.1,localhost $(PY) -m pytest'; \
	else \
		echo "No network namespace available here; running the tests on the host network (they only use 127.0.0.1)."; \
		NO_PROXY=127.0.0.1,localhost $(PY) -m pytest; \
	fi

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
