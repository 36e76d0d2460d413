"""Encryption for the one-time secret hand-off: the client secret's text as Fernet ciphertext, until its requester
confirms they copied it (or the hand-off time passes). The store keeps only the ciphertext.

Keys: SECRET_ENCRYPTION_KEY holds one or more Fernet keys, comma-separated, newest first (MultiFernet): new secrets
are encrypted with the first; any of them decrypts, so a key can be rotated by putting the new one in front and
dropping the old one once no secret older than the hand-off time remains. Without it, a key file (0600) is
generated; in production that file must not sit beside the database (provisioning/config.py refuses it).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import SecretUnavailableError


def load_keys(keys: tuple[str, ...], key_file: Path) -> list[bytes]:
    """The configured keys, or the key file's (generated if missing, mode 0600). Blocking."""
    if keys:
        return [k.encode() for k in keys]
    if key_file.exists():
        return [line.strip().encode() for line in key_file.read_text().splitlines() if line.strip()]
    key_file.parent.mkdir(parents=True, exist_ok=True)
    new = Fernet.generate_key()
    fd = os.open(key_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(new)
    return [new]


class Vault:
    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, ciphertext: str | bytes) -> str:
        token = ciphertext.encode() if isinstance(ciphertext, str) else ciphertext
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise SecretUnavailableError(
                "The stored client secret cannot be decrypted with the configured key.",
                action="SECRET_ENCRYPTION_KEY or SECRET_KEY_FILE changed; keep the old key after the new one until every "
                       "waiting secret is handed over, or select 'Make a new client secret'.",
            ) from None
