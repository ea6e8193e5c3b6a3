"""The ``[events]`` settings: mode, webhook keys as secrets, limits and trusted proxies."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from larkbot.config import ConfigError, Settings, describe_settings, load_settings


def _error(env: dict[str, str], path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env)
    return caught.value.message


def test_defaults_keep_the_long_connection() -> None:
    events = load_settings(env={}).events

    assert events.mode == "websocket"
    assert events.webhook_path == "/webhook"
    assert events.max_body_bytes == 1_048_576
    assert events.encrypt_key is None and events.verification_token is None
    assert events.trusted_proxies == []
    assert events.failure_budget_per_minute == 20


def test_flat_environment_names_set_mode_and_keys() -> None:
    settings = load_settings(
        env={
            "LARK_EVENT_MODE": " Webhook ",
            "LARK_ENCRYPT_KEY": "enc-from-env",
            "LARK_VERIFICATION_TOKEN": "tok-from-env",
        }
    )
    rows = {row.key: row for row in describe_settings(settings)}

    assert settings.events.mode == "webhook"
    assert settings.events.encrypt_key is not None
    assert settings.events.encrypt_key.get_secret_value() == "enc-from-env"
    assert rows["events.mode"].source == "env LARK_EVENT_MODE"
    assert rows["events.encrypt_key"].value == "****"
    assert rows["events.verification_token"].value == "****"
    assert rows["events.verification_token"].source == "env LARK_VERIFICATION_TOKEN"
    assert "enc-from-env" not in repr(describe_settings(settings))
    assert sorted(settings.secrets()) == ["enc-from-env", "tok-from-env"]


def test_keys_from_secret_files_and_systemd_credentials(tmp_path: Path) -> None:
    key_file = tmp_path / "encrypt_key"
    key_file.write_text("enc-from-file\n")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "lark_verification_token").write_text("tok-from-credential\n")
    (credentials / "lark_encrypt_key").write_text("enc-from-credential")

    settings = load_settings(
        env={"LARK_ENCRYPT_KEY_FILE": str(key_file), "CREDENTIALS_DIRECTORY": str(credentials)}
    )
    rows = {row.key: row for row in describe_settings(settings)}

    assert settings.events.encrypt_key is not None
    assert settings.events.verification_token is not None
    assert settings.events.encrypt_key.get_secret_value() == "enc-from-file"
    assert settings.events.verification_token.get_secret_value() == "tok-from-credential"
    assert rows["events.encrypt_key"].source == f"secret file {key_file}"
    assert rows["events.verification_token"].source == (
        f"secret file {credentials / 'lark_verification_token'}"
    )
    explicit = load_settings(
        env={"LARK_VERIFICATION_TOKEN": "tok-env", "CREDENTIALS_DIRECTORY": str(credentials)}
    )
    assert explicit.events.verification_token is not None
    assert explicit.events.verification_token.get_secret_value() == "tok-env"


def test_keys_in_a_camel_case_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        '{"events": {"mode": "webhook", "webhookPath": "/lark", "encryptKey": "k",'
        ' "verificationToken": "t", "trustedProxies": ["10.0.0.1/8", "::1"],'
        ' "failureBudgetPerMinute": 5}}'
    )

    events = load_settings(path, env={}).events

    assert events.webhook_path == "/lark"
    assert events.trusted_proxies == ["10.0.0.0/8", "::1/128"]
    assert events.trusted_networks() == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert events.failure_budget_per_minute == 5


def test_a_blank_key_counts_as_unset() -> None:
    events = load_settings(env={"LARKBOT_EVENTS__ENCRYPT_KEY": " "}).events

    assert events.encrypt_key is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"LARK_EVENT_MODE": "http"},
            "Invalid setting events.mode (env LARK_EVENT_MODE): must be one of 'websocket', "
            "'webhook', got 'http'. Fix LARK_EVENT_MODE.",
        ),
        (
            {"LARKBOT_EVENTS__WEBHOOK_PATH": "webhook"},
            "Invalid setting events.webhook_path (env LARKBOT_EVENTS__WEBHOOK_PATH): must be a "
            "path such as /webhook (a leading /, no query, no spaces), got 'webhook'. "
            "Fix LARKBOT_EVENTS__WEBHOOK_PATH.",
        ),
        (
            {"LARKBOT_EVENTS__WEBHOOK_PATH": "/metrics"},
            "Invalid setting events.webhook_path (env LARKBOT_EVENTS__WEBHOOK_PATH): must not be "
            "/metrics, which the HTTP port serves already, got '/metrics'. "
            "Fix LARKBOT_EVENTS__WEBHOOK_PATH.",
        ),
        (
            {"LARKBOT_EVENTS__TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"},
            "Invalid setting events.trusted_proxies (env LARKBOT_EVENTS__TRUSTED_PROXIES): must "
            "list IP addresses or CIDR networks such as 10.0.0.0/8, but 'proxy.local' is "
            "neither. Fix LARKBOT_EVENTS__TRUSTED_PROXIES.",
        ),
        (
            {"LARKBOT_EVENTS__FAILURE_BUDGET_PER_MINUTE": "0"},
            "Invalid setting events.failure_budget_per_minute (env "
            "LARKBOT_EVENTS__FAILURE_BUDGET_PER_MINUTE): must be an integer of at least 1, got "
            "'0'. Fix LARKBOT_EVENTS__FAILURE_BUDGET_PER_MINUTE.",
        ),
    ],
)
def test_validation_errors_are_one_sentence(env: dict[str, str], expected: str) -> None:
    assert _error(env) == expected


def test_webhook_mode_requires_the_verification_token(tmp_path: Path) -> None:
    path = tmp_path / "larkbot.toml"
    path.write_text('[events]\nmode = "webhook"\n')
    base = {"APP_ID": "cli_x", "APP_SECRET": "s3cr3t-value-of-thirty-two-chars"}

    with pytest.raises(ConfigError) as missing:
        load_settings(path, env=base).require_credentials()

    assert missing.value.message == (
        "LARK_VERIFICATION_TOKEN is not set: webhook mode needs it, so set "
        "LARK_VERIFICATION_TOKEN or LARK_VERIFICATION_TOKEN_FILE (or events.verification_token "
        f"in {path}) to the Verification Token shown on your app's Events & Callbacks page."
    )
    load_settings(path, env={**base, "LARK_VERIFICATION_TOKEN": "t"}).require_credentials()
    # The long connection needs no webhook keys.
    load_settings(env=base).require_credentials()


def test_direct_construction_takes_the_events_section() -> None:
    settings = Settings(events={"mode": "webhook", "verification_token": "t"})

    assert settings.events.mode == "webhook"
    assert settings.secrets() == ["t"]
