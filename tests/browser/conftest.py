"""Fixtures for this suite."""

from __future__ import annotations

import pytest


@pytest.fixture
def backend() -> dict[str, str]:
    """This suite runs on the embedded SQLite backend only (the storage, provisioning and bot suites cover both)."""
    return {}
