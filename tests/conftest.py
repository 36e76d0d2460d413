"""Shared test configuration. Fixture modules live in tests/fixtures/ and are loaded as plugins."""

from __future__ import annotations

import os
import pkgutil
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every `make test` (a landing must not depend on luck);
# HYPOTHESIS_PROFILE=explore draws new ones, to look for more.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

pytest_plugins = sorted(
    f"tests.fixtures.{m.name}" for m in pkgutil.iter_modules([str(Path(__file__).parent / "fixtures")])
)
pytest.register_assert_rewrite(*pytest_plugins)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the reliability suite's long version (minutes, not seconds)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keep each test's call report on the item, so fixtures can save evidence when a test failed."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
