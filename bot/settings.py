"""Configuration: a TOML file for structure, the environment (and ``.env``) for secrets.

``build_config`` (``load_config`` for a file) validates the structure: the core tables, sources,
each channel's platform-specific keys against its plugin's options model, and subscriptions,
before anything is written, and raises ``ConfigError(key, reason)`` naming the dotted key
(``channels[1].chat_id``) on the first problem. The commands load through
``bot.bootstrap.load_service_config``, which adds the environment (secrets, and the ``TAGRELAY_HEALTH_*``
and ``TAGRELAY_ADMIN_IDS`` overrides of ``[health]`` and ``[admin]``) on top. Every bound lives in
``bot.config_bounds``; the models are pydantic's, through ``bot.validation``.

Size: ~540 lines because it is the whole configuration schema in one place (each table a model with its
documented defaults), which docs/configuration.md follows table by table; the bounds, the channel options
and the admin settings already live in their own modules.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from dotenv import dotenv_values
from pydantic import BeforeValidator

from bot import config_bounds as bounds
from bot.admin.settings import AdminSettings, admin_table
from bot.channel_options import ChannelOptions
from bot.config_bounds import Rate, RuleKeyword, RulePattern, RuleTag, within
from bot.config_bounds import parse_duration as parse_duration  # re-exported: the models' duration parser
from bot.domain.budget import SpendingConflict
from bot.domain.rules import Rule, RuleParts
from bot.domain.tags import slugify
from bot.errors import ConfigError, CredentialsError, PluginError, RuleError
from bot.publishers.api import PublisherPlugin, spending_plans
from bot.publishers.http import ENV_NAME_PATTERN, HTTP_URL_PATTERN
from bot.publishers.registry import load_plugins
from bot.validation import Field, Model, ValidationError, field_validator

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Any finite duration above zero; the keys below use the bounded ones from ``bot.config_bounds``."""


class RetentionConfig(Model):
    """``[storage.retention]``: what the database forgets, and when (``bot.domain.retention``)."""

    enabled: bool = True
    """Prune automatically every ``every`` in the service (``tagrelay db prune`` works either way)."""
    content: Annotated[float, BeforeValidator(bounds.RETENTION_PERIOD)] = 30 * 86400.0
    """A post's full content is dropped this long after it was first seen, once nothing will render it."""
    deliveries: Annotated[float, BeforeValidator(bounds.RETENTION_PERIOD)] = 180 * 86400.0
    """Settled delivery records and rule drops are kept this long."""
    audit: Annotated[float, BeforeValidator(bounds.RETENTION_PERIOD)] = 365 * 86400.0
    """Audit log entries are kept this long."""
    identity: Annotated[float, BeforeValidator(bounds.RETENTION_PERIOD)] = 365 * 86400.0
    """A post's identity goes once its source has listed without it for this long."""
    every: Annotated[float, BeforeValidator(bounds.RETENTION_PERIOD)] = 3600.0
    """How often the service runs a prune pass."""
    batch: int = within(bounds.RETENTION_BATCH, 50)
    """Posts (or rows) per prune transaction: each one short, polls and deliveries run between them."""


class StorageConfig(Model):
    url: str = "sqlite+aiosqlite:///data/tagrelay.db"
    """SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://..."""
    lease_ttl: Annotated[float, BeforeValidator(bounds.LEASE_TTL)] = 60.0
    """How long an instance's lease lasts without a heartbeat."""
    retention: RetentionConfig = RetentionConfig()
    """``[storage.retention]``: the prune periods (docs/operations.md, "Retention")."""

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value


class HttpConfig(Model):
    user_agent: str = ""
    """Empty means ``tagrelay/<version> (+https://github.com/tagrelay/tagrelay)``."""
    timeout: Annotated[float, BeforeValidator(bounds.HTTP_TIMEOUT)] = 20.0
    max_redirects: int = within(bounds.HTTP_MAX_REDIRECTS, 5)
    max_bytes: int = within(bounds.HTTP_MAX_BYTES, 10 * 1024 * 1024)
    concurrency: int = within(bounds.HTTP_CONCURRENCY, 16)
    per_host: int = within(bounds.HTTP_PER_HOST, 16)
    """At most this many polls against one host (a source's URL's host) at a time."""


