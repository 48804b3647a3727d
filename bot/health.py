"""The health sidecar: a tiny HTTP/1.1 server for probes and Prometheus.

Endpoints (GET or HEAD; every answer closes the connection)::

    /healthz   200 "ok" while the process is alive (liveness)
    /readyz    200 when the scheduler runs and the database answers; else 503 with a JSON reason
    /metrics   Prometheus text format 0.0.4; the queue gauges are refreshed on every scrape

Configured by the ``[health]`` table (all keys optional)::

    [health]
    enabled = true          # false: no listener at all
    host = "127.0.0.1"      # the container image sets TAGRELAY_HEALTH_HOST=0.0.0.0
    port = 9464             # 0 picks a free port (see HealthServer.port)
    timeout = "2s"          # how long /readyz and /metrics wait for the database

``TAGRELAY_HEALTH_HOST`` and ``TAGRELAY_HEALTH_PORT`` (environment or ``.env``)
override ``host`` and ``port``. Built on ``asyncio.start_server``: no web
framework, nothing listens until ``tagrelay run`` starts the service, and
``run --once`` never listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.errors import ConfigError
from bot.log import event, redact_text
from bot.observability import CONTENT_TYPE, Metrics
from bot.settings import Config, Duration

log = logging.getLogger("tagrelay.health")

DEFAULT_PORT = 9464
"""Not 8080/8000/9090: 9464 is a common metrics-only port, rarely taken by an application."""

HOST_ENV = "TAGRELAY_HEALTH_HOST"
PORT_ENV = "TAGRELAY_HEALTH_PORT"

MAX_LINE = 8192
"""Longest request line or header line accepted (431 beyond)."""
MAX_HEADERS = 64
READ_TIMEOUT = 10.0
"""A client has this long to send its request head; then the connection is dropped."""

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class HealthSettings(BaseModel):
    """The validated ``[health]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    """Address to listen on: an IP address or a host name (``0.0.0.0`` for all IPv4 interfaces)."""
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    """TCP port; 0 picks a free one."""
    timeout: Duration = 2.0
    """How long a probe waits for the database before answering 503."""

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        value = value.strip()
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(value)
            return value
        if not _HOSTNAME.match(value):
            raise ValueError(f"{value!r} is neither an IP address nor a host name")
        return value


