# syntax=docker/dockerfile:1
#
# tagrelay as a container: docs/deploy.md explains volumes, environment and upgrades.
#
#   docker build -t tagrelay .
#   docker run -d --name tagrelay --env-file .env --stop-timeout 30 \
#       -v tagrelay-data:/data -v "$PWD/config/tagrelay.toml:/config/tagrelay.toml:ro" \
#       -p 127.0.0.1:9464:9464 tagrelay
#
# Two stages: the builder turns the source into wheels (tagrelay's own, built with
# `python -m build`, plus one per dependency); the runtime stage installs those
# wheels, and nothing else, into a virtualenv. No compiler, no source tree and no
# secret ends up in the image: credentials come from the environment at run time.
# Needs BuildKit (the default builder since Docker 23) for the bind mount below.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m pip install "build>=1.2"

# Only what the wheel is made of (pyproject: bot/, plus migrations/ as bot/migrations).
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY migrations ./migrations

RUN python -m build --wheel --outdir /dist \
 && python -m pip wheel --wheel-dir /wheels /dist/tagrelay-*.whl

# --- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=dev
LABEL org.opencontainers.image.title="tagrelay" \
      org.opencontainers.image.description="Publishes new archive posts, per tag, to Telegram, X and Mastodon" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/tagrelay/tagrelay" \
      org.opencontainers.image.documentation="https://github.com/tagrelay/tagrelay/blob/main/docs/deploy.md"

# An unprivileged user with a fixed uid/gid, so volume ownership is predictable
# (chown 10001:10001 a bind-mounted data folder).
RUN groupadd --system --gid 10001 tagrelay \
 && useradd --system --uid 10001 --gid tagrelay --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin tagrelay \
 && mkdir -p /data /config \
 && chown tagrelay:tagrelay /data

# The wheels are bind-mounted from the builder, so they never become an image layer.
# The virtualenv has no pip: nothing in the running container installs packages.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/tagrelay \
 && python -m pip --python /opt/tagrelay/bin/python install --no-cache-dir --no-index \
        --find-links=/wheels tagrelay \
 && /opt/tagrelay/bin/tagrelay --version

ENV PATH="/opt/tagrelay/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TAGRELAY_CONFIG=/config/tagrelay.toml \
    TAGRELAY_STORAGE_URL=sqlite+aiosqlite:////data/tagrelay.db \
    TAGRELAY_HEALTH_HOST=0.0.0.0 \
    TAGRELAY_HEALTH_PORT=9464

# The SQLite database (and its -wal/-shm files) lives here; keep it on a volume.
VOLUME ["/data"]
WORKDIR /data
EXPOSE 9464

USER 10001:10001

# /readyz: 200 while the scheduler runs and the database answers. The slim image has
# no curl, so Python asks; any error or non-2xx answer exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ.get('TAGRELAY_HEALTH_PORT', '9464') + '/readyz', timeout=4)"]

# SIGTERM: stop polling, let in-flight sends finish ([service] shutdown_timeout, 20 s by
# default), record the rest as resumable, exit 0. Give the container more than that
# (`docker run --stop-timeout 30`, compose `stop_grace_period: 30s`): Docker's default is 10 s.
STOPSIGNAL SIGTERM

# `run` applies pending database migrations before it starts (`tagrelay db upgrade` does only that).
ENTRYPOINT ["tagrelay"]
CMD ["run"]
