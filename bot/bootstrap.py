"""The composition root: the only place that builds concrete adapters.

Every part has a production default and can be replaced by keyword (tests pass
a fake clock, a prepared HTTP client or extra sidecars the same way). Nothing
here runs at import time; the environment is read only when called.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets as _secrets
import socket
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from bot import __version__
from bot.app import App, Components, Sidecar
from bot.clock import SystemClock
from bot.domain.lifecycle import ChannelLifecycle
from bot.errors import ConfigError, CredentialsError
from bot.observability import Metrics
from bot.publishers.api import Clock, PublisherContext, PublisherPlugin, RenderEnv, abilities
from bot.publishers.registry import load_plugins
from bot.services.admin import AdminService
from bot.services.changes import lifecycle_of
from bot.services.coordinator import ClusterCoordinator, Coordinator, SoloCoordinator
from bot.services.delivery import ChannelRuntime
from bot.services.notifier import Notifier
from bot.services.push import PushSecrets
from bot.settings import Config, EnvSettings, Secrets, build_config, read_toml
from bot.sidecars import check_sidecars, load_push_secrets, make_admin_bot, make_health_server
from bot.sources.base import Source
from bot.sources.factory import make_source
from bot.sources.http import DEADLINE_FACTOR, make_feed_client, make_http_client
from bot.storage.engine import is_sqlite
from bot.storage.instance_lock import FileLock, SessionLock, database_dir, lock_path
from bot.storage.store import Store


def load_service_config(path: Path, *, env: EnvSettings, secrets: Secrets,
                        plugins: Mapping[str, PublisherPlugin] | None = None, credentials: bool = True) -> Config:
    """The one way every command loads its configuration (``run``, ``config check``, ``status``, …).

    Reads ``path`` and hands it to ``validate_service_config``: every table, every bound, and what the
    environment must provide. Raises ``ConfigError`` naming the key or variable; writes nothing.
    """
    return validate_service_config(read_toml(path), path=path.resolve(), secrets=secrets,
                                   storage_url=env.storage_url, plugins=plugins, credentials=credentials)


def validate_service_config(raw: Mapping[str, Any], *, path: Path | None, secrets: Secrets,
                            storage_url: str | None = None, plugins: Mapping[str, PublisherPlugin] | None = None,
                            credentials: bool = True) -> Config:
    """A parsed config file → a ``Config`` that ``tagrelay run`` starts with, or ``ConfigError``.

    Checks, in the order ``run`` would meet them: the core tables, sources, channels (each plugin's
    options model) and subscriptions (``build_config``); the ``[health]`` and ``[admin]`` tables with
    their environment overrides (``check_sidecars``); every channel's credentials, by building its
    publisher as ``run`` does, with a client that sends nothing (``make_channels``) - unless
    ``credentials`` is false (``tagrelay x-auth``, which is how the X tokens are obtained).
    """
    config = build_config(raw, plugins, path=path, storage_url=storage_url)
    check_sidecars(config, secrets)
    if not credentials:
        return config
    chosen = dict(plugins) if plugins is not None else load_plugins({c.platform for c in config.channels})
    check_credentials(config, chosen, secrets)
    return config


def check_credentials(config: Config, plugins: dict[str, PublisherPlugin], secrets: Secrets) -> None:
    """``ConfigError`` (exit 2) naming the channel and the variable when a channel's secret is not set.

    Builds each publisher as ``build_app`` does (constructors do no I/O) over a client whose every
    request fails, and drops them: the plugin itself decides which variables it needs (an X channel
    with ``bearer_token_env`` needs only that one).
    """
    if not config.channels:
        return
    offline = httpx.AsyncClient(transport=httpx.MockTransport(_no_request), trust_env=False)
    ctx = PublisherContext(http=offline, secret=_SecretLookup(secrets, "?"),
                           logger=logging.getLogger("tagrelay.publish"), clock=SystemClock(),
                           state_dir=database_dir(config.storage.url))
    make_channels(config, plugins, ctx, secrets)


def _no_request(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("checking the configuration sends no request", request=request)


def make_owner() -> str:
    """This process's identity in leases and claims: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{_secrets.token_hex(2)}"


def make_store(config: Config) -> Store:
    return Store.open(config.storage.url)


