"""Configuration: defaults, durations, and one clear message naming the variable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from provisioning import ConfigurationError, Settings
from provisioning.config import load_dotenv, parse_duration

BASE = {
    "PROVISIONING_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "PROVISIONING_CLIENT_ID": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
    "PROVISIONING_CLIENT_SECRET": "s3cr3t-value-for-tests",
    "DATAVERSE_URL": "https://contoso.crm.dynamics.com/",
    "SECRET_ENCRYPTION_KEY": "mgqaJGxW0aeIydyWcHkrdmoxCQ-Y30xOO8ilSPrAWr8=",  # a test key, from Fernet.generate_key()
}


@pytest.mark.parametrize(("text", "seconds"), [("7200", 7200), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("PT2H", 7200), ("PT1M30S", 90)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_defaults_and_secret_not_in_repr() -> None:
    s = Settings.from_env(BASE, dotenv=None)
    assert s.authority_host == "https://login.microsoftonline.com" and s.graph_endpoint == "https://graph.microsoft.com"
    assert s.dataverse_urls == ("https://contoso.crm.dynamics.com",)
    assert s.propagation_delay == timedelta(hours=2) and s.state_db == Path("data/state.db")
    assert "s3cr3t" not in repr(s)


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"PROVISIONING_TENANT_ID": ""}, "PROVISIONING_TENANT_ID"),
        ({"PROVISIONING_TENANT_ID": "contoso"}, "PROVISIONING_TENANT_ID"),
        ({"PROVISIONING_CLIENT_ID": "x"}, "PROVISIONING_CLIENT_ID"),
        ({"PROVISIONING_CLIENT_SECRET": ""}, "PROVISIONING_CLIENT_SECRET"),
        ({"PROVISIONING_CLIENT_CERTIFICATE_PATH": "/etc/hostname"}, "PROVISIONING_CLIENT_SECRET"),
        ({"DATAVERSE_URL": "http://contoso.crm.dynamics.com"}, "DATAVERSE_URL"),
        ({"DATAVERSE_URL": ""}, "DATAVERSE_URL"),
        ({"PROPAGATION_DELAY": "soon"}, "PROPAGATION_DELAY"),
        ({"PROPAGATION_DELAY": "0"}, "PROPAGATION_DELAY"),
        ({"SECRET_ENCRYPTION_KEY": "not-a-key"}, "SECRET_ENCRYPTION_KEY"),
    ],
)
def test_bad_configuration_names_the_variable(change: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({**BASE, **change}, dotenv=None)
    assert info.value.variable == variable
    assert variable in info.value.user_message()


def test_in_production_the_vault_key_does_not_sit_beside_the_database(tmp_path: Path) -> None:
    """A generated key file next to STATE_DB protects nothing against whoever copies the folder: refused, with what to do."""
    real = {k: v for k, v in BASE.items() if k != "SECRET_ENCRYPTION_KEY"}
    with pytest.raises(ConfigurationError) as missing:
        Settings.from_env(real, dotenv=None)
    assert missing.value.variable == "SECRET_ENCRYPTION_KEY" and "Key Vault" in missing.value.user_message()
    beside = {**real, "STATE_DB": str(tmp_path / "state.db"), "SECRET_KEY_FILE": str(tmp_path / "secret.key")}
    with pytest.raises(ConfigurationError) as same_folder:
        Settings.from_env(beside, dotenv=None)
    assert same_folder.value.variable == "SECRET_KEY_FILE"
    assert Settings.from_env({**beside, "SECRET_KEY_FILE": str(tmp_path / "secrets" / "key")}, dotenv=None)
    assert Settings.from_env({**real, "ALLOW_LOCAL_SECRET_KEY": "true"}, dotenv=None), "the operator may accept the risk, by name"
    two = Settings.from_env({**real, "SECRET_ENCRYPTION_KEY": f"{BASE['SECRET_ENCRYPTION_KEY']}, FpV_xS5jNHcUfwUk1DPeCHRNxCQYqV3Jb8JdyHx0G5o="}, dotenv=None)
    assert len(two.secret_encryption_keys) == 2, "several keys, newest first, for rotation"
    with pytest.raises(ConfigurationError, match="key 2 of SECRET_ENCRYPTION_KEY"):
        Settings.from_env({**real, "SECRET_ENCRYPTION_KEY": f"{BASE['SECRET_ENCRYPTION_KEY']},nope"}, dotenv=None)


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nexport DATAVERSE_URL='https://fabrikam.crm.dynamics.com'\nPROPAGATION_DELAY=\"90s\"\n")
    assert load_dotenv(env_file)["PROPAGATION_DELAY"] == "90s"
    s = Settings.from_env({k: v for k, v in BASE.items() if k != "DATAVERSE_URL"} | {"PROPAGATION_DELAY": "3m"}, dotenv=env_file)
    assert s.dataverse_urls == ("https://fabrikam.crm.dynamics.com",) and s.propagation_delay == timedelta(minutes=3)


async def test_a_machine_wide_ca_bundle_and_the_sandbox_ca_in_dotenv_both_work(sandbox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Regression: a global SSL_CERT_FILE used to replace the sandbox CA from .env, so nothing could be reached."""
    import certifi

    from provisioning import ProvisioningService

    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in sandbox.env.items()) + f"STATE_DB={tmp_path / 'state.db'}\nSECRET_KEY_FILE={tmp_path / 'k'}\n")
    machine = {"SSL_CERT_FILE": certifi.where(), "REQUESTS_CA_BUNDLE": certifi.where()}
    settings = Settings.from_env(machine, dotenv=env_file)
    assert settings.ca_bundles == (certifi.where(), sandbox.env["SSL_CERT_FILE"])
    service = ProvisioningService(settings, run_worker=False)
    await service.start()
    try:
        assert [a.name for a in await service.list_agents()]
    finally:
        await service.close()