def load_health_settings(raw: object, env: Callable[[str], str | None] = lambda _name: None) -> HealthSettings:
    """Validate the raw ``[health]`` table, then apply the environment overrides.

    Raises ``ConfigError`` naming ``health.<key>`` (or the variable) on the first bad value.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("health", "must be a table ([health])")
    data: dict[str, Any] = dict(raw)
    try:
        settings = HealthSettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"])
        reason = "unknown key (known: enabled, host, port, timeout)" if err["type"] == "extra_forbidden" \
            else err["msg"]
        raise ConfigError(f"health.{key}" if key else "health", reason) from None
    overrides: dict[str, Any] = {}
    host = env(HOST_ENV)
    if host is not None and host.strip():
        overrides["host"] = host
    port = env(PORT_ENV)
    if port is not None and port.strip():
        if not port.strip().isdigit():
            raise ConfigError(PORT_ENV, f"{port!r} is not a port number (0-65535)")
        overrides["port"] = int(port)
    if overrides:
        try:
            settings = HealthSettings.model_validate({**settings.model_dump(), **overrides})
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            var = HOST_ENV if err["loc"] and err["loc"][0] == "host" else PORT_ENV
            raise ConfigError(var, err["msg"]) from None
    return settings


# -- what the server looks at ------------------------------------------------------------------


class _Pingable(Protocol):
    async def ping(self) -> None: ...


class _QueueGauges(Protocol):
    async def refresh_queue_metrics(self) -> None: ...


class HealthTarget(Protocol):
    """The parts of ``bot.app.App`` the health server reads."""

    @property
    def running(self) -> bool: ...

    @property
    def stop_event(self) -> asyncio.Event: ...

    @property
    def store(self) -> _Pingable: ...

    @property
    def deliverer(self) -> _QueueGauges: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def config(self) -> Config: ...


# -- HTTP ----------------------------------------------------------------------------------------


class _Answer:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                 headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}


def _json(status: int, data: Mapping[str, Any]) -> _Answer:
    return _Answer(status, (json.dumps(data, sort_keys=True) + "\n").encode(), "application/json")


class _BadRequest(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class HealthServer:
    """The ``health`` sidecar. ``port`` holds the bound port once started (useful with port 0)."""

    name = "health"

    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings
        self.port: int | None = None
        self._app: HealthTarget | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """``http://host:port`` of the listener (after ``start``)."""
        host = self.settings.host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - describing the bind address, not binding
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self, app: HealthTarget) -> None:
        self._app = app
        for source in app.config.sources:
            if source.enabled:
                app.metrics.source_configured(source.name)
        try:
            self._server = await asyncio.start_server(self._serve, self.settings.host, self.settings.port,
                                                      limit=MAX_LINE, reuse_address=True)
        except OSError as exc:
            raise ConfigError("health.port", f"cannot listen on {self.settings.host}:{self.settings.port}: "
                                             f"{exc.strerror or exc} (choose another [health] port or set "
                                             f"{PORT_ENV})") from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        event(log, logging.INFO, "health.listening", host=self.settings.host, port=self.port,
              endpoints="/healthz /readyz /metrics")

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5.0)

    # -- connection handling --------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            try:
                method, path = await asyncio.wait_for(self._read_head(reader), READ_TIMEOUT)
            except _BadRequest as exc:
                await self._write(writer, "GET", _Answer(exc.status, exc.text.encode() + b"\n"))
                return
            except TimeoutError:
                await self._write(writer, "GET", _Answer(408, b"request head not received in time\n"))
                return
            answer = await self._route(method, path)
            await self._write(writer, method, answer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        except Exception:  # a bug here must not take the service down
            log.exception("health endpoint failed")
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[str, str]:
        line = await self._read_line(reader)
        parts = line.split(" ")
        if len(parts) != 3 or not parts[0].isalpha():
            raise _BadRequest(400, "malformed request line")
        method, target, version = parts
        if not version.startswith("HTTP/1."):
            raise _BadRequest(505, "only HTTP/1.x is spoken here")
        for _ in range(MAX_HEADERS + 1):
            if not await self._read_line(reader):
                break
        else:
            raise _BadRequest(431, "too many header lines")
        return method.upper(), urlsplit(target).path or "/"

    @staticmethod
    async def _read_line(reader: asyncio.StreamReader) -> str:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "request line or header too long") from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise
            raise _BadRequest(400, "incomplete request") from None
        return raw.decode("latin-1").rstrip("\r\n")

    async def _write(self, writer: asyncio.StreamWriter, method: str, answer: _Answer) -> None:
        head = [f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Unknown')}",
                f"Content-Type: {answer.content_type}",
                f"Content-Length: {len(answer.body)}",
                "Cache-Control: no-store",
                "Connection: close"]
        head.extend(f"{k}: {v}" for k, v in answer.headers.items())
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD":
            writer.write(answer.body)
        await writer.drain()

    async def _route(self, method: str, path: str) -> _Answer:
        handlers = {"/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics}
        handler = handlers.get(path.rstrip("/") or "/")
        if handler is None:
            return _Answer(404, b"not found; try /healthz, /readyz or /metrics\n")
        if method not in ("GET", "HEAD"):
            return _Answer(405, b"only GET and HEAD\n", headers={"Allow": "GET, HEAD"})
        return await handler()

    # -- endpoints ------------------------------------------------------------------------------

    async def _healthz(self) -> _Answer:
        return _Answer(200, b"ok\n")

    async def _readyz(self) -> _Answer:
        app = self._target()
        checks: dict[str, str] = {}
        problems: list[str] = []
        if app.running:
            checks["scheduler"] = "running"
        else:
            state = "stopping" if app.stop_event.is_set() else "starting"
            checks["scheduler"] = state
            problems.append(f"the service is {state}")
        try:
            await asyncio.wait_for(app.store.ping(), self.settings.timeout)
            checks["database"] = "ok"
        except TimeoutError:
            checks["database"] = "timeout"
            problems.append(f"the database did not answer within {self.settings.timeout:g}s")
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the reason is reported
            checks["database"] = "error"
            problems.append(redact_text(str(exc) or type(exc).__name__))
        if problems:
            return _json(503, {"status": "unavailable", "reason": "; ".join(problems), "checks": checks})
        return _json(200, {"status": "ready", "checks": checks})

    async def _metrics(self) -> _Answer:
        app = self._target()
        try:
            await asyncio.wait_for(app.deliverer.refresh_queue_metrics(), self.settings.timeout)
        except Exception as exc:  # noqa: BLE001 - stale queue gauges beat no metrics at all
            event(log, logging.WARNING, "metrics.refresh_failed", error=redact_text(str(exc) or type(exc).__name__),
                  note="queue gauges show their previous values")
        return _Answer(200, app.metrics.render(), CONTENT_TYPE)

    def _target(self) -> HealthTarget:
        assert self._app is not None, "HealthServer.start was not called"
        return self._app
