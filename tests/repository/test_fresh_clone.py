"""The repository stands alone: a clone in an empty folder, with nothing beside it, starts the sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clone(into: Path) -> Path:
    """`git clone` of this repository, plus what the working tree changes and adds (so uncommitted work is tested too)."""
    target = into / "copilot-setup-bot"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(target)], check=True)
    changed = subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, changed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
        elif not source.exists():
            (target / name).unlink(missing_ok=True)  # deleted in the working tree
    return target


def test_a_fresh_clone_in_an_empty_folder_starts_the_sandbox(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    repo = clone(empty)
    assert sorted(p.name for p in empty.iterdir()) == ["copilot-setup-bot"], "nothing may sit beside the clone"
    env = {k: v for k, v in os.environ.items() if k != "COPILOT_SETUP_SCHEMAS"}
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "--state", "data/sandbox.db", "--cert-dir", "data/certs"],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline and not any(line.startswith("SANDBOX_URL=") for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        settings = dict(line.split("=", 1) for line in lines if "=" in line)
        assert {"GRAPH_ENDPOINT", "DATAVERSE_URL", "SANDBOX_URL"} <= set(settings), (lines, proc.stderr.read() if proc.poll() is not None else "")
        assert proc.poll() is None, "the sandbox stopped after printing its settings"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_nothing_reads_outside_the_repository() -> None:
    """No code, test, Makefile or script names a folder beside the repository (a fresh clone has none)."""
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    offenders = []
    for name in tracked:
        if not (name.endswith((".py", ".sh", ".js", ".mjs")) or name in ("Makefile",) or name.startswith(".ci/")):
            continue
        path = ROOT / name
        if not path.is_file() or path == Path(__file__):
            continue
        text = path.read_text(errors="replace")
        if "../shared" in text or '"shared" / "schemas"' in text or ".parent / \"shared\"" in text:
            offenders.append(name)
    assert offenders == []
