"""The one redaction module: secrets are masked where they are printed, and nowhere else."""

from __future__ import annotations

import pytest

from larkbot.core.redact import (
    MIN_SECRET_LENGTH,
    add_secrets,
    is_secret_key,
    pin_secrets,
    redact,
    redact_fields,
)

SECRET = "Qm4vT7xK2pW9sL1dF8hJ3nB6cR0gY5aE"


def test_a_short_value_is_never_registered_so_ordinary_text_survives() -> None:
    # The regressions of issue 12: APP_SECRET=127 and APP_SECRET=x garbled doctor's output.
    pin_secrets("127", "x", "inbox")
    assert redact("127.0.0.1:3000 can be bound") == "127.0.0.1:3000 can be bound"
    assert redact("(0 message(s) in the inbox)") == "(0 message(s) in the inbox)"
    assert MIN_SECRET_LENGTH == 8


def test_a_registered_secret_is_masked_only_as_a_whole_token() -> None:
    pin_secrets("12345678")
    assert redact("secret 12345678 refused") == "secret *** refused"
    assert redact("port 12345678.5 and id 912345678") == "port 12345678.5 and id 912345678"
    assert redact("v1.12345678") == "v1.12345678"
    assert redact("at the end: 12345678.") == "at the end: ***."


def test_secrets_in_urls_headers_and_fields() -> None:
    cases = {
        "GET /x?app_secret=abc123def&lang=en": "GET /x?app_secret=***&lang=en",
        "POST {'app_id': 'cli_1', 'app_secret': 'abcdefgh123'}": (
            "POST {'app_id': 'cli_1', 'app_secret': '***'}"
        ),
        '{"tenant_access_token": "opaque-value-1"}': '{"tenant_access_token": "***"}',
        "login(password='hunter22')": "login(password='***')",
        "Authorization: Bearer abc.def-ghi": "Authorization: Bearer ***",
        "x-api-key: 0123456789abcdef": "x-api-key: ***",
        "Cookie: session=abcdef0123": "Cookie: ***",
        "token=abcdef&scope=all": "token=***&scope=all",
    }
    for text, expected in cases.items():
        assert redact(text) == expected


def test_words_that_merely_mention_secrets_stay() -> None:
    text = (
        "max_tokens=2000 app_token=bascnAbc tokens=5 the token: refreshed, APP_SECRET is not "
        "set; the bearer of news; task-scheduler get-bot-info sk-1 t-short"
    )
    assert redact(text) == text


def test_token_shapes_are_masked_without_registration() -> None:
    assert redact("t-g1044ghJRUIJJ5ELPPKWD7K3ZQKPPNIN3ODGNZCP done") == "*** done"
    assert redact("key sk-proj-4f9aB7cD2eF1gH8iJ3kL6mN0") == "key ***"
    jwt = (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )
    assert redact(f"token {jwt}") == "token ***"


def test_also_masks_one_off_values_under_the_same_rules() -> None:
    assert redact(f"echoed {SECRET}!", also=[SECRET, "", "ab"]) == "echoed ***!"
    assert redact("ab in a tab", also=["ab"]) == "ab in a tab"


def test_rotating_secrets_are_bounded_and_pinned_ones_kept() -> None:
    pin_secrets("pinned-secret-for-good")
    add_secrets(*(f"rotating-{n:05d}-value" for n in range(300)))
    assert redact("pinned-secret-for-good") == "***"
    assert redact("rotating-00299-value") == "***"
    assert redact("rotating-00000-value") == "rotating-00000-value"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("app_secret", True),
        ("Authorization", True),
        ("tenant_access_token", True),
        ("api_key", True),
        ("max_tokens", False),
        ("app_token", False),  # a Base's id, named in audit lines
        ("fields", False),
        ("name", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_redact_fields_masks_secret_named_values_at_any_depth() -> None:
    data = {"name": "Acme", "auth": {"api_key": "k", "list": [{"password": "p", "n": 1}]}}
    assert redact_fields(data) == {
        "name": "Acme",
        "auth": {"api_key": "***", "list": [{"password": "***", "n": 1}]},
    }


def test_long_connection_url_credentials_are_masked() -> None:
    # Regression: an endpoint URL quoted in a connection error kept its access key and ticket.
    url = (
        "wss://msg-frontier.feishu.cn/ws/v2?device_id=7&access_key=ak-9f8e7d6c5b&ticket=tk-1a2b3c4d"
    )
    shown = redact(f"long connection failed: bad URI {url}")
    assert "ak-9f8e7d6c5b" not in shown and "tk-1a2b3c4d" not in shown
    assert "device_id=7" in shown


def test_few_or_many_registered_secrets_are_masked_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    from larkbot.core import redact as module

    # A registry of its own, so that what other tests registered does not decide the path.
    monkeypatch.setattr(module, "_pinned", set())
    monkeypatch.setattr(module, "_rotating", {})
    monkeypatch.setattr(module, "_registered", None)
    secrets = [f"{n}vT7xK2pW9sL1dF8hJ3nB6cR0gY5aE" for n in range(12)]
    pin_secrets(secrets[0])  # few: looked for as substrings before the pattern runs
    assert redact(f"key {secrets[0]} and x{secrets[0]}") == f"key *** and x{secrets[0]}"
    assert redact("nothing registered here") == "nothing registered here"
    add_secrets(*secrets[1:])  # many: the pattern alone
    for secret in secrets:
        assert redact(f"({secret})") == "(***)"
    assert redact(f"x{secrets[5]}") == f"x{secrets[5]}"