class SourceConfig(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    url: str
    kind: Literal["auto", "rss", "wordpress", "jsonfeed"] = "auto"
    interval: Annotated[float, BeforeValidator(bounds.SOURCE_INTERVAL)] = 600.0
    taxonomies: tuple[Literal["tags", "categories"], ...] = ("tags", "categories")
    """WordPress REST only: which term lists count as tags for matching."""
    baseline_depth: int = within(bounds.BASELINE_DEPTH, 100)
    """How many of the latest posts the first poll reads and records."""
    enabled: bool = True
    burst_limit: int | None = within(bounds.BURST_LIMIT, None)
    """More new posts than this in one poll are held for an admin (None: ``[service] burst_limit``; 0: never)."""
    push_secret_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN)
    """Environment variable holding the secret of ``POST /hooks/<name>`` (None: no hook for this source)."""
    websub: bool = True
    """Subscribe to the WebSub hub the feed advertises (with ``[push] public_url`` set)."""

    @field_validator("url")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class SubscriptionConfig(Model):
    tag: str = Field(min_length=1)
    channels: tuple[str, ...] = Field(min_length=1)
    backfill: int = within(bounds.BACKFILL, 0)
    # the rule (bot.domain.rules): conditions a post with the tag must also meet
    all_tags: tuple[RuleTag, ...] = Field(default=(), max_length=bounds.RULE_ITEMS)
    """The post must carry every one of these tags too."""
    none_tags: tuple[RuleTag, ...] = Field(default=(), max_length=bounds.RULE_ITEMS)
    """The post must carry none of these."""
    include_keywords: tuple[RuleKeyword, ...] = Field(default=(), max_length=bounds.RULE_ITEMS)
    """At least one must be found (title, excerpt, content; ``field:words`` for one field)."""
    exclude_keywords: tuple[RuleKeyword, ...] = Field(default=(), max_length=bounds.RULE_ITEMS)
    """None may be found."""
    patterns: tuple[RulePattern, ...] = Field(default=(), max_length=bounds.RULE_PATTERNS)
    """``FIELD=RE`` must match, ``FIELD!=RE`` must not (RE2 syntax)."""
    max_age: Annotated[float, BeforeValidator(bounds.MAX_AGE)] | None = None
    """A post older than this when detected is not sent."""
    sources: tuple[str, ...] = Field(default=(), max_length=bounds.RULE_ITEMS)
    """Only posts from these sources (names of [[sources]])."""

    def rule(self) -> Rule | None:
        """The subscription's rule (None: every post with the tag). Its parts were validated at load."""
        return RuleParts(all_tags=self.all_tags, none_tags=self.none_tags, include_keywords=self.include_keywords,
                         exclude_keywords=self.exclude_keywords, patterns=self.patterns, max_age=self.max_age,
                         sources=self.sources).build()


class DeliveryConfig(Model):
    retry_base: Annotated[float, BeforeValidator(bounds.RETRY_BASE)] = 30.0
    retry_cap: Annotated[float, BeforeValidator(bounds.RETRY_CAP)] = 3600.0
    max_attempts: int = within(bounds.MAX_ATTEMPTS, 8)
    concurrency: int = within(bounds.DELIVERY_CONCURRENCY, 4)
    """How many channels deliver at the same time."""
    pacing: bool = True
    """Client-side rate limiting before any 429 (switch off only against test servers)."""
    account_limits: dict[str, Rate] = Field(default_factory=lambda: {
        "telegram": "30/s", "mastodon": "300/5min", "x": "100/15min",
        "bluesky": "1600/h"})  # 3 of 5,000 write points an hour per post
    """Per platform account (bot token, Mastodon account, X user): requests allowed."""
    channel_limits: dict[str, Rate] = Field(default_factory=lambda: {"telegram": "1/s"})
    """Per channel, by platform, unless the channel sets ``rate_limit``."""


class ServiceConfig(Model):
    jitter: float = within(bounds.JITTER, 0.1)
    """Poll interval jitter as a fraction of the interval."""
    max_backoff: Annotated[float, BeforeValidator(bounds.MAX_BACKOFF)] = 6 * 3600.0
    """Longest delay between polls of a failing source."""
    shutdown_timeout: Annotated[float, BeforeValidator(bounds.SHUTDOWN_TIMEOUT)] = 20.0
    """How long SIGTERM waits for in-flight sends before abandoning them (resumably)."""
    burst_limit: int = within(bounds.BURST_LIMIT, 50)
    """A poll with more new posts than this holds their deliveries for an admin (0: never); a source's
    own ``burst_limit`` overrides it."""
    ramp_after: int = within(bounds.RAMP_AFTER, 100)
    """More sources than this overdue at start-up (never polled, or their time passed while the service was
    down): their polls are spread over their interval instead of all starting at once."""
    not_modified_batch: int = within(bounds.NOT_MODIFIED_BATCH, 200)
    """Polls answered 304 are written up to this many in one transaction (``bot.services.poll_records``)."""
    not_modified_delay: Annotated[float, BeforeValidator(bounds.NOT_MODIFIED_DELAY)] = 0.5
    """A poll answered 304 is written at the latest this long after it ended (sooner when the poll driver
    starts a round, the batch is full, or the service stops)."""


