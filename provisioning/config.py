"""Configuration from the environment (or a `.env` file), validated at start with one clear message."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = ["Settings", "parse_duration", "load_dotenv", "GRAPH_RESOURCE"]

GRAPH_RESOURCE = "https://graph.microsoft.com"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.I)
_ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.I)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def parse_duration(text: str) -> timedelta:
    """`7200`, `90s`, `15m`, `2h`, `1d` or ISO 8601 `PT2H`."""
    m = _DURATION.match(text)
    if m:
        unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2).lower()]
        return timedelta(seconds=float(m.group(1)) * unit)
    m = _ISO_DURATION.match(text.strip())
    if m and any(m.groups()):
        d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        return timedelta(days=d, hours=h, minutes=mi, seconds=s)
    raise ValueError(f"'{text}' is not a duration; write e.g. 7200, 90s, 15m, 2h, 1d or PT2H")


def load_dotenv(path: Path) -> dict[str, str]:
    """KEY=value lines; `#` comments, optional `export`, single or double quotes. Missing file → {}."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def environment(env: Mapping[str, str] | None, dotenv: Path | None) -> dict[str, str]:
    """The process environment laid over the .env file (the environment wins)."""
    merged = load_dotenv(dotenv) if dotenv is not None else {}
    merged.update(os.environ if env is None else env)
    return merged


