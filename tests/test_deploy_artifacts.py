"""The deployment artefacts: systemd unit, Docker image, Compose, Kubernetes, monitoring.

No init system, container engine or cluster runs here, so each artefact is checked as far as
this machine allows: ``systemd-analyze`` and ``promtool`` when installed, the daemon's own
configuration loader fed the environment each artefact produces, the health check commands
against a real HTTP server, and a wheel built and installed the way the image does it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from larkbot.config import ConfigError, load_settings
from larkbot.ops import metrics
from larkbot.ops.metrics import REGISTRY
from larkbot.store.sqlite import DATABASE_NAME, SqliteStore

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "larkbot.service"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "config" / "k8s"
ALERTS = ROOT / "config" / "prometheus-alerts.yml"
DASHBOARD = ROOT / "config" / "grafana-dashboard.json"

APP_ID = "cli_deploytest"
APP_SECRET = "deploy-test-secret"
DRAIN_SECONDS = 25  # the daemon's graceful-shutdown budget after SIGTERM


# --- the YAML artefacts ------------------------------------------------------------------------

# Plain scalars that YAML 1.1 readers (Kubernetes, PyYAML) take for booleans and YAML 1.2
# readers (Compose) for strings. The artefacts quote them, so every reader agrees.
_AMBIGUOUS_BOOLEANS = frozenset({"yes", "no", "on", "off"})


def _load_yaml(path: Path) -> list[Any]:
    """Return the documents of ``path`` (a ``---``-separated YAML file), empty ones left out."""
    documents = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    return [document for document in documents if document is not None]


def _ambiguous_booleans(text: str) -> list[str]:
    """Where ``text`` has an unquoted ``yes``/``no``/``on``/``off``, as ``line N: value``."""
    return [
        f"line {token.start_mark.line + 1}: {token.value}"
        for token in yaml.scan(text)
        if isinstance(token, yaml.ScalarToken)
        and token.plain
        and token.value.lower() in _AMBIGUOUS_BOOLEANS
    ]


def _yaml_files() -> list[Path]:
    return [COMPOSE, ALERTS, *sorted(K8S.glob("*.yaml"))]


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_artefacts_parse_and_quote_ambiguous_booleans(path: Path) -> None:
    assert _load_yaml(path), f"{path} holds no document"
    assert _ambiguous_booleans(path.read_text(encoding="utf-8")) == []


def test_ambiguous_booleans_are_found_in_keys_and_values() -> None:
    text = 'on: yes\nkeep: "no"\nlist:\n  - Off\n  - true\n'
    assert _ambiguous_booleans(text) == ["line 1: on", "line 1: yes", "line 4: Off"]


# --- systemd unit ------------------------------------------------------------------------------


def _read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file into ``{section: {key: [values in order]}}`` (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text[0] in "#;":
            continue
        if text.startswith("[") and text.endswith("]"):
            current = sections.setdefault(text[1:-1], {})
            continue
        key, sep, value = text.partition("=")
        if not sep or current is None or text.endswith("\\"):
            raise ValueError(f"{path.name}:{number}: cannot read {text!r}")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _seconds(span: str) -> float:
    """Convert a systemd time span such as ``30s``, ``10min`` or ``5`` to seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        total += float(number) * units[unit]
    return total