class PushSettings(Model):
    """The ``[push]`` table: the hook's checks and the WebSub subscriber (``bot.services.push``)."""

    public_url: str | None = None
    """The service's listener as the world reaches it (through a reverse proxy): WebSub callbacks are
    ``<public_url>/websub/<source>``. None: no WebSub subscriptions."""
    websub: bool = True
    """Subscribe to the hubs feeds advertise (needs ``public_url``)."""
    websub_secret_env: str = Field(default="TAGRELAY_WEBSUB_SECRET", pattern=ENV_NAME_PATTERN)
    """Environment variable holding the secret each subscription's ``hub.secret`` is derived from."""
    lease: Annotated[float, BeforeValidator(bounds.WEBSUB_LEASE)] = 10 * 86400.0
    """The lease asked of a hub."""
    renew_before: Annotated[float, BeforeValidator(bounds.WEBSUB_RENEW_BEFORE)] = 86400.0
    """Renew this long before a lease ends (at most half the lease)."""
    window: Annotated[float, BeforeValidator(bounds.PUSH_WINDOW)] = 300.0
    """How far a hook call's ``X-Tagrelay-Timestamp`` may be from now."""
    min_gap: Annotated[float, BeforeValidator(bounds.PUSH_MIN_GAP)] = 1.0
    """A push brings a source's poll forward to no sooner than this after its last poll."""
    hook_max_body: int = within(bounds.HOOK_MAX_BODY, 64 * 1024)
    notification_max_body: int = within(bounds.NOTIFICATION_MAX_BODY, 1024 * 1024)

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not re.match(HTTP_URL_PATTERN, value) or "@" in value.split("/", 3)[2]:
            raise ValueError("must be an http:// or https:// URL without credentials, query or fragment")
        return value

    @property
    def websub_on(self) -> bool:
        """WebSub subscriptions are made (a public URL is set and WebSub is not switched off)."""
        return self.websub and self.public_url is not None


