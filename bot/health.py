"""The health sidecar: a tiny HTTP/1.1 server for probes and Prometheus.

Endpoints (GET or HEAD; every answer closes the connection)::

    /healthz   200 "ok" while the process is alive (liveness)
    /readyz    200 when the scheduler runs and the database answers; else 503 with a JSON reason
    /metrics   Prometheus text format 0.0.4; the queue gauges are refreshed on every scrape

Configured by the ``[health]`` table (all keys optional; ``bot.settings.HealthSettings``)::

    [health]
    enabled = true          # false: no listener at all
    host = "127.0.0.1"      # the container image sets TAGRELAY_HEALTH_HOST=0.0.0.0
    port = 9464             # 0 picks a free port (see HealthServer.port)
    timeout = "2s"          # how long /readyz and /metrics wait for the database

The same listener serves the push endpoints when any source has a hook or WebSub is on
(``POST /hooks/<source>``, ``GET|POST /websub/<source>``: ``bot.pushhooks``); only those paths
belong behind a public reverse proxy, never ``/metrics``.

``TAGRELAY_HEALTH_HOST`` and ``TAGRELAY_HEALTH_PORT`` (environment or ``.env``)
override ``host`` and ``port``. Served by ``aiohttp.web`` (``bot.httpserver``);
nothing listens until ``tagrelay run`` starts the service, and ``run --once``
never listens.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from bot.httpserver import Listener, answer
from bot.log import event, redact_text
from bot.observability import CONTENT_TYPE, Metrics
from bot.pushhooks import PushEndpoint
from bot.services.push import PushService
from bot.settings import DEFAULT_HEALTH_PORT, HEALTH_HOST_ENV, HEALTH_PORT_ENV, Config
from bot.settings import HealthSettings as HealthSettings  # the [health] table is part of Config now
from bot.settings import load_health_settings as load_health_settings

log = logging.getLogger("tagrelay.health")

DEFAULT_PORT = DEFAULT_HEALTH_PORT
HOST_ENV = HEALTH_HOST_ENV
PORT_ENV = HEALTH_PORT_ENV


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

    @property
    def push(self) -> PushService | None: ...


# -- HTTP ----------------------------------------------------------------------------------------


def _json(status: int, data: Mapping[str, Any]) -> web.Response:
    return answer(status, json.dumps(data, sort_keys=True) + "\n", content_type="application/json")


class HealthServer:
    """The ``health`` sidecar. ``port`` holds the bound port once started (useful with port 0)."""

    name = "health"

    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings
        self._app: HealthTarget | None = None
        self._push: PushEndpoint | None = None
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
        self._push = PushEndpoint(app.push) if app.push is not None else None
        for source in app.config.sources:
            if source.enabled:
                app.metrics.source_configured(source.name)
        await self._listener.listen(self.settings.host, self.settings.port, config_key="health.port",
                                    hint=f" (choose another [health] port or set {PORT_ENV})")
        event(log, logging.INFO, "health.listening", host=self.settings.host, port=self.port,
              endpoints="/healthz /readyz /metrics" + (" /hooks/ /websub/" if self._push is not None else ""))

    async def stop(self) -> None:
        await self._listener.stop()

    async def _route(self, request: web.Request) -> web.StreamResponse:
        if self._push is not None and self._push.handles(request.path):
            return await self._push.handle(request)
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
