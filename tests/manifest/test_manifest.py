"""The Teams app package: a v1.30-valid manifest and icons of the right size and kind, in a flat zip."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

import jsonschema
import pytest

from manifest.build import ManifestError, build, main
from sandbox.schema import CONTRACTS

SCHEMA = json.loads((CONTRACTS / "teams-manifest-v1.30.json").read_text())
APP_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def png_info(data: bytes) -> tuple[int, int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
    idat = b""
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, color_type, zlib.decompress(idat)


def test_package_validates_and_holds_the_icons(tmp_path: Path) -> None:
    out = build(APP_ID, "bot.contoso.com", tmp_path / "app.zip")
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["color.png", "manifest.json", "outline.png"]  # flat, no folder
        manifest = json.loads(z.read("manifest.json"))
        color, outline = z.read("color.png"), z.read("outline.png")
    errors = [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(manifest)]
    assert not errors, errors[:3]
    assert manifest["manifestVersion"] == "1.30" and manifest["id"] == APP_ID and manifest["bots"][0]["botId"] == APP_ID
    assert set(manifest["bots"][0]["scopes"]) == {"personal", "team", "groupChat"}
    titles = [c["title"] for c in manifest["bots"][0]["commandLists"][0]["commands"]]
    assert titles == ["setup copilot", "status", "help"] and all(len(t) <= 32 for t in titles)
    assert len(manifest["name"]["short"]) <= 30 and "bot.contoso.com" in manifest["validDomains"]
    w, h, kind, _ = png_info(color)
    assert (w, h, kind) == (192, 192, 2)
    w, h, kind, raw = png_info(outline)
    assert (w, h, kind) == (32, 32, 6)
    pixels = [raw[r * (1 + 32 * 4) + 1:(r + 1) * (1 + 32 * 4)] for r in range(32)]
    rgba = [tuple(row[i:i + 4]) for row in pixels for i in range(0, 128, 4)]
    assert all(p[3] == 0 or p[:3] == (255, 255, 255) for p in rgba), "outline must be white on transparent"
    assert any(p[3] == 0 for p in rgba) and any(p[3] == 255 for p in rgba)


@pytest.mark.parametrize(("app_id", "domain"), [("not-a-guid", "bot.contoso.com"), ("", "bot.contoso.com"), (APP_ID, "https://bot.contoso.com/x")])
def test_bad_input_is_refused_clearly(tmp_path: Path, app_id: str, domain: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ManifestError):
        build(app_id, domain, tmp_path / "x.zip")
    assert main(["--app-id", app_id, "--bot-domain", domain, "--out", str(tmp_path / "y.zip")]) == 2
    assert "must be" in capsys.readouterr().err
