"""Misbehaviour on purpose, the way Microsoft's services are documented to misbehave.

Replication delay: a newly created application or password is invisible to follow-up calls for a while.
Throttling: 429 with Retry-After. Transient 503s. A fixed latency per call (for benchmarks). Dataverse's
bare 401 or 400-wrapping-429 on bursts of publish calls.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class FaultSettings:
    replication_delay_s: float = 3.0
    throttle_rate: float = 0.0
    retry_after_s: float = 1.0
    unavailable_rate: float = 0.0
    latency_ms: float = 0.0
    dataverse_burst_rate: float = 0.0
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: "FaultSettings | None" = None) -> "FaultSettings":
        """Update `base` (or the defaults) from a JSON object; unknown or invalid fields raise ValueError."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}; known: {', '.join(known)}")
        values = (base or cls()).to_dict()
        for name, value in data.items():
            if name == "seed":
                values[name] = None if value is None else int(value)
                continue
            number = float(value)
            if number < 0 or (name.endswith("_rate") and number > 1):
                raise ValueError(f"{name} must be {'between 0 and 1' if name.endswith('_rate') else '≥ 0'}")
            values[name] = number
        return cls(**values)


class FaultInjector:
    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._random = random.Random(settings.seed)

    def update(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._random = random.Random(settings.seed)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self._random.random() < rate

    def pick(self, options: list[str]) -> str:
        return self._random.choice(options)
