# Two commands for a fresh machine: `make run` and `make test`. Everything else is installed by them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck sandbox clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(STAMP)

# Runs the bot. With no tenant configured (.env without PROVISIONING_CLIENT_ID) it starts the local
# emulated Microsoft cloud in-process and points the bot at it.
run: $(STAMP)
	$(PY) -m scripts.run

# Installs what the tests need, then runs every test.
test: $(STAMP)
	NO_PROXY=127.0.0.1,localhost $(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy app.py bot dialogs cards provisioning sandbox

# The emulated Microsoft cloud alone, printing its .env lines.
sandbox: $(STAMP)
	$(PY) -m sandbox

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache test-output
