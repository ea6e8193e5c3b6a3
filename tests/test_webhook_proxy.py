"""The shipped nginx server block (config/nginx/larkbot.conf) in front of the real daemon.

nginx terminates TLS with a certificate made here, and only the webhook gets through:
Lark's challenge and events reach the daemon, the health and metrics paths do not. To see
``X-Forwarded-For`` honoured only from the proxy, nginx talks to the daemon from
127.0.0.2 (the one trusted proxy) and the client comes from 127.0.0.3.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from larkbot.testing import LarkStandIn, WebhookFault, WebhookRequest
from tests._daemon import EchoAgent, running_daemon, settings_for, webhook_driver, webhook_env

pytestmark = pytest.mark.anyio

_ROOT = Path(__file__).resolve().parent.parent
_CONF = _ROOT / "config" / "nginx" / "larkbot.conf"
_NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
_PROXY = "127.0.0.2"
_CLIENT = "127.0.0.3"

needs_nginx = pytest.mark.skipif(_NGINX is None, reason="nginx is not installed")


def test_the_readme_shows_the_shipped_server_block() -> None:
    readme = (_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```nginx\n(.*?)```", readme, flags=re.DOTALL)
    # The README shows other nginx blocks too (the MCP server's); this one is shown whole.
    assert _CONF.read_text(encoding="utf-8") in blocks


def test_the_server_block_proxies_only_the_webhook() -> None:
    conf = _CONF.read_text(encoding="utf-8")
    locations = re.findall(r"location ([^{]+)\{", conf)
    assert [location.strip() for location in locations] == ["= /webhook", "/"]
    assert conf.count("proxy_pass ") == 1
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    assert "LARKBOT_EVENTS__TRUSTED_PROXIES=127.0.0.1" in conf
    for private in ("/metrics", "/readyz", "/healthz"):
        assert f"location = {private}" not in conf


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: the certificate file and its key file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _nginx_conf(directory: Path, daemon_port: int, tls_port: int) -> Path:
    """The shipped server block, moved to free ports and a test certificate, in a main file."""
    cert_file, key_file = _certificate(directory)
    server = _CONF.read_text(encoding="utf-8")
    server = _replace_once(server, "listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;")
    server = _replace_once(server, "    listen [::]:443 ssl;\n", "")
    server = _replace_once(
        server, "/etc/letsencrypt/live/bot.example.com/fullchain.pem", str(cert_file)
    )
    server = _replace_once(
        server, "/etc/letsencrypt/live/bot.example.com/privkey.pem", str(key_file)
    )
    server = _replace_once(
        server,
        "proxy_pass http://127.0.0.1:3000;",
        f"proxy_pass http://127.0.0.1:{daemon_port};\n        proxy_bind {_PROXY};",
    )
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        f"daemon off;\nmaster_process off;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'};\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}\n{server}}}\n",
        encoding="utf-8",
    )
    return conf


@asynccontextmanager
async def _nginx(directory: Path, daemon_port: int) -> AsyncIterator[str]:
    """Run nginx with the shipped block in front of ``daemon_port``; yield its https URL."""
    assert _NGINX is not None
    tls_port = _unused_port()
    conf = _nginx_conf(directory, daemon_port, tls_port)
    error_log = directory / "error.log"
    command = [_NGINX, "-c", str(conf), "-p", str(directory), "-e", str(error_log)]
    checked = await anyio.run_process([*command, "-t"], check=False)
    assert checked.returncode == 0, checked.stderr.decode()
    process = await anyio.open_process(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    async with process:
        try:
            with anyio.fail_after(10):
                while True:
                    try:
                        stream = await anyio.connect_tcp("127.0.0.1", tls_port)
                    except OSError:
                        assert process.returncode is None, error_log.read_text()
                        await anyio.sleep(0.02)
                    else:
                        await stream.aclose()
                        break
            yield f"https://127.0.0.1:{tls_port}"
        finally:
            with anyio.CancelScope(shield=True):
                process.terminate()
                await process.wait()


def _client(base_url: str, directory: Path) -> httpx.AsyncClient:
    trust = ssl.create_default_context(cafile=str(directory / "cert.pem"))
    transport = httpx.AsyncHTTPTransport(verify=trust, local_address=_CLIENT)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=5)


async def _post(http: httpx.AsyncClient, request: WebhookRequest) -> httpx.Response:
    return await http.post("/webhook", content=request.body, headers=dict(request.headers))


@needs_nginx
async def test_through_nginx_only_the_webhook_answers_and_the_client_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = webhook_env(LARKBOT_EVENTS__TRUSTED_PROXIES=_PROXY)
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, tmp_path / "state", **env)
        async with running_daemon(settings, EchoAgent()) as daemon:
            assert daemon.ops_port is not None
            async with (
                webhook_driver(lark, f"http://127.0.0.1:{daemon.ops_port}") as lark_side,
                _nginx(tmp_path, daemon.ops_port) as public,
                _client(public, tmp_path) as http,
            ):
                verify = lark_side.seal(lark_side.url_verification("through-nginx"))
                challenge = await _post(http, verify)
                assert challenge.status_code == 200
                assert challenge.json() == {"challenge": "through-nginx"}

                event = lark_side.message_event("help")
                lark.remember_event(event)
                answered = await _post(http, lark_side.seal(event))
                assert (answered.status_code, answered.json()) == (200, {"msg": "success"})
                await lark.wait_for(lambda: len(lark.replies) == 1, timeout=10)

                for private in ("/metrics", "/readyz", "/healthz", "/"):
                    assert (await http.get(private)).status_code == 404, private
                assert (await http.get("/webhook")).status_code == 403

                forged = lark_side.seal(
                    lark_side.message_event("forged"), fault=WebhookFault.BAD_SIGNATURE
                )
                with caplog.at_level(logging.WARNING, logger="larkbot.webhook"):
                    refused = await http.post(
                        "/webhook",
                        content=forged.body,
                        headers={**forged.headers, "X-Forwarded-For": "198.51.100.7"},
                    )
    assert refused.status_code == 401
    # The proxy is trusted, so the hop it appended names the client; the hop the client
    # wrote itself is not believed.
    refusals = [r.getMessage() for r in caplog.records if r.name == "larkbot.webhook"]
    assert refusals == [
        f"refused a webhook request from {_CLIENT} (bad_signature): signature does not match"
    ]
    assert [r.to_message_id for r in lark.replies] == [event["event"]["message"]["message_id"]]