DEFAULT_HEALTH_PORT = 9464
"""Not 8080/8000/9090: 9464 is a common metrics-only port, rarely taken by an application."""
HEALTH_HOST_ENV = "TAGRELAY_HEALTH_HOST"
HEALTH_PORT_ENV = "TAGRELAY_HEALTH_PORT"

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class HealthSettings(Model):
    """The validated ``[health]`` table (the health sidecar, ``bot.health``)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """Address to listen on: an IP address or a host name (``0.0.0.0`` for all IPv4 interfaces)."""
    port: int = within(bounds.PORT, DEFAULT_HEALTH_PORT)
    """TCP port; 0 picks a free one."""
    timeout: Annotated[float, BeforeValidator(bounds.HEALTH_TIMEOUT)] = 2.0
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


def health_table(raw: object) -> HealthSettings:
    """The ``[health]`` table (None: absent) as ``HealthSettings``, or ``ConfigError`` naming ``health.<key>``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("health", "must be a table ([health])")
    try:
        return HealthSettings.model_validate(dict(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        reason = "unknown key (known: enabled, host, port, timeout)" if err["type"] == "extra_forbidden" \
            else err["msg"]
        raise ConfigError(f"health.{key}" if key else "health", reason) from None


def load_health_settings(raw: object, env: Callable[[str], str | None] = lambda _name: None) -> HealthSettings:
    """The ``[health]`` table (raw, or ``Config.health``), then the environment's overrides.

    Raises ``ConfigError`` naming ``health.<key>`` (or the variable) on the first bad value.
    """
    settings = raw if isinstance(raw, HealthSettings) else health_table(raw)
    overrides: dict[str, Any] = {}
    host = env(HEALTH_HOST_ENV)
    if host is not None and host.strip():
        overrides["host"] = host
    port = env(HEALTH_PORT_ENV)
    if port is not None and port.strip():
        digits = port.strip()
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:  # "²".isdigit() is True too
            raise ConfigError(HEALTH_PORT_ENV, f"{digits[:20]!r} is not a port number (0-65535)")
        overrides["port"] = int(digits)
    if overrides:
        try:
            settings = HealthSettings.model_validate({**settings.model_dump(), **overrides})
        except ValidationError as exc:
            err = exc.errors()[0]
            var = HEALTH_HOST_ENV if err["loc"] and err["loc"][0] == "host" else HEALTH_PORT_ENV
            raise ConfigError(var, err["msg"]) from None
    return settings


class Config(Model):
    """The whole validated configuration. ``channels`` holds each plugin's options model."""

    storage: StorageConfig = StorageConfig()
    http: HttpConfig = HttpConfig()
    service: ServiceConfig = ServiceConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    sources: tuple[SourceConfig, ...] = ()
    channels: tuple[ChannelOptions, ...] = ()
    subscriptions: tuple[SubscriptionConfig, ...] = ()
    push: PushSettings = PushSettings()
    """``[push]``: the hook's checks and WebSub (which sources have a hook: ``push_secret_env``)."""
    health: HealthSettings = HealthSettings()
    """``[health]`` as written; ``load_health_settings`` adds the ``TAGRELAY_HEALTH_*`` overrides."""
    admin: AdminSettings | None = None
    """``[admin]`` as written, None without the table (then python-telegram-bot is never imported);
    ``load_admin_settings`` adds ``TAGRELAY_ADMIN_IDS`` and checks what starting the bot needs."""
    path: Path | None = None

    def channel(self, name: str) -> ChannelOptions | None:
        return next((c for c in self.channels if c.name == name), None)


class EnvSettings(Model):
    """Settings read from the environment (prefix ``TAGRELAY_``, any case) and ``./.env``; the
    environment wins. Build it with ``EnvSettings.load()``.

    (A plain model and ``dotenv_values`` rather than pydantic-settings: the same behaviour for
    these five variables, and less resident memory in the service.)
    """

    PREFIX: ClassVar[str] = "TAGRELAY_"

    config: Path | None = None
    storage_url: str | None = None
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    env_file: Path = Path(".env")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, dotenv: Path = Path(".env")) -> EnvSettings:
        """From ``dotenv`` (if the file exists), overridden by ``environ`` (default: the process environment).
        A bad value raises ``ConfigError`` naming the variable."""
        values: dict[str, str] = {}
        layers: list[Mapping[str, str | None]] = [
            dotenv_values(dotenv) if dotenv.is_file() else {}, os.environ if environ is None else environ]
        for layer in layers:
            for key, value in layer.items():
                if value is None or not key.upper().startswith(cls.PREFIX):
                    continue
                name = key[len(cls.PREFIX):].lower()
                if name in cls.model_fields:
                    values[name] = value
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0]) if error["loc"] else "?"
            raise ConfigError(f"{cls.PREFIX}{field.upper()}",
                              f"{error['msg']} (from the environment or .env)") from None


