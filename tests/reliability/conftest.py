"""The reliability suite: sized for `make test`; `pytest tests/reliability --soak` runs the long version.

Each test records its figures (counts, durations, errors) in test-output/reliability/<test>.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import pytest

OUT = Path(__file__).resolve().parents[2] / "test-output" / "reliability"


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak"))


@pytest.fixture
def figures(request: pytest.FixtureRequest, soak: bool) -> Callable[..., None]:
    def record(**values: Any) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        name = request.node.name + ("-soak" if soak else "")
        (OUT / f"{name}.json").write_text(json.dumps({"test": request.node.nodeid, "soak": soak, **values}, indent=2))

    return record


class Reapable(Protocol):
    def reap(self) -> None: ...


@pytest.fixture
def reaper() -> Iterator[list[Reapable]]:
    """Bot processes to kill at teardown, whatever happened (a timed-out test does not reach its own `finally`)."""
    processes: list[Reapable] = []
    yield processes
    for process in processes:
        process.reap()


@pytest.fixture
def backend() -> dict[str, str]:
    """This suite runs on the embedded SQLite backend only (the storage, provisioning and bot suites cover both)."""
    return {}