_UNIT_SETTINGS = [
    ("Service", "Type", "notify"),
    ("Service", "NotifyAccess", "main"),
    ("Service", "ExecStart", "/usr/local/bin/larkbot run"),
    ("Service", "WatchdogSec", "30s"),
    ("Service", "DynamicUser", "yes"),
    ("Service", "StateDirectory", "larkbot"),
    ("Service", "ConfigurationDirectory", "larkbot"),
    ("Service", "LoadCredential", "app_secret:/etc/larkbot/app_secret"),
    ("Service", "EnvironmentFile", "-/etc/larkbot/larkbot.env"),
    ("Service", "Restart", "on-failure"),
    ("Service", "RestartSec", "5s"),
    ("Service", "RestartPreventExitStatus", "78"),
    ("Service", "TimeoutStopSec", "30s"),
    ("Service", "KillMode", "mixed"),
    ("Service", "ProtectSystem", "strict"),
    ("Service", "ProtectHome", "yes"),
    ("Service", "NoNewPrivileges", "yes"),
    ("Service", "PrivateTmp", "yes"),
    ("Service", "PrivateDevices", "yes"),
    ("Service", "RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("Service", "SystemCallArchitectures", "native"),
    ("Service", "MemoryMax", "512M"),
    ("Service", "LockPersonality", "yes"),
    ("Service", "RestrictRealtime", "yes"),
    ("Service", "ProtectKernelTunables", "yes"),
    ("Service", "ProtectKernelModules", "yes"),
    ("Service", "ProtectKernelLogs", "yes"),
    ("Service", "ProtectControlGroups", "yes"),
    ("Service", "CapabilityBoundingSet", ""),
    ("Service", "UMask", "0077"),
    ("Install", "WantedBy", "multi-user.target"),
]


@pytest.mark.parametrize(
    ("section", "key", "expected"), _UNIT_SETTINGS, ids=[f"{s}.{k}" for s, k, _ in _UNIT_SETTINGS]
)
def test_unit_sets(section: str, key: str, expected: str) -> None:
    """Each setting the daemon's contract with systemd relies on is there, exactly once."""
    assert _read_unit(UNIT)[section].get(key) == [expected]


def test_unit_filters_system_calls_to_a_service_set() -> None:
    """The allow list is ``@system-service``; later lines only take calls away from it."""
    filters = _read_unit(UNIT)["Service"]["SystemCallFilter"]
    assert filters[0] == "@system-service"
    assert all(line.startswith("~") for line in filters[1:])


def test_unit_timing_fits_the_daemon() -> None:
    """Stop timeout exceeds the drain budget; only a tight crash loop trips the start limit."""
    unit = _read_unit(UNIT)
    service = unit["Service"]
    assert _seconds(service["TimeoutStopSec"][0]) > DRAIN_SECONDS
    burst = int(unit["Unit"]["StartLimitBurst"][0])
    interval = _seconds(unit["Unit"]["StartLimitIntervalSec"][0])
    restart = _seconds(service["RestartSec"][0])
    assert 3 <= burst <= 10
    # Crashing right after each start, the burst is used up well inside the interval...
    assert burst * restart < interval
    # ...but starts that time out while Lark is unreachable never use it up.
    assert burst * (_seconds(service["TimeoutStartSec"][0]) + restart) > interval


def _unit_copy_with_runnable_exec_start(tmp_path: Path) -> Path:
    """Copy the unit, pointing ExecStart at a program that exists on this machine.

    ``systemd-analyze verify`` fails when ExecStart's program is missing, and
    /usr/local/bin/larkbot exists only where larkbot is installed system-wide. The venv's
    ``larkbot`` script (or /bin/true) stands in; the rest of the unit is verified as shipped.
    """
    program = Path(sys.executable).with_name("larkbot")
    if not program.is_file():
        program = Path(shutil.which("true") or "/bin/true")
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("ExecStart=/usr/local/bin/larkbot ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("ExecStart=/usr/local/bin/larkbot ", f"ExecStart={program} "))
    return copy


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return tool


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts the unit and warns about none of its lines."""
    copy = _unit_copy_with_runnable_exec_start(tmp_path)
    result = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Warnings (unknown keys, bad values) do not change the exit status; they name the file.
    ours = [line for line in result.stderr.splitlines() if copy.name in line]
    assert result.returncode == 0, result.stderr
    assert ours == []


def test_unit_exposure_is_low(tmp_path: Path) -> None:
    """``systemd-analyze security`` rates the sandbox at 2.0 or better ("OK" and above)."""
    copy = _unit_copy_with_runnable_exec_start(tmp_path)
    result = subprocess.run(
        [_systemd_analyze(), "security", "--offline=yes", "--threshold=20", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no offline security review (needs systemd 250)")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_unit_environment_loads_into_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What systemd hands the daemon (credential, state directory) is what it reads."""
    service = _read_unit(UNIT)["Service"]
    credential, _, source = service["LoadCredential"][0].partition(":")
    assert source.startswith("/etc/larkbot/")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / credential).write_text(APP_SECRET + "\n")
    env = {
        "APP_ID": APP_ID,  # from /etc/larkbot/larkbot.env
        "CREDENTIALS_DIRECTORY": str(credentials),
        "STATE_DIRECTORY": "/var/lib/" + service["StateDirectory"][0],
    }
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env)
    settings.require_credentials()
    assert settings.app.secret.get_secret_value() == APP_SECRET
    assert settings.store.resolved_state_dir(env) == Path("/var/lib/larkbot")
    assert settings.server.host == "127.0.0.1"


BACKUP_UNIT = ROOT / "systemd" / "larkbot-backup.service"
BACKUP_TIMER = ROOT / "systemd" / "larkbot-backup.timer"


def test_backup_units_pass_systemd_analyze(tmp_path: Path) -> None:
    """The backup service and its timer verify cleanly; the service's sandbox rates OK."""
    copies = []
    for unit in (BACKUP_UNIT, BACKUP_TIMER):
        copies.append(str(tmp_path / unit.name))
        (tmp_path / unit.name).write_text(unit.read_text(encoding="utf-8"))
    verify = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", *copies],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert [line for line in verify.stderr.splitlines() if "larkbot-backup" in line] == []
    timer = _read_unit(BACKUP_TIMER)["Timer"]
    assert timer["Persistent"] == ["true"]
    service = _read_unit(BACKUP_UNIT)["Service"]
    # The daemon's user and state directory (first), so the backup can read the database.
    assert service["User"] == ["larkbot"] and service["DynamicUser"] == ["yes"]
    assert (
        service["StateDirectory"][0].split()[0] == _read_unit(UNIT)["Service"]["StateDirectory"][0]
    )


def _unit_command(line: str) -> list[str]:
    """An Exec line as systemd runs it: ``%%`` is a literal ``%``, quotes group words."""
    return shlex.split(line.replace("%%", "%"))


