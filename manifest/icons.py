"""Draws the Teams app icons without any imaging library: a 192×192 full-colour icon and a 32×32 white outline
on a transparent background, as the manifest requires. `python -m manifest.icons` rewrites them."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ACCENT = (0x46, 0x47, 0xC2)  # Teams purple


def png(width: int, height: int, pixels: list[list[tuple[int, ...]]], *, alpha: bool) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"".join(bytes(p) for p in row) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _shape(x: float, y: float) -> bool:
    """A gear-like ring with a check mark: 'set up', in unit coordinates."""
    dx, dy = x - 0.5, y - 0.5
    r = (dx * dx + dy * dy) ** 0.5
    ring = 0.30 <= r <= 0.40
    check = (abs((y - 0.58) - (x - 0.38)) < 0.045 and 0.30 <= x <= 0.46) or (abs((y - 0.58) + (x - 0.46) * 1.2) < 0.045 and 0.44 <= x <= 0.70)
    return ring or check


def color_icon(size: int = 192) -> bytes:
    rows: list[list[tuple[int, ...]]] = [[(255, 255, 255) if _shape((i + 0.5) / size, (j + 0.5) / size) else ACCENT for i in range(size)] for j in range(size)]
    return png(size, size, rows, alpha=False)


def outline_icon(size: int = 32) -> bytes:
    rows: list[list[tuple[int, ...]]] = [[(255, 255, 255, 255) if _shape((i + 0.5) / size, (j + 0.5) / size) else (0, 0, 0, 0) for i in range(size)] for j in range(size)]
    return png(size, size, rows, alpha=True)


def main() -> None:
    (HERE / "color.png").write_bytes(color_icon())
    (HERE / "outline.png").write_bytes(outline_icon())


if __name__ == "__main__":
    main()