def make_coordinator(config: Config, store: Store, owner: str, clock: Clock) -> Coordinator:
    """THE choice of runtime mode, made once: SQLite is one instance alone (a cluster of one, guarded by
    the lock file beside the database; none for an in-memory database, which no other process can
    open), PostgreSQL any number of instances with leases."""
    if is_sqlite(config.storage.url):
        path = lock_path(store.url)  # the store's own database (a test or the bench may hand one in)
        return SoloCoordinator(store, owner, file_lock=FileLock(path) if path is not None else None)
    ttl = config.storage.lease_ttl
    return ClusterCoordinator(store, clock, owner, version=__version__, lease_ttl=ttl,
                              # a claimed source stays leased for the instance TTL plus the longest fetch
                              source_lease_ttl=ttl + config.http.timeout * DEADLINE_FACTOR,
                              session_lock=SessionLock(store.database.async_engine(), owner))


def make_channels(config: Config, plugins: dict[str, PublisherPlugin], base: PublisherContext,
                  secrets: Secrets) -> dict[str, ChannelRuntime]:
    """One live publisher per configured channel. A missing credential is a config error (exit 2)."""
    channels: dict[str, ChannelRuntime] = {}
    for i, options in enumerate(config.channels):
        plugin = plugins[options.platform]
        ctx = PublisherContext(http=base.http, secret=_SecretLookup(secrets, options.name), logger=base.logger,
                               clock=base.clock, attempts=base.attempts, state_dir=base.state_dir)

        def rebuild(opts: object, plugin: PublisherPlugin = plugin, ctx: PublisherContext = ctx) -> object:
            return plugin.create(opts, ctx)

        try:
            publisher = plugin.create(options, ctx)
        except CredentialsError as exc:
            raise ConfigError(f"channels[{i}]", f"channel {options.name!r}: {exc.reason}") from None
        channels[options.name] = ChannelRuntime(name=options.name, platform=options.platform, plugin=plugin,
                                                options=options, publisher=publisher,
                                                rebuild=rebuild)  # type: ignore[arg-type]
    return channels


def make_admin_service(config: Config, store: Store, *, clock: Clock | None = None,
                       plugins: Mapping[str, PublisherPlugin] | None = None,
                       channels: Mapping[str, ChannelRuntime] | None = None) -> AdminService:
    """The administration use cases, for every CLI command and for the admin bot (through ``build_app``).

    ``channels`` (the running service's): previews use each channel's render limits as its publisher
    learnt them; without, the defaults. The plugins are loaded for the configured platforms unless given.
    """
    plugins = plugins if plugins is not None else load_plugins({c.platform for c in config.channels})
    envs = _LiveRenderEnvs(channels) if channels is not None else None
    lifecycle = ({name: chan.lifecycle for name, chan in channels.items()} if channels is not None
                 else offline_lifecycles(config, plugins))
    return AdminService(store, config, clock or SystemClock(), plugins, envs, lifecycle)


def offline_lifecycles(config: Config, plugins: Mapping[str, PublisherPlugin]) -> dict[str, ChannelLifecycle]:
    """Each channel's edit and delete policy with what its publisher can do, for a command that sends
    nothing (``status``, ``retract``): the publishers are built over a client whose every request fails,
    with stand-in secrets (constructors do no I/O; only the abilities they declare are read)."""
    offline = httpx.AsyncClient(transport=httpx.MockTransport(_no_request), trust_env=False)
    ctx = PublisherContext(http=offline, secret=lambda _name: "offline-stand-in",
                           logger=logging.getLogger("tagrelay.publish"), clock=SystemClock())
    out: dict[str, ChannelLifecycle] = {}
    for options in config.channels:
        plugin = plugins.get(options.platform)
        if plugin is None:
            continue
        try:
            publisher = plugin.create(options, ctx)
        except Exception as exc:  # noqa: BLE001 - a plugin that cannot be built offline: abilities unknown
            logging.getLogger("tagrelay").debug("channel %s: abilities unknown offline (%s)", options.name,
                                                type(exc).__name__)
            continue
        out[options.name] = lifecycle_of(options, abilities(publisher))
    return out


def build_service(config: Config, secrets: Secrets) -> App:
    """``tagrelay run``: the app with the sidecars the config asks for; the admin bot, when ``[admin]`` is
    enabled, is also the ``Notifier`` that tells the admins about paused channels and held bursts."""
    health = make_health_server(config, secrets)
    admin = make_admin_bot(config.admin, secrets.get)
    sidecars: list[Sidecar] = [s for s in (health, admin) if s is not None]
    return build_app(config, secrets=secrets, sidecars=sidecars, notifier=admin,
                     push_secrets=load_push_secrets(config, secrets))



