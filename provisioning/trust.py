"""Which certificate authorities to trust: the system's, plus every bundle named by SSL_CERT_FILE or
REQUESTS_CA_BUNDLE in the environment or `.env`. A bundle adds trust; it never replaces another (a machine-wide
SSL_CERT_FILE and the sandbox's CA in `.env` must both work)."""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path
from typing import Any, Sequence

import requests


def ssl_context(bundles: Sequence[str]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for bundle in bundles:
        context.load_verify_locations(cafile=bundle)
    return context


def combined_bundle(bundles: Sequence[str], directory: Path) -> str | None:
    """One PEM file with every bundle (for `requests`, which takes a single path). Blocking: call off the loop."""
    if not bundles:
        return None
    pem = b"".join(Path(b).read_bytes().rstrip() + b"\n" for b in bundles)
    try:
        import certifi

        pem = Path(certifi.where()).read_bytes().rstrip() + b"\n" + pem
    except ImportError:
        pass
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"ca-bundle-{hashlib.sha256(pem).hexdigest()[:12]}.pem"
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(pem)
        os.replace(tmp, target)
    return str(target)


class TrustingSession(requests.Session):
    """Trusts the configured CA bundle; a plain Session.verify loses to REQUESTS_CA_BUNDLE from the environment."""

    def __init__(self, ca_bundle: str | None) -> None:
        super().__init__()
        self._ca_bundle = ca_bundle

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self._ca_bundle:
            kwargs.setdefault("verify", self._ca_bundle)
        return super().request(method, url, *args, **kwargs)
