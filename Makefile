# Two commands for a fresh machine: `make run` and `make test`. Everything else is installed by them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
PLAYGROUND := tools/playground/node_modules/.package-lock.json
# The server binary of whichever PostgreSQL major is installed; when none is, a path naming what is missing (so the
# rule that installs it runs).
POSTGRES := $(or $(firstword $(wildcard /usr/lib/postgresql/*/bin/postgres)),/usr/lib/postgresql/MAJOR/bin/postgres)
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

# The emoji the cards use (✋ ✓), so screenshots show what Teams shows rather than empty boxes.
$(EMOJI_FONT):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq fonts-noto-color-emoji

# Debian's PostgreSQL server for the storage tests, which start their own throwaway server as an unprivileged user
# (tests/fixtures/postgres.py). The distribution's own cluster is not wanted: postgresql-common is told not to create
# it (create_main_cluster, read from createcluster.d), so no service starts and nothing listens on port 5432.
$(POSTGRES):
	$(SUDO) mkdir -p /etc/postgresql-common/createcluster.d
	echo "create_main_cluster = false" | $(SUDO) tee /etc/postgresql-common/createcluster.d/no-main-cluster.conf >/dev/null
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq postgresql

# The Microsoft 365 Agents Playground, pinned by the lockfile.
$(PLAYGROUND): tools/playground/package-lock.json
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm; }
	npm ci --no-audit --no-fund --prefix tools/playground

# Runs the bot. With no tenant configured (.env without PROVISIONING_CLIENT_ID) it starts the local
# emulated Microsoft cloud in-process, points the bot at it, and starts the Agents Playground.
run: $(STAMP) $(PLAYGROUND)
	$(PY) -m scripts.run

# Installs what the tests need, then runs every test (PYTEST_ARGS narrows them: `make test PYTEST_ARGS=tests/store`):
# inside a network namespace that has only loopback when the machine allows one, so nothing a test starts (bot,
# sandbox, Playground, Chromium, PostgreSQL) can reach anything else. PostgreSQL refuses to run as root. As real root,
# the namespace is a network namespace alone: a user namespace that maps only uid 0 would leave no other uid to switch
# to, and root keeps its real uids so the fixture runs the server as the `postgres` account. Otherwise an unprivileged
# user maps itself to root in a user namespace (needed to bring `lo` up) and the fixture runs the server as that user.
PYTEST := NO_PROXY=127.0.0.1,localhost $(PY) -m pytest $(PYTEST_ARGS)
test: $(STAMP) $(CHROMIUM) $(EMOJI_FONT) $(PLAYGROUND) $(POSTGRES)
	@if [ "$$(id -u)" = 0 ] && unshare --net true 2>/dev/null; then \
		echo "Running the tests as root in a loopback-only network namespace (no user namespace; PostgreSQL runs as the postgres account)."; \
		unshare --net sh -c 'ip link set lo up && $(PYTEST)'; \
	elif [ "$$(id -u)" != 0 ] && unshare --net --map-root-user true 2>/dev/null; then \
		echo "Running the tests in a loopback-only network namespace."; \
		unshare --net --map-root-user sh -c 'ip link set lo up && $(PYTEST)'; \
	else \
		echo "No network namespace available here; running the tests on the host network (they only use 127.0.0.1)."; \
		$(PYTEST); \
	fi

bench: $(STAMP)
	$(PY) -m bench.run

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy app.py bot dialogs cards provisioning sandbox store scripts

# The emulated Microsoft cloud alone, printing its .env lines.
sandbox: $(STAMP)
	$(PY) -m sandbox

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache test-output