def test_backup_unit_writes_a_dated_backup_and_keeps_seven_days(tmp_path: Path) -> None:
    """The unit's own command lines, run with this checkout's larkbot against a real state
    directory: a backup appears, and only backups older than seven days are deleted."""
    state, backups = tmp_path / "larkbot", tmp_path / "larkbot-backup"
    backups.mkdir()
    database = _sqlite_state(state)
    service = _read_unit(BACKUP_UNIT)["Service"]
    larkbot = Path(sys.executable).with_name("larkbot")
    (start,) = service["ExecStart"]
    command = _unit_command(
        start.replace("/usr/local/bin/larkbot", str(larkbot)).replace(
            "/var/lib/larkbot-backup", str(backups)
        )
    )
    env = {**_clean_env(), "STATE_DIRECTORY": f"{state}:{backups}", "HOME": str(tmp_path)}
    old = backups / "larkbot-20000101T000000Z.backup"
    recent = backups / "larkbot-20000108T000000Z.backup"
    for path, age_days in ((old, 8), (recent, 6)):
        path.write_text("older backup")
        stamp = time.time() - age_days * 86400
        os.utime(path, (stamp, stamp))
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (post,) = service["ExecStartPost"]
    cleanup = _unit_command(post.replace("/var/lib/larkbot-backup", str(backups)))
    subprocess.run(cleanup, check=True, timeout=60)
    left = sorted(path.name for path in backups.iterdir())
    assert old.name not in left and recent.name in left
    (made,) = [name for name in left if name not in (recent.name,)]
    assert re.fullmatch(r"larkbot-\d{8}T\d{6}Z\.backup", made)
    assert (backups / made).stat().st_mode & 0o077 == 0
    assert database.is_file()


def _sqlite_state(state: Path) -> Path:
    """A state directory with a larkbot database in it, as the daemon leaves it."""

    async def _open() -> None:
        async with SqliteStore.open(state):
            pass

    anyio.run(_open)
    return state / DATABASE_NAME


# --- Dockerfile --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Instruction:
    keyword: str
    arguments: str