@contextlib.asynccontextmanager
async def open_channel(config: Config, name: str, secrets: Secrets, *,
                       store: Store | None = None) -> AsyncIterator[ChannelRuntime]:
    """One configured channel, wired exactly as the service wires it and initialized, for a one-off
    call such as ``tagrelay channels test`` (its HTTP client and publisher are closed on exit).
    ``store``: the database whose persisted attempt limits (a platform login) the channel honours."""
    opts = config.channel(name)
    if opts is None:
        raise KeyError(name)
    single = config.model_copy(update={"channels": (opts,)})
    plugins = load_plugins({opts.platform})
    async with make_http_client(config.http, version=__version__) as client:
        clock = SystemClock()
        base = PublisherContext(http=client, secret=lambda _n: "", logger=logging.getLogger("tagrelay"),
                                clock=clock, attempts=StoreAttempts(store, clock) if store is not None else None,
                                state_dir=database_dir(config.storage.url))
        chan = make_channels(single, plugins, base, secrets)[name]
        try:
            await chan.publisher.initialize()
            yield chan
        finally:
            await chan.publisher.aclose()


def build_app(
    config: Config,
    *,
    secrets: Secrets | None = None,
    clock: Clock | None = None,
    http: httpx.AsyncClient | None = None,
    plugins: dict[str, PublisherPlugin] | None = None,
    sidecars: Sequence[Sidecar] = (),
    notifier: Notifier | None = None,
    owner: str | None = None,
    store: Store | None = None,
    push_secrets: PushSecrets | None = None,
) -> App:
    """Wire an ``App`` for ``config``. Call inside a running event loop; use ``async with``.

    ``notifier`` tells the admins about a paused channel or a held burst (the admin bot; None: only the log).
    ``push_secrets``: the hook and WebSub secrets (``bot.sidecars.load_push_secrets``); None: none, so no
    push endpoints.
    """
    clock = clock or SystemClock()
    secrets = secrets or Secrets()
    close_http = http is None
    client = http or make_http_client(config.http, version=__version__)
    # a client handed in (tests, bench) serves the sources too; otherwise they get the feed client
    feed_client = client if http is not None else make_feed_client(config.http, version=__version__)
    plugins = plugins if plugins is not None else load_plugins({c.platform for c in config.channels})
    store = store or make_store(config)
    ctx = PublisherContext(http=client, secret=_SecretLookup(secrets, "?"),
                           logger=logging.getLogger("tagrelay.publish"), clock=clock,
                           attempts=StoreAttempts(store, clock), state_dir=database_dir(config.storage.url))
    sources: dict[str, Source] = {s.name: make_source(s, feed_client, config.http)
                                  for s in config.sources if s.enabled}
    channels = make_channels(config, plugins, ctx, secrets)
    owner = owner or make_owner()
    parts = Components(config=config, store=store, http=client, feed_http=feed_client, sources=sources,
                       channels=channels, plugins=plugins, clock=clock, metrics=Metrics(), owner=owner,
                       coordinator=make_coordinator(config, store, owner, clock), sidecars=list(sidecars),
                       close_http=close_http,
                       admin=make_admin_service(config, store, clock=clock, plugins=plugins, channels=channels),
                       notifier=notifier, push_secrets=push_secrets or PushSecrets())
    return App(parts)


class StoreAttempts:
    """``AttemptLimiter`` over the store's persisted buckets (``Store.take_token``), on the service's clock."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def take(self, key: str, count: float, per: float) -> float:
        return await self._store.take_token(key, count, per, self._clock.now().timestamp())


class _LiveRenderEnvs(Mapping[str, RenderEnv]):
    """Each channel's current render limits, read from its publisher when asked (they are learnt at runtime)."""

    def __init__(self, channels: Mapping[str, ChannelRuntime]) -> None:
        self._channels = channels

    def __getitem__(self, name: str) -> RenderEnv:
        return self._channels[name].publisher.render_env

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)


class _SecretLookup:
    """``ctx.secret(name)``: raises CredentialsError naming the variable, never a value."""

    def __init__(self, secrets: Secrets, channel: str) -> None:
        self._secrets = secrets
        self._channel = channel

    def __call__(self, name: str) -> str:
        value = self._secrets.get(name)
        if value is None:
            raise CredentialsError(self._channel, f"environment variable {name} is not set "
                                        "(set it in the environment or in .env)")
        return value

    def __repr__(self) -> str:
        return "<secret lookup>"

