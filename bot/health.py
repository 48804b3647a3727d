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
override ``host`` and ``port``. Served by ``aiohttp.web`` (``bot.httpserver``);
nothing listens until ``tagrelay run`` starts the service, and ``run --once``
never listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Protocol

from aiohttp import web

from bot import config_bounds as bounds
from bot.config_bounds import within
from bot.errors import ConfigError
from bot.httpserver import Listener, answer
from bot.log import event, redact_text
from bot.observability import CONTENT_TYPE, Metrics
from bot.settings import Config
from bot.validation import Before, Model, ValidationError, field_validator

log = logging.getLogger("tagrelay.health")

DEFAULT_PORT = 9464
"""Not 8080/8000/9090: 9464 is a common metrics-only port, rarely taken by an application."""

HOST_ENV = "TAGRELAY_HEALTH_HOST"
PORT_ENV = "TAGRELAY_HEALTH_PORT"

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class HealthSettings(Model):
    """The validated ``[health]`` table."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """Address to listen on: an IP address or a host name (``0.0.0.0`` for all IPv4 interfaces)."""
    port: int = within(bounds.PORT, DEFAULT_PORT)
    """TCP port; 0 picks a free one."""
    timeout: Annotated[float, Before(bounds.HEALTH_TIMEOUT)] = 2.0
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
        err = exc.errors()[0]
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
        digits = port.strip()
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:  # "²".isdigit() is True too
            raise ConfigError(PORT_ENV, f"{digits[:20]!r} is not a port number (0-65535)")
        overrides["port"] = int(digits)
    if overrides:
        try:
            settings = HealthSettings.model_validate({**settings.model_dump(), **overrides})
        except ValidationError as exc:
            err = exc.errors()[0]
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


def _json(status: int, data: Mapping[str, Any]) -> web.Response:
    return answer(status, json.dumps(data, sort_keys=True) + "\n", content_type="application/json")


class HealthServer:
    """The ``health`` sidecar. ``port`` holds the bound port once started (useful with port 0)."""

    name = "health"

    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings
        self._app: HealthTarget | None = None
        self._listener = Listener(self._route, label="health endpoint")

    @property
    def port(self) -> int | None:
        return self._listener.port

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
        await self._listener.listen(self.settings.host, self.settings.port, config_key="health.port",
                                    hint=f" (choose another [health] port or set {PORT_ENV})")
        event(log, logging.INFO, "health.listening", host=self.settings.host, port=self.port,
              endpoints="/healthz /readyz /metrics")

    async def stop(self) -> None:
        await self._listener.stop()

    async def _route(self, request: web.Request) -> web.Response:
        handlers = {"/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics}
        handler = handlers.get(request.path.rstrip("/") or "/")
        if handler is None:
            return answer(404, "not found; try /healthz, /readyz or /metrics\n")
        if request.method not in ("GET", "HEAD"):
            return answer(405, "only GET and HEAD\n", headers={"Allow": "GET, HEAD"})
        return await handler()

    # -- endpoints ------------------------------------------------------------------------------

    async def _healthz(self) -> web.Response:
        return answer(200, "ok\n")

    async def _readyz(self) -> web.Response:
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

    async def _metrics(self) -> web.Response:
        app = self._target()
        try:
            await asyncio.wait_for(app.deliverer.refresh_queue_metrics(), self.settings.timeout)
        except Exception as exc:  # noqa: BLE001 - stale queue gauges beat no metrics at all
            event(log, logging.WARNING, "metrics.refresh_failed", error=redact_text(str(exc) or type(exc).__name__),
                  note="queue gauges show their previous values")
        return answer(200, app.metrics.render(), content_type=CONTENT_TYPE)

    def _target(self) -> HealthTarget:
        assert self._app is not None, "HealthServer.start was not called"
        return self._app