def _dockerfile_stages() -> list[list[_Instruction]]:
    """Parse the Dockerfile into stages of instructions (continuations joined)."""
    stages: list[list[_Instruction]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        keyword, _, arguments = (pending + text).partition(" ")
        pending = ""
        instruction = _Instruction(keyword.upper(), " ".join(arguments.split()))
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, "instruction before the first FROM"
        stages[-1].append(instruction)
    assert not pending, "Dockerfile ends inside a continuation"
    return stages


def _only(stage: list[_Instruction], keyword: str) -> str:
    found = [i.arguments for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in _dockerfile_stages()[-1]:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list)
    assert all(isinstance(part, str) for part in value)
    return value


def test_dockerfile_builds_in_a_builder_stage_on_python_311_slim() -> None:
    """A builder stage makes the wheels; the runtime stage installs them into /opt/larkbot."""
    builder, runtime = _dockerfile_stages()
    assert builder[0].arguments == "python:3.11-slim AS builder"
    assert runtime[0].arguments == "python:3.11-slim"
    assert any("pip wheel --wheel-dir /wheels ." in i.arguments for i in builder)
    install = _only(runtime, "RUN")
    assert "from=builder" in install
    assert "python -m venv /opt/larkbot" in install
    assert "/opt/larkbot/bin/pip install --no-index --find-links /wheels larkbot" in install
    assert _image_env()["PATH"].startswith("/opt/larkbot/bin:")


def test_dockerfile_runs_as_a_non_root_user() -> None:
    """The runtime stage creates ``larkbot`` with uid 10001 and runs as that uid."""
    runtime = _dockerfile_stages()[-1]
    user = _only(runtime, "USER")
    assert user.split(":")[0] == "10001"
    commands = [shlex.split(c) for c in _only(runtime, "RUN").split("&&")]
    (useradd,) = [c for c in commands if c[0] == "useradd"]
    assert useradd[useradd.index("--uid") + 1] == "10001"
    assert useradd[-1] == "larkbot"


def test_dockerfile_environment_ports_and_signals() -> None:
    """ENV, VOLUME, EXPOSE, STOPSIGNAL and CMD say what the daemon expects."""
    runtime = _dockerfile_stages()[-1]
    env = _image_env()
    assert {k: env.get(k) for k in ("HOST", "PORT", "LOG_FORMAT", "LARKBOT_STATE_DIR")} == {
        "HOST": "0.0.0.0",
        "PORT": "3000",
        "LOG_FORMAT": "json",
        "LARKBOT_STATE_DIR": "/var/lib/larkbot",
    }
    assert env["PYTHONUNBUFFERED"] == "1"
    assert _only(runtime, "VOLUME") == env["LARKBOT_STATE_DIR"]
    assert _only(runtime, "EXPOSE") == env["PORT"]
    assert _only(runtime, "STOPSIGNAL") == "SIGTERM"
    assert _exec_form(_only(runtime, "CMD")) == ["larkbot", "run"]


def test_dockerfile_copies_only_what_the_build_context_keeps() -> None:
    """Every COPY source exists and survives .dockerignore; noise and secrets stay out."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns)

    def ignored(path: str) -> bool:
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatchcase(p, pattern) for p in prefixes for pattern in patterns)

    sources = [
        source
        for instruction in _dockerfile_stages()[0]
        if instruction.keyword == "COPY"
        for source in instruction.arguments.split()[:-1]
    ]
    assert "larkbot" in sources
    assert "pyproject.toml" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), source
    noise = [".git", ".venv", "larkbot/ops/__pycache__", ".pytest_cache", "tests", "dist"]
    noise += ["bench/results", "state", "app_secret", ".env", "larkbot.env"]
    assert [path for path in noise if not ignored(path)] == []


# --- health checks, run for real against a local HTTP server -----------------------------------


@dataclass
class _HealthServer:
    port: int
    status: int
    paths: list[str]


@pytest.fixture
def health_server() -> Iterator[_HealthServer]:
    """Serve every GET with ``state.status`` on 127.0.0.1 and record the paths asked for."""
    state = _HealthServer(port=0, status=200, paths=[])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.paths.append(self.path)
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _run_probe(command: list[str], port: int) -> int:
    # In the image "python" is the venv's interpreter on PATH; here it is this one.
    assert command[0] == "python"
    env = {**os.environ, "PORT": str(port)}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return result.returncode


def _dockerfile_health_command() -> list[str]:
    arguments = _only(_dockerfile_stages()[-1], "HEALTHCHECK")
    match = re.fullmatch(r"((?:--[a-z-]+=\S+ )*)CMD (\[.*\])", arguments)
    assert match is not None, arguments
    return _exec_form(match[2])


def _compose_service() -> dict[str, Any]:
    (compose,) = _load_yaml(COMPOSE)
    return compose["services"]["larkbot"]


def _compose_health_command() -> list[str]:
    test = _compose_service()["healthcheck"]["test"]
    assert test[0] == "CMD"
    return test[1:]


@pytest.mark.parametrize(
    "command",
    [_dockerfile_health_command, _compose_health_command],
    ids=["Dockerfile", "docker-compose.yml"],
)
def test_health_check_probes_healthz(
    health_server: _HealthServer, command: Callable[[], list[str]]
) -> None:
    """The check passes on 200 from /healthz, fails on 503 and when nothing listens."""
    argv = command()
    assert _run_probe(argv, health_server.port) == 0
    assert health_server.paths == ["/healthz"]
    health_server.status = 503
    assert _run_probe(argv, health_server.port) != 0
    assert _run_probe(argv, _unused_port()) != 0


def _unused_port() -> int:
    """Return a 127.0.0.1 port that nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- docker-compose.yml ------------------------------------------------------------------------


def _container_path(root: Path, path: str) -> Path:
    """Map an absolute path inside a container to the same path under ``root``."""
    assert path.startswith("/")
    return root / path.lstrip("/")


def test_compose_passes_the_secret_as_a_file() -> None:
    """The app secret is a Docker secret mounted where APP_SECRET_FILE points, never an env."""
    (compose,) = _load_yaml(COMPOSE)
    service = compose["services"]["larkbot"]
    (secret,) = service["secrets"]
    source = secret if isinstance(secret, str) else secret["source"]
    target = source if isinstance(secret, str) else secret.get("target", source)
    assert compose["secrets"][source] == {"file": "./app_secret"}
    assert service["environment"]["APP_SECRET_FILE"] == f"/run/secrets/{target}"
    assert "APP_SECRET" not in service["environment"]
    assert service["environment"]["APP_ID"].startswith("${APP_ID")


def test_compose_service_lifecycle_ports_and_state() -> None:
    """Restart policy, stop grace, the health port and a named state volume."""
    (compose,) = _load_yaml(COMPOSE)
    service = compose["services"]["larkbot"]
    image_env = _image_env()
    assert service["restart"] == "unless-stopped"
    assert service["stop_grace_period"] == "30s"
    assert _seconds(service["stop_grace_period"]) > DRAIN_SECONDS
    (port,) = service["ports"]
    assert port.split(":")[-1] == image_env["PORT"]
    (volume,) = service["volumes"]
    name, _, target = volume.partition(":")
    assert target == image_env["LARKBOT_STATE_DIR"]
    assert name in compose["volumes"]


def test_compose_environment_loads_into_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image's ENV plus Compose's environment and secret give a complete configuration."""
    service = _compose_service()
    env = dict(_image_env())
    for key, value in service["environment"].items():
        if value is None:
            continue  # passed through from the host only when set there
        env[key] = APP_ID if key == "APP_ID" else str(value)
    secret_file = _container_path(tmp_path, env["APP_SECRET_FILE"])
    secret_file.parent.mkdir(parents=True)
    secret_file.write_text(APP_SECRET)
    env["APP_SECRET_FILE"] = str(secret_file)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env)
    settings.require_credentials()
    assert settings.app.id == APP_ID
    assert settings.app.secret.get_secret_value() == APP_SECRET
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 3000)
    assert settings.store.resolved_state_dir(env) == Path("/var/lib/larkbot")


def test_compose_replicas_profile_shares_a_redis_set_up_as_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``replicas`` profile adds a Redis running config/redis.conf on a volume; with
    REDIS_URL set, every scaled larkbot uses it, each on a host port of its own."""
    (compose,) = _load_yaml(COMPOSE)
    services = compose["services"]
    redis = services["redis"]
    assert redis["profiles"] == ["replicas"]
    assert "profiles" not in services["larkbot"]
    assert "ports" not in redis, "Redis runs without a password: never publish it"
    mounts = dict(volume.split(":")[:2] for volume in redis["volumes"])
    config = mounts["./config/redis.conf"]
    assert (ROOT / "config" / "redis.conf").is_file()
    assert redis["command"][:2] == ["redis-server", config]
    assert mounts["redis-data"] == "/data"
    assert "redis-data" in compose["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]

    service = services["larkbot"]
    assert "REDIS_URL" in service["environment"] and service["environment"]["REDIS_URL"] is None
    (port,) = service["ports"]
    first, _, last = port.split(":")[1].partition("-")
    assert int(last) - int(first) + 1 >= 4
    # The example's URL reaches that service and selects the Redis store.
    example = re.search(r"REDIS_URL=(\S+) docker compose --profile replicas", COMPOSE.read_text())
    assert example is not None
    assert urlsplit(example[1]).hostname == "redis"
    env = {**_image_env(), "APP_ID": APP_ID, "APP_SECRET": APP_SECRET, "REDIS_URL": example[1]}
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, env).store.kind == "redis"


# --- Kubernetes ---------------------------------------------------------------------------------


def _k8s_objects() -> dict[str, dict[str, Any]]:
    """Every object of the manifests, by ``Kind/name``."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in _load_yaml(path):
            key = f"{document['kind']}/{document['metadata']['name']}"
            assert key not in objects, f"{key} is defined twice"
            objects[key] = document
    return objects


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _k8s_env(
    objects: dict[str, dict[str, Any]], root: Path, workload: str = "Deployment/larkbot"
) -> dict[str, str]:
    """The container's environment as the kubelet builds it from the example Secret, with
    the mounted secret files written under ``root`` and ``*_FILE`` pointing at them."""
    data = objects["Secret/larkbot"]["stringData"]
    pod = objects[workload]["spec"]["template"]["spec"]
    container = _container(objects[workload])
    env = dict(_image_env()) if workload == "Deployment/larkbot" else {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "larkbot"
        if ref["key"] in data:
            env[entry["name"]] = data[ref["key"]]
        else:
            assert ref.get("optional") is True, f"required key {ref['key']} not in the Secret"
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            for item in volume["secret"]["items"]:
                path = _container_path(root, f"{mounts[volume['name']]}/{item['path']}")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(data[item["key"]])
    for name in [name for name in env if name.endswith("_FILE")]:
        env[name] = str(_container_path(root, env[name]))
    return env


def test_k8s_deployment_runs_three_hardened_replicas() -> None:
    """Three replicas rolled without a gap, non-root, read-only root, no capabilities."""
    deployment = _k8s_objects()["Deployment/larkbot"]
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    assert container["command"] == ["larkbot", "run"]
    spread = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert spread[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_k8s_grace_period_outlasts_the_daemons_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL comes after the shutdown grace the pod's own settings give the daemon."""
    objects = _k8s_objects()
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, _k8s_env(objects, tmp_path))
    pod = objects["Deployment/larkbot"]["spec"]["template"]["spec"]
    assert settings.shutdown.grace_seconds == DRAIN_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= settings.shutdown.grace_seconds + 5


