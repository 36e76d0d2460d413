"""Shared test configuration. Fixture modules live in tests/fixtures/ and are loaded as plugins."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest

pytest_plugins = sorted(
    f"tests.fixtures.{m.name}" for m in pkgutil.iter_modules([str(Path(__file__).parent / "fixtures")])
)
pytest.register_assert_rewrite(*pytest_plugins)
