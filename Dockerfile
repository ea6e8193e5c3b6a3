# syntax=docker/dockerfile:1
#
# docker build -t larkbot .
# docker run --rm -e APP_ID=cli_xxx -e APP_SECRET_FILE=/run/secrets/app_secret \
#   -v "$PWD/app_secret:/run/secrets/app_secret:ro" -p 127.0.0.1:3000:3000 larkbot
# See docker-compose.yml for the same with a Docker secret and a state volume.

# Builder: turns the project and every dependency into wheels, so the runtime stage installs
# offline from a fixed set and carries no build tooling or source tree.
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from: README.md because pyproject.toml names it as the readme.
COPY pyproject.toml README.md ./
COPY larkbot ./larkbot
RUN pip wheel --wheel-dir /wheels .

# Runtime: a venv at /opt/larkbot holding larkbot and its dependencies, run as a non-root user.
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# The wheels are bind-mounted from the builder rather than copied, so they add no layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/larkbot \
    && /opt/larkbot/bin/pip install --no-index --find-links /wheels larkbot \
    && groupadd --system --gid 10001 larkbot \
    && useradd --system --uid 10001 --gid larkbot --no-create-home \
        --home-dir /var/lib/larkbot --shell /usr/sbin/nologin larkbot \
    && install -d -o larkbot -g larkbot -m 0700 /var/lib/larkbot

# HOST=0.0.0.0: the health/metrics port must be reachable from outside the container
# (published ports, orchestrator probes); the default 127.0.0.1 would hide it.
ENV PATH=/opt/larkbot/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json \
    LARKBOT_STATE_DIR=/var/lib/larkbot \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Seen-message ledger and inbox: keep them across container replacements, or duplicates
# redelivered after a restart may be answered again.
VOLUME /var/lib/larkbot
WORKDIR /var/lib/larkbot
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 3000

# The slim image has no curl; the venv's python does the probe. /healthz answers while the
# process is alive; /readyz (long connection open) is for orchestrators that route traffic.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3000') + '/healthz', timeout=4)"]

# The daemon drains in-flight replies within 25 s of SIGTERM; give `docker stop` 30 s
# (docker-compose.yml sets stop_grace_period: 30s, `docker stop -t 30` on the command line).
STOPSIGNAL SIGTERM
CMD ["larkbot", "run"]