class Secrets:
    """Secret lookup by variable name: the process environment first, then ``.env``.

    Values are never logged or put into error messages; a missing value raises
    ``CredentialsError`` naming the channel and the variable only.
    """

    def __init__(self, env_file: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._file: dict[str, str] = {}
        if env_file is not None and env_file.is_file():
            self._file = {k: v for k, v in dotenv_values(env_file).items() if v is not None}

    def get(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None:
            value = self._file.get(name)
        return value or None

    def require(self, channel: str, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise CredentialsError(channel, f"environment variable {name} is not set "
                                            f"(set it in the environment or in .env)")
        return value

    def values(self) -> list[str]:
        """Every secret-looking value we know, for log redaction."""
        return [v for k, v in {**self._file, **dict(self._environ)}.items()
                if _looks_secret(k) and v and len(v) >= 6]


_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL|AUTH", re.IGNORECASE)


def _looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def _loc(loc: tuple[int | str, ...], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _first_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    errors = exc.errors()
    err = errors[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    reason = err["msg"]
    if err["type"] == "extra_forbidden":
        reason = "unknown key (check the spelling; see docs/configuration.md)"
    elif err["type"] == "missing":
        reason = "required key is missing"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return ConfigError(_loc(loc, prefix), reason + more)


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed file, or ``ConfigError`` (key ``""``) naming the file and what is wrong with it as a whole."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError("", f"config file {path} not found (pass --config PATH or set TAGRELAY_CONFIG)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{path} is not UTF-8 text (byte {exc.start}); TOML files must be UTF-8") from None
    except ValueError as exc:  # tomllib's int()/float(): e.g. an integer of more than 4300 digits
        raise ConfigError("", f"{path} is not valid TOML: {str(exc)[:100]}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays/inline tables
        raise ConfigError("", f"{path}: the TOML file nests too deeply (arrays or inline tables inside each "
                              "other)") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from exc


_SIDECAR_TABLES = ("health", "admin")
"""Validated after the core tables, channels and subscriptions (``health_table``, ``admin_table``), so that
their errors keep their ``health.<key>`` / ``admin.<key>: unknown key (known: …)`` wording."""


def resolve_source_url(url: str, base: Path | None) -> str:
    """A relative local path is resolved against the config file's folder."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", url):
        return url
    path = Path(url).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path.resolve().as_uri()


def build_config(
    raw: Mapping[str, Any],
    plugins: Mapping[str, PublisherPlugin] | None = None,
    *,
    path: Path | None = None,
    storage_url: str | None = None,
) -> Config:
    """Validate a parsed TOML mapping. ``plugins`` maps platform → plugin (loaded if None)."""
    data = dict(raw)
    sidecars = {k: data.pop(k) for k in _SIDECAR_TABLES if k in data}
    channels_raw = data.pop("channels", [])
    if not isinstance(channels_raw, list):
        raise ConfigError("channels", "must be an array of tables ([[channels]])")
    try:
        base = Config.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None

    channels: list[ChannelOptions] = []
    platforms: list[str] = []
    for i, item in enumerate(channels_raw):
        if not isinstance(item, dict):
            raise ConfigError(f"channels[{i}]", "must be a table")
        platform = item.get("platform")
        if not isinstance(platform, str) or not platform:
            raise ConfigError(f"channels[{i}].platform", "required key is missing")
        platforms.append(platform)
    if plugins is None:
        try:
            plugins = load_plugins(platforms)
        except PluginError as exc:
            idx = platforms.index(exc.entry_point) if exc.entry_point in platforms else 0
            raise ConfigError(f"channels[{idx}].platform", exc.reason) from exc
    for i, item in enumerate(channels_raw):
        plugin = plugins.get(item["platform"])
        if plugin is None:
            raise ConfigError(f"channels[{i}].platform", f"unknown platform {item['platform']!r}")
        try:
            channels.append(plugin.options_model.model_validate(item))
        except ValidationError as exc:
            raise _first_error(exc, f"channels[{i}]") from None

    _check_unique("sources", [s.name for s in base.sources])
    _check_unique("channels", [c.name for c in channels])
    try:
        spending_plans(channels)  # channels posting with one account must agree on its budget
    except SpendingConflict as exc:
        raise ConfigError(f"channels[{exc.index}].account_budget", str(exc)) from None
    names = {c.name for c in channels}
    for i, sub in enumerate(base.subscriptions):
        for j, chan in enumerate(sub.channels):
            if chan not in names:
                known = ", ".join(sorted(names)) or "none are configured"
                raise ConfigError(f"subscriptions[{i}].channels[{j}]",
                                  f"no channel named {chan!r} (channels: {known})")
        if not slugify(sub.tag):
            raise ConfigError(f"subscriptions[{i}].tag", f"{sub.tag!r} has no letters or digits")
        source_names = [s.name for s in base.sources]
        for j, name in enumerate(sub.sources):
            if name not in source_names:
                known = ", ".join(source_names) or "none are configured"
                raise ConfigError(f"subscriptions[{i}].sources[{j}]", f"no source named {name!r} (sources: {known})")
        try:
            sub.rule()
        except RuleError as exc:  # a whole-rule bound the per-item checks cannot see
            raise ConfigError(f"subscriptions[{i}].{exc.part}", exc.reason) from None

    folder = path.parent if path is not None else None
    sources = tuple(s.model_copy(update={"url": resolve_source_url(s.url, folder)}) for s in base.sources)
    storage = base.storage
    if storage_url:
        try:
            url = StorageConfig.model_validate({"url": storage_url}).url
            storage = base.storage.model_copy(update={"url": url})
        except ValidationError as exc:
            raise ConfigError("TAGRELAY_STORAGE_URL", exc.errors()[0]["msg"]) from None
    health = health_table(sidecars.get("health"))
    admin = admin_table(sidecars["admin"]) if "admin" in sidecars else None
    return base.model_copy(update={"channels": tuple(channels), "sources": sources, "path": path,
                                   "storage": storage, "health": health, "admin": admin})


def _check_unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"{what}[{i}].name", f"duplicate name {name!r}")
        seen.add(name)


def load_config(path: Path, *, storage_url: str | None = None,
                plugins: Mapping[str, PublisherPlugin] | None = None) -> Config:
    """Read and validate the TOML file at ``path``."""
    return build_config(read_toml(path), plugins, path=path.resolve(), storage_url=storage_url)

