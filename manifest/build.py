"""`python -m manifest.build --app-id <guid> [--bot-domain host] [--out file.zip]`: the Teams app package, a flat
zip of manifest.json and the two icons, with the bot's app id (MicrosoftAppId by default) filled in."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))+$")


class ManifestError(ValueError):
    pass


def render(app_id: str, bot_domain: str) -> dict[str, Any]:
    if not GUID.match(app_id or ""):
        raise ManifestError(f"The app id must be the Azure Bot's Microsoft App ID (a GUID), got '{app_id}'. "
                            "Pass --app-id or set MicrosoftAppId.")
    if not DOMAIN.match(bot_domain or ""):
        raise ManifestError(f"The bot domain must be a host name like bot.contoso.com (no scheme, no path), got '{bot_domain}'.")
    text = (HERE / "manifest.template.json").read_text().replace("{{APP_ID}}", app_id.lower()).replace("{{BOT_DOMAIN}}", bot_domain)
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def build(app_id: str, bot_domain: str, out: Path) -> Path:
    manifest = render(app_id, bot_domain)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=2))
        z.write(HERE / "color.png", "color.png")
        z.write(HERE / "outline.png", "outline.png")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m manifest.build", description=__doc__)
    p.add_argument("--app-id", default=os.environ.get("MicrosoftAppId", ""))
    p.add_argument("--bot-domain", default=os.environ.get("BOT_DOMAIN", ""), help="the host the bot is reached at, e.g. bot.contoso.com")
    p.add_argument("--out", type=Path, default=HERE / "build" / "copilot-setup-bot.zip")
    args = p.parse_args(argv)
    try:
        path = build(args.app_id, args.bot_domain, args.out)
    except ManifestError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    print(f"Wrote {path}. Upload it in Teams: Apps → Manage your apps → Upload an app.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
