"""``agent.timezone``: the setting, the host's zone, and the fallback to Asia/Tokyo."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from larkbot.agent.timezone import FALLBACK_TIMEZONE, host_timezone_name, resolve_timezone
from larkbot.config import load_settings
from larkbot.config.settings import ConfigError, Settings
from larkbot.core.errors import EX_CONFIG


def test_the_setting_takes_an_iana_name() -> None:
    assert Settings(agent={"timezone": " Europe/London "}).agent.timezone == "Europe/London"
    assert Settings(agent={"timezone": ""}).agent.timezone is None
    assert Settings().agent.timezone is None


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "asia/tokyo", "JST-9", "../etc/passwd", "America"]
)
def test_an_unknown_zone_is_one_sentence_and_exit_78(name: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"LARKBOT_AGENT__TIMEZONE": name})
    assert refused.value.exit_code == EX_CONFIG
    assert str(refused.value) == (
        "Invalid setting agent.timezone (env LARKBOT_AGENT__TIMEZONE): must be an IANA time "
        f"zone name such as Asia/Tokyo, Europe/London or UTC, got {name!r}. "
        "Fix LARKBOT_AGENT__TIMEZONE."
    )


def test_the_config_file_sets_it(tmp_path: Path) -> None:
    config = tmp_path / "larkbot.toml"
    config.write_text('[agent]\ntimezone = "America/New_York"\n')
    settings = load_settings(config, env={})
    assert settings.agent.timezone == "America/New_York"
    assert resolve_timezone(settings.agent.timezone) == ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        ("Europe/Paris", "Europe/Paris"),
        (":Asia/Shanghai", "Asia/Shanghai"),
        ("/usr/share/zoneinfo/America/Chicago", "America/Chicago"),
        ("UTC", "UTC"),
    ],
)
def test_the_hosts_zone_from_tz(tmp_path: Path, tz: str, expected: str) -> None:
    nowhere = tmp_path / "absent"
    found = host_timezone_name({"TZ": tz}, localtime=nowhere, timezone_file=nowhere)
    assert found == expected


def test_the_hosts_zone_from_etc_localtime_then_etc_timezone(tmp_path: Path) -> None:
    localtime = tmp_path / "localtime"
    localtime.symlink_to("../usr/share/zoneinfo/Australia/Sydney")
    timezone_file = tmp_path / "timezone"
    timezone_file.write_text("Europe/Berlin\n")
    # POSIX rules in TZ name no IANA zone: the next source decides.
    assert (
        host_timezone_name({"TZ": "JST-9"}, localtime=localtime, timezone_file=timezone_file)
        == "Australia/Sydney"
    )
    copied = tmp_path / "copied"
    copied.write_bytes(b"TZif")  # a copy, not a link: it names no zone
    assert host_timezone_name({}, localtime=copied, timezone_file=timezone_file) == (
        "Europe/Berlin"
    )


def test_without_a_setting_or_a_host_zone_it_is_asia_tokyo(tmp_path: Path) -> None:
    nowhere = tmp_path / "absent"
    assert resolve_timezone(None, {}, localtime=nowhere, timezone_file=nowhere) is (
        FALLBACK_TIMEZONE
    )
    assert str(FALLBACK_TIMEZONE) == "Asia/Tokyo"
    assert resolve_timezone(None, {"TZ": "Europe/Paris"}) == ZoneInfo("Europe/Paris")
    assert resolve_timezone("UTC", {"TZ": "Europe/Paris"}) == ZoneInfo("UTC")