def test_k8s_probes_hit_the_health_endpoints() -> None:
    """Liveness and startup probe /healthz, readiness /readyz, on the container's port."""
    container = _container(_k8s_objects()["Deployment/larkbot"])
    (port,) = container["ports"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert str(port["containerPort"]) == env["PORT"]
    paths = {}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] in (port["name"], port["containerPort"])
        paths[probe] = get["path"]
    assert paths == {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }


def test_k8s_secrets_are_mounted_where_the_daemon_looks() -> None:
    """The app secret and the Redis password are files where the ``*_FILE`` variables point."""
    objects = _k8s_objects()
    pod = objects["Deployment/larkbot"]["spec"]["template"]["spec"]
    container = _container(objects["Deployment/larkbot"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "emptyDir" in volumes[mounts[env["LARKBOT_STATE_DIR"]]]
    for variable in ("APP_SECRET_FILE", "REDIS_PASSWORD_FILE"):
        secret_dir, _, secret_name = env[variable].rpartition("/")
        secret = volumes[mounts[secret_dir]]["secret"]
        assert secret["secretName"] == objects["Secret/larkbot"]["metadata"]["name"]
        assert secret_name in [item["path"] for item in secret["items"]]
        # Readable through fsGroup, by nobody else.
        assert secret["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def test_k8s_environment_loads_into_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's environment and mounted secrets, from the example Secret, select the Redis
    store at the Redis Service with the Secret's password."""
    objects = _k8s_objects()
    data = objects["Secret/larkbot"]["stringData"]
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, _k8s_env(objects, tmp_path))
    # The example's app values are placeholders, refused until real ones replace them.
    with pytest.raises(ConfigError, match="APP_ID is a placeholder"):
        settings.require_credentials()
    assert settings.app.id == data["app_id"]
    assert settings.app.secret.get_secret_value() == data["app_secret"]
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 3000)
    assert settings.store.kind == "redis"
    assert settings.store.redis_password is not None
    assert settings.store.redis_password.get_secret_value() == data["redis_password"]
    assert settings.store.redis_url is not None
    url = urlsplit(settings.store.redis_url.get_secret_value())
    service = objects["Service/larkbot-redis"]
    assert url.hostname == service["metadata"]["name"]
    assert url.port == service["spec"]["ports"][0]["port"]


def test_k8s_service_exposes_metrics_for_scraping() -> None:
    """The Service selects the pods, targets their port and carries the scrape annotations."""
    objects = _k8s_objects()
    service = objects["Service/larkbot"]
    template = objects["Deployment/larkbot"]["spec"]["template"]
    (port,) = _container(objects["Deployment/larkbot"])["ports"]
    labels = template["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(service_port["port"])
    assert annotations["prometheus.io/path"] == "/metrics"
    # A disconnected pod fails readiness, and must still be scraped.
    assert service["spec"]["publishNotReadyAddresses"] is True


def test_k8s_autoscaler_and_disruption_budget() -> None:
    """The HPA scales the Deployment between 3 and 10 on CPU; the PDB lets one pod go."""
    objects = _k8s_objects()
    deployment = objects["Deployment/larkbot"]
    hpa = objects["HorizontalPodAutoscaler/larkbot"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
    assert "cpu" in _container(deployment)["resources"]["requests"]
    # The note on scaling on the backlog names the metric the daemon exports.
    assert "larkbot_redis_backlog" in (K8S / "hpa.yaml").read_text(encoding="utf-8")
    assert "larkbot_redis_backlog" in _exported_series()

    pdb = objects["PodDisruptionBudget/larkbot"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert hpa["spec"]["minReplicas"] - pdb["spec"]["maxUnavailable"] >= 2


def test_k8s_redis_keeps_its_aof_on_a_volume_with_the_shipped_settings() -> None:
    """One Redis pod runs config/redis.conf (AOF everysec, noeviction) on a claim, with the
    Secret's password, behind the Service the URL names."""
    objects = _k8s_objects()
    config = objects["ConfigMap/larkbot-redis"]["data"]["redis.conf"]
    assert config == (ROOT / "config" / "redis.conf").read_text(encoding="utf-8")
    for line in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert line in config.splitlines()
    redis = objects["StatefulSet/larkbot-redis"]
    container = _container(redis)
    pod = redis["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    args = container["args"]
    assert args[0] == f"{mounts['config']}/redis.conf"
    assert args[args.index("--dir") + 1] == mounts[claim["metadata"]["name"]]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"]}
    assert env == {"REDIS_PASSWORD": "redis_password", "REDISCLI_AUTH": "redis_password"}
    (config_volume,) = pod["volumes"]
    assert config_volume["configMap"]["name"] == "larkbot-redis"
    service = objects["Service/larkbot-redis"]
    assert redis["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    labels = redis["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    """Every object validates, strictly (no unknown fields), against Kubernetes' schemas.

    ``kubectl apply --dry-run=client`` needs an API server to map kinds; the
    kubernetes-validate package carries the published OpenAPI schemas and works offline.
    """
    validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (a dev dependency)"
    )
    for path in sorted(K8S.glob("*.yaml")):
        for document in _load_yaml(path):
            validate.validate(document, "1.30", strict=True)


# --- metric names in dashboards and alerts ------------------------------------------------------


def _exported_series() -> dict[str, frozenset[str]]:
    """Map every series name larkbot exports to the label names it may carry."""
    declared = {
        # prometheus_client has no public accessor for a metric's label names.
        value._name: value._labelnames
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
    }
    series: dict[str, frozenset[str]] = {}
    for family in REGISTRY.collect():
        names = {family.name} | {sample.name for sample in family.samples}
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        labels = set(declared.get(family.name, ()))
        labels |= {label for sample in family.samples for label in sample.labels}
        for name in names:
            series[name] = frozenset(labels | ({"le"} if name.endswith("_bucket") else set()))
    return series


# Labels every scraped series carries; ``up`` is written by Prometheus for each target.
_TARGET_LABELS = frozenset({"job", "instance"})
_SCRAPE_SERIES = {"up": frozenset()}
_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "inf", "nan",
}  # fmt: skip
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""")


def _promql_selectors(expr: str) -> list[tuple[str, frozenset[str]]]:
    """Return ``(metric name, label names matched)`` for each series selector in ``expr``."""
    text = _STRING.sub('""', expr)
    selectors: list[tuple[str, frozenset[str]]] = []
    for match in re.finditer(r"\{[^}]*\}", text):
        labels = re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", match[0])
        name = re.search(r"([A-Za-z_:][\w:]*)\s*$", text[: match.start()])
        if name is None or name[1] in _PROMQL_WORDS:
            raise ValueError(f"selector without a metric name in {expr!r}")
        selectors.append((name[1], frozenset(labels)))
    text = re.sub(r"[A-Za-z_:][\w:]*\s*\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    for match in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        if match[1].lower() not in _PROMQL_WORDS:
            selectors.append((match[1], frozenset()))
    return selectors


def _unknown_references(expr: str) -> list[str]:
    series = _exported_series() | _SCRAPE_SERIES
    problems: list[str] = []
    selectors = _promql_selectors(expr)
    if not selectors:
        problems.append(f"no metric in {expr!r}")
    available = set(_TARGET_LABELS)
    for name, labels in selectors:
        if name not in series:
            problems.append(f"unknown metric {name}")
            continue
        available |= series[name]
        if unknown := labels - series[name] - _TARGET_LABELS:
            problems.append(f"{name} has no label {', '.join(sorted(unknown))}")
    # Grouping labels (by, without, on, ...) must exist on some series the expression reads.
    for group in _GROUPING.finditer(_STRING.sub('""', expr)):
        for label in re.findall(r"\w+", group[1]):
            if label not in available:
                problems.append(f"no series in the expression has label {label}")
    return problems


def test_promql_reader_finds_metrics_and_labels() -> None:
    """The reader behind the checks below sees names inside functions and matchers."""
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(foo_bucket{route=~"a|b",job="x"}'
        "[$__rate_interval]))) / on (job) group_left bar > 0.5 and baz offset 5m"
    )
    assert sorted(_promql_selectors(expr)) == [
        ("bar", frozenset()),
        ("baz", frozenset()),
        ("foo_bucket", frozenset({"route", "job"})),
    ]
    assert _unknown_references("larkbot_replies_total{outcome='failed'}") == []
    assert _unknown_references("larkbot_replies_total{status='x'}") == [
        "larkbot_replies_total has no label status"
    ]
    assert _unknown_references("rate(larkbot_replys_total[5m])") == [
        "unknown metric larkbot_replys_total"
    ]
    assert _unknown_references("sum by (tool, job) (tool_executions_total)") == [
        "no series in the expression has label tool"
    ]


def _alert_rules() -> list[dict[str, Any]]:
    (document,) = _load_yaml(ALERTS)
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _dashboard_panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in _dashboard_panels() for target in panel["targets"]]


def test_alerts_reference_only_exported_metrics() -> None:
    """Renaming a metric or a label breaks this test rather than the alerts."""
    problems = {rule["alert"]: _unknown_references(rule["expr"]) for rule in _alert_rules()}
    assert {alert: found for alert, found in problems.items() if found} == {}


def test_dashboard_references_only_exported_metrics() -> None:
    """Renaming a metric or a label breaks this test rather than the dashboard."""
    exprs = _dashboard_exprs()
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["definition"])
            assert query is not None, variable["definition"]
            exprs.append(f"{query[1]}{{{query[2]}=~'.+'}}")
    problems = {expr: _unknown_references(expr) for expr in exprs}
    assert {expr: found for expr, found in problems.items() if found} == {}


_ALERTS_REQUIRED = {
    "LarkbotDisconnected",
    "LarkbotAckLatencyHigh",
    "LarkbotReplyFailures",
    "LarkbotRestartLoop",
    "LarkbotBacklogHigh",
    "LarkbotOpenAPIErrors",
}


def test_alert_rules_are_complete() -> None:
    """Every required alert exists once, with a severity and a summary."""
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert set(names) >= _ALERTS_REQUIRED
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
    by_name = {rule["alert"]: rule for rule in rules}
    assert by_name["LarkbotDisconnected"]["for"] == "2m"
    restart_loop = 'changes(process_start_time_seconds{job="larkbot"}[15m]) > 3'
    assert restart_loop in by_name["LarkbotRestartLoop"]["expr"]


_DASHBOARD_COVERS = [
    "larkbot_connection_up",
    "larkbot_events_received_total",
    "larkbot_ack_latency_seconds_bucket",
    "larkbot_replies_total",
    "larkbot_openapi_requests_total",
    "larkbot_openapi_request_duration_seconds_bucket",
    "larkbot_dispatch_backlog",
    "larkbot_conversations_cached",
    "larkbot_inbox_depth",
    "agent_response_time_seconds_bucket",
    "tool_executions_total",
    "process_resident_memory_bytes",
]


def test_dashboard_is_importable_and_complete() -> None:
    """Import inputs, one Prometheus data source, a panel per metric, and a sane grid."""
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    (source,) = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS",
        "datasource",
        "prometheus",
    )
    wanted = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = _dashboard_panels()
    for panel in panels:
        assert panel["datasource"] == wanted, panel["title"]
        assert all(target["datasource"] == wanted for target in panel["targets"])
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = {name for expr in _dashboard_exprs() for name, _ in _promql_selectors(expr)}
    assert [name for name in _DASHBOARD_COVERS if name not in used] == []
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area


# --- promtool -----------------------------------------------------------------------------------


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return tool


def _run_promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_alert_rules() -> None:
    """``promtool check rules`` parses every expression and annotation template."""
    result = _run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_dashboard_queries(tmp_path: Path) -> None:
    """Each dashboard query, with Grafana's variables filled in, is valid PromQL."""
    rules = [
        {"record": f"larkbot_dashboard:query_{index}", "expr": expr}
        for index, expr in enumerate(_dashboard_exprs())
    ]
    for rule in rules:
        rule["expr"] = rule["expr"].replace("$__rate_interval", "5m").replace("$instance", ".*")
        assert "$" not in rule["expr"], rule["expr"]
    path = tmp_path / "dashboard-rules.json"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    selector = ",".join(f'{key}="{value}"' for key, value in {"job": "larkbot", **labels}.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


def _case(series: list[dict[str, str]], *checks: dict[str, Any]) -> dict[str, Any]:
    """A promtool test case: ``series`` replayed a minute apart, then ``checks``."""
    return {"interval": "1m", "input_series": series, "alert_rule_test": list(checks)}


def _quiet(eval_time: str, alert: str) -> dict[str, Any]:
    """``alert`` does not fire at ``eval_time``."""
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": []}


def _fires(eval_time: str, alert: str, severity: str, **labels: str) -> dict[str, Any]:
    """``alert`` fires at ``eval_time`` once, with ``severity`` and ``labels``."""
    exp_labels = {"severity": severity, "job": "larkbot", **labels}
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": [{"exp_labels": exp_labels}]}


def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """``promtool test rules`` replays series through the rules and checks what fires.

    The annotations are left out of the replayed copy: their wording is free to change and
    ``promtool check rules`` already validates their templates.
    """
    rules_copy = tmp_path / "alerts.json"
    (document,) = _load_yaml(ALERTS)
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules_copy.write_text(json.dumps(document))
    bot, slow, fast = "bot:3000", "slow:3000", "fast:3000"
    route = {"route": "im/v1/messages/:message_id/reply"}
    requests = "larkbot_openapi_requests_total"
    bad_acks = {"0.005": "0x20", "0.5": "0x20", "1.0": "0+10x20", "+Inf": "0+10x20"}
    good_acks = {"0.005": "0+10x20", "0.5": "0+10x20", "1.0": "0+10x20", "+Inf": "0+10x20"}
    tests = [
        _case(
            [_series("larkbot_connection_up", "1 0x10", instance=bot)],
            _quiet("2m", "LarkbotDisconnected"),
            _fires("4m", "LarkbotDisconnected", "critical", instance=bot),
        ),
        _case(
            [
                _series("larkbot_replies_total", "0x3 1x20", instance=bot, outcome="failed"),
                _series("larkbot_replies_total", "0+5x24", instance=bot, outcome="sent"),
            ],
            _quiet("2m", "LarkbotReplyFailures"),
            _fires("6m", "LarkbotReplyFailures", "warning", instance=bot, outcome="failed"),
            _quiet("20m", "LarkbotReplyFailures"),
        ),
        _case(
            [
                _series("process_start_time_seconds", "100+60x5 400x10", instance=bot),
                # Another Python exporter restarting is not larkbot's problem.
                _series("process_start_time_seconds", "100+60x10", instance=bot, job="other"),
            ],
            _fires("6m", "LarkbotRestartLoop", "critical", instance=bot),
        ),
        _case(
            [
                # slow: every ack between 0.5 s and 1 s; fast: every ack under 5 ms.
                _series("larkbot_ack_latency_seconds_bucket", values, instance=inst, le=le)
                for inst, buckets in ((slow, bad_acks), (fast, good_acks))
                for le, values in buckets.items()
            ],
            _quiet("3m", "LarkbotAckLatencyHigh"),
            _fires("12m", "LarkbotAckLatencyHigh", "warning", instance=slow),
        ),
        _case(
            [
                # slow: one request in four rate limited; fast: none.
                _series(requests, "0+60x30", instance=slow, status="200", **route),
                _series(requests, "0+20x30", instance=slow, status="429", **route),
                _series(requests, "0+60x30", instance=fast, status="200", **route),
            ],
            _fires("20m", "LarkbotOpenAPIErrors", "warning", instance=slow),
        ),
        _case(
            [
                _series("larkbot_dispatch_backlog", "5x5 150x20", instance=bot),
                _series(
                    "larkbot_events_received_total",
                    "0x5 3x20",
                    instance=bot,
                    event_type="im.message.receive_v1",
                    outcome="overloaded",
                ),
            ],
            _quiet("10m", "LarkbotBacklogHigh"),
            _fires("20m", "LarkbotBacklogHigh", "warning", instance=bot),
            _quiet("4m", "LarkbotOverloaded"),
            _fires("8m", "LarkbotOverloaded", "warning", instance=bot),
        ),
    ]
    test_file = tmp_path / "alerts-test.json"
    test_file.write_text(
        json.dumps({"rule_files": [str(rules_copy)], "evaluation_interval": "1m", "tests": tests})
    )
    result = _run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


# --- the wheel, installed the way the image installs it ----------------------------------------


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(argv: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{argv}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv_like_the_image(tmp_path: Path) -> None:
    """Wheels of the project and its dependencies install offline into a fresh venv.

    The same two steps as the Dockerfile: ``pip wheel --wheel-dir`` of the project, then
    ``pip install --no-index --find-links`` into a new venv; its ``larkbot`` command runs.
    """
    wheels = tmp_path / "wheels"
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", wheels, ROOT], tmp_path)
    (project_wheel,) = wheels.glob("larkbot-*.whl")
    _run([sys.executable, "-m", "venv", venv], tmp_path)
    python = venv / "bin" / "python"
    install = ["install", "--quiet", "--no-index", "--find-links", wheels, "larkbot"]
    _run([python, "-m", "pip", *install], tmp_path)
    with zipfile.ZipFile(project_wheel) as wheel:
        packaged = {Path(name).parts[0] for name in wheel.namelist()}
    assert "larkbot" in packaged
    assert "tests" not in packaged
    larkbot = venv / "bin" / "larkbot"
    assert larkbot.is_file()
    # Run from tmp_path so the checkout is not on sys.path: this is the installed package.
    installed = _run([python, "-c", "import larkbot; print(larkbot.__file__)"], tmp_path)
    assert Path(installed.stdout.strip()).is_relative_to(venv)
    help_text = _run([larkbot, "--help"], tmp_path).stdout
    assert "run" in help_text
