"""Reading py-spy's raw (collapsed-stack) output: seconds per function, inclusive, by thread group."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.procs import ROOT

_FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_key(frame: str) -> str:
    """`function (file)` without the line number, the file relative to the repository or to site-packages."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    rel = file.split("site-packages/")[-1] if "site-packages/" in file else file.replace(str(ROOT) + "/", "")
    return f"{m.group('fn')} ({rel})"


def stacks(raw: Path) -> list[tuple[str, int]]:
    """(`thread name;root frame;...;leaf frame`, samples) per line. py-spy names a thread (`thread (tid): name`) only on
    the lines sampled after it learnt the name, so the name is looked up by thread id for the others."""
    names: dict[str, str] = {}
    parsed: list[tuple[str, list[str], int]] = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        head, *frames = stack.split(";")
        tid, _, name = head.partition(": ")
        if name:
            names[tid] = name
        parsed.append((tid, frames, int(count_text)))
    return [(";".join([names.get(tid, tid), *frames]), count) for tid, frames, count in parsed]


def summarize(raw: Path, rate: int, top: int = 40) -> dict[str, Any]:
    """For the main thread and for all other threads together: the seconds sampled, and the `top` functions by
    inclusive seconds (a function counts once per sample however deep it recurs)."""
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    samples: Counter[str] = Counter()
    for stack, count in stacks(raw):
        frames = stack.split(";")
        group = "main" if frames[0] == "MainThread" else "workers"
        samples[group] += count
        for key in {frame_key(f) for f in frames[1:]}:
            inclusive[group][key] += count
    return {g: {"wall_s": n / rate, "top": [(k, v / rate) for k, v in inclusive[g].most_common(top)]} for g, n in samples.items()}