def _https_origin(variable: str, value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise ConfigurationError(variable, f"{variable} must be an https URL, got '{value}'.", action=f"Set {variable} to e.g. https://contoso.crm.dynamics.com.")
    return f"https://{parts.netloc}".rstrip("/")


@dataclass(frozen=True)
class Settings:
    authority_host: str
    graph_endpoint: str
    dataverse_urls: tuple[str, ...]
    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    client_certificate_path: Path | None = None
    state_db: Path = Path("data/state.db")
    propagation_delay: timedelta = timedelta(hours=2)
    secret_key_file: Path = Path("data/secret.key")
    secret_encryption_keys: tuple[str, ...] = field(default=(), repr=False)  # newest first
    database_url: str = ""  # DATABASE_URL (postgresql://…); "" means SQLite at state_db
    secret_handoff_ttl: timedelta = timedelta(hours=24)
    sandbox_url: str | None = None
    sandbox_portal_url: str | None = None  # the sandbox's read-only pages for its own objects (cards link there)
    ca_bundle: str | None = None  # one PEM with every trusted bundle, made by the service at start
    ca_bundles: tuple[str, ...] = ()  # SSL_CERT_FILE / REQUESTS_CA_BUNDLE from the environment and .env
    publish_poll_interval: timedelta = timedelta(seconds=10)
    publish_timeout: timedelta = timedelta(seconds=300)
    replication_settle: timedelta = timedelta(seconds=30)
    lease_ttl: timedelta = timedelta(seconds=30)
    agent_list_max_age: timedelta = timedelta(seconds=30)

    watch_interval: timedelta = timedelta(hours=24)

    @property
    def graph_resource(self) -> str:
        return GRAPH_RESOURCE

    @property
    def database(self) -> str:
        """What `store.open_database` opens: DATABASE_URL, or the SQLite file STATE_DB."""
        return self.database_url or str(self.state_db)

    @property
    def production(self) -> bool:
        """A real tenant (not the sandbox): the stricter defaults apply."""
        return self.sandbox_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")) -> "Settings":
        e = environment(env, dotenv)

        def need(name: str, hint: str) -> str:
            value = e.get(name, "").strip()
            if not value:
                raise ConfigurationError(name, f"{name} is not set.", action=hint)
            return value

        def duration(name: str, default: timedelta) -> timedelta:
            raw = e.get(name, "").strip()
            if not raw:
                return default
            try:
                value = parse_duration(raw)
            except ValueError as exc:
                raise ConfigurationError(name, f"{name}: {exc}.") from None
            if value.total_seconds() <= 0:
                raise ConfigurationError(name, f"{name} must be longer than zero.")
            return value

        tenant = need("PROVISIONING_TENANT_ID", "Set it to your Entra tenant ID (a GUID).")
        if not _GUID.match(tenant):
            raise ConfigurationError("PROVISIONING_TENANT_ID", f"PROVISIONING_TENANT_ID must be a tenant ID (a GUID), got '{tenant}'.")
        client = need("PROVISIONING_CLIENT_ID", "Set it to the provisioning app registration's Application (client) ID.")
        if not _GUID.match(client):
            raise ConfigurationError("PROVISIONING_CLIENT_ID", f"PROVISIONING_CLIENT_ID must be an application (client) ID (a GUID), got '{client}'.")
        secret = e.get("PROVISIONING_CLIENT_SECRET", "").strip() or None
        cert = e.get("PROVISIONING_CLIENT_CERTIFICATE_PATH", "").strip() or None
        if secret and cert:
            raise ConfigurationError(
                "PROVISIONING_CLIENT_SECRET",
                "Both PROVISIONING_CLIENT_SECRET and PROVISIONING_CLIENT_CERTIFICATE_PATH are set.",
                action="Keep only one of them.",
            )
        if not secret and not cert:
            raise ConfigurationError(
                "PROVISIONING_CLIENT_SECRET",
                "Neither PROVISIONING_CLIENT_SECRET nor PROVISIONING_CLIENT_CERTIFICATE_PATH is set.",
                action="Set one of them to the provisioning app registration's credential.",
            )
        if cert and not Path(cert).is_file():
            raise ConfigurationError("PROVISIONING_CLIENT_CERTIFICATE_PATH", f"PROVISIONING_CLIENT_CERTIFICATE_PATH: no file at {cert}.")
        raw_urls = need("DATAVERSE_URL", "Set it to your environment URL, e.g. https://contoso.crm.dynamics.com (comma-separated for several).")
        urls = tuple(dict.fromkeys(_https_origin("DATAVERSE_URL", u) for u in raw_urls.split(",") if u.strip()))
        keys = tuple(k.strip() for k in e.get("SECRET_ENCRYPTION_KEY", "").split(",") if k.strip())
        if keys:
            from cryptography.fernet import Fernet

            for n, key in enumerate(keys, 1):
                try:
                    Fernet(key.encode())
                except (ValueError, TypeError):
                    which = "SECRET_ENCRYPTION_KEY" if len(keys) == 1 else f"key {n} of SECRET_ENCRYPTION_KEY"
                    raise ConfigurationError("SECRET_ENCRYPTION_KEY", f"{which} is not a valid Fernet key (32 url-safe base64-encoded bytes).",
                                             action="Generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'") from None
        database_url = e.get("DATABASE_URL", "").strip()
        if database_url and not database_url.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise ConfigurationError("DATABASE_URL", "DATABASE_URL must be a postgresql:// URL (or sqlite:///path).",
                                     action="e.g. postgresql://user:password@server.postgres.database.azure.com:5432/copilotsetup?sslmode=verify-full")
        sandbox = e.get("SANDBOX_URL", "").strip() or None
        from_file = load_dotenv(dotenv) if dotenv is not None else {}
        bundles = []
        for source in (e, from_file):
            for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
                value = source.get(name, "").strip()
                if value and value not in bundles:
                    if not Path(value).is_file():
                        raise ConfigurationError(name, f"{name} names {value}, which is not a file.", action="Point it at a PEM bundle, or unset it.")
                    bundles.append(value)
        settings = cls(
            authority_host=_https_origin("AZURE_AUTHORITY_HOST", e.get("AZURE_AUTHORITY_HOST", "") or "https://login.microsoftonline.com"),
            graph_endpoint=_https_origin("GRAPH_ENDPOINT", e.get("GRAPH_ENDPOINT", "") or "https://graph.microsoft.com"),
            dataverse_urls=urls,
            tenant_id=tenant,
            client_id=client,
            client_secret=secret,
            client_certificate_path=Path(cert) if cert else None,
            state_db=Path(e.get("STATE_DB", "").strip() or "data/state.db"),
            propagation_delay=duration("PROPAGATION_DELAY", timedelta(hours=2)),
            secret_key_file=Path(e.get("SECRET_KEY_FILE", "").strip() or "data/secret.key"),
            secret_encryption_keys=keys,
            database_url=database_url,
            watch_interval=duration("WATCH_INTERVAL", timedelta(hours=24)),
            secret_handoff_ttl=duration("SECRET_HANDOFF_TTL", timedelta(hours=24)),
            sandbox_url=_https_origin("SANDBOX_URL", sandbox) if sandbox else None,
            sandbox_portal_url=(e.get("SANDBOX_PORTAL_URL", "").strip().rstrip("/") or None) if sandbox else None,
            ca_bundles=tuple(bundles),
            publish_poll_interval=duration("PUBLISH_POLL_INTERVAL", timedelta(seconds=10)),
            publish_timeout=duration("PUBLISH_TIMEOUT", timedelta(seconds=300)),
            replication_settle=duration("REPLICATION_SETTLE", timedelta(seconds=30)),
            lease_ttl=duration("LEASE_TTL", timedelta(seconds=30)),
            agent_list_max_age=duration("AGENT_LIST_MAX_AGE", timedelta(seconds=30)),
        )
        _check_key_placement(settings, explicit_file=bool(e.get("SECRET_KEY_FILE", "").strip()),
                             allowed=e.get("ALLOW_LOCAL_SECRET_KEY", "").strip().lower() in ("1", "true", "yes"))
        return settings


def _check_key_placement(settings: "Settings", *, explicit_file: bool, allowed: bool) -> None:
    """In production the vault's key must not be a file generated next to the database it protects: whoever copies
    one would copy both. A key from a secret store (SECRET_ENCRYPTION_KEY, e.g. a Key Vault reference) or a key file
    on a separate secret volume is required, unless ALLOW_LOCAL_SECRET_KEY=true says the operator accepts the risk."""
    if not settings.production or settings.secret_encryption_keys or allowed:
        return
    advice = ("Set SECRET_ENCRYPTION_KEY (on Azure App Service a Key Vault reference, "
              "@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>/)), or SECRET_KEY_FILE to a key on a "
              "separate secret volume, or ALLOW_LOCAL_SECRET_KEY=true to accept the risk.")
    if not explicit_file:
        raise ConfigurationError("SECRET_ENCRYPTION_KEY", "No vault key is configured, and in production the bot does not generate "
                                 "one beside its database.", action=advice)
    beside = settings.secret_key_file.resolve().parent == settings.state_db.resolve().parent
    if beside and not settings.database_url:
        raise ConfigurationError("SECRET_KEY_FILE", f"SECRET_KEY_FILE ({settings.secret_key_file}) is in the same folder as the "
                                 f"database STATE_DB ({settings.state_db}): a copy of one would be a copy of both.", action=advice)
