"""Where every benchmark writes: `<out>/<name>.json` (the figures) and `<out>/<name>.md` (the table, also printed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write(out: Path, name: str, figures: Any, table: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2))
    (out / f"{name}.md").write_text(table)
    print(table)
