"""Every configuration key is validated at load, by the one function every command uses
(``bot.bootstrap.load_service_config`` / ``validate_service_config``), with bounds that the service's
own arithmetic survives: a bad value is a ``ConfigError`` naming the key, never a crash later."""

from __future__ import annotations

import math
import random
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import annotated_types
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BeforeValidator

from bot.admin.settings import AdminSettings
from bot.bootstrap import load_service_config, validate_service_config
from bot.config_bounds import DurationIn
from bot.domain.pacing import TokenBucket, parse_rate
from bot.domain.push import ReplayGuard, hub_lease, poll_request, renewal_time
from bot.domain.schedule import RetryPolicy, fair_share, jittered, source_backoff
from bot.errors import ConfigError
from bot.health import HealthSettings
from bot.publishers.registry import load_plugins
from bot.settings import Config, EnvSettings, PushSettings, Secrets, parse_duration
from bot.sources.http import DEADLINE_FACTOR, client_settings
from bot.validation import Model

PLATFORMS = ("console", "telegram", "mastodon", "x")
ENV = {"TG_BOT_TOKEN": "123:tok", "MASTODON_TOKEN": "masto-tok", "X_CONSUMER_KEY": "ck", "X_CONSUMER_SECRET": "cs",
       "X_ACCESS_TOKEN": "at", "X_ACCESS_TOKEN_SECRET": "ats", "ARCHIVE_PUSH_SECRET": "archive-hook-secret-0123",
       "TAGRELAY_WEBSUB_SECRET": "websub-master-secret-0123"}


def base_raw() -> dict[str, Any]:
    """A valid config using every table: one channel per built-in platform, health and admin."""
    return {
        "storage": {"url": "sqlite+aiosqlite:///never/created.db"},
        "http": {}, "service": {}, "delivery": {},
        "sources": [{"name": "archive", "url": "https://archive.example.org/feed/",
                     "push_secret_env": "ARCHIVE_PUSH_SECRET"}],
        "channels": [
            {"name": "c", "platform": "console"},
            {"name": "tg", "platform": "telegram", "chat_id": "@chan"},
            {"name": "masto", "platform": "mastodon", "instance": "https://masto.example"},
            {"name": "x", "platform": "x"},
        ],
        "subscriptions": [{"tag": "MEK", "channels": ["c", "tg", "masto", "x"]}],
        "health": {},
        "admin": {"enabled": True, "admin_ids": [42]},
        "push": {"public_url": "https://relay.example.org"},
    }


def validate(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    return validate_service_config(raw, path=Path("/nowhere/tagrelay.toml"),
                                   secrets=Secrets(environ=ENV if environ is None else environ))


def outcome(raw: Mapping[str, Any]) -> Config | ConfigError:
    try:
        return validate(raw)
    except ConfigError as exc:
        return exc


# -- every numeric key has bounds ------------------------------------------------------------------


def _has_both(meta: Sequence[object]) -> bool:
    """Whether pydantic's constraints ``meta`` bound a number from below and from above."""
    lower = upper = False
    for m in meta:
        if isinstance(m, annotated_types.Interval):
            lower |= m.ge is not None or m.gt is not None
            upper |= m.le is not None or m.lt is not None
        lower |= isinstance(m, annotated_types.Ge | annotated_types.Gt)
        upper |= isinstance(m, annotated_types.Le | annotated_types.Lt)
    return lower and upper


def _ok(meta: Sequence[object]) -> bool:
    """Bounded by constraints, or parsed by a bounded duration (``BeforeValidator(DurationIn(lo, hi))``)."""
    return _has_both(meta) or any(isinstance(m, BeforeValidator) and isinstance(m.func, DurationIn) for m in meta)


def _bounded(hint: Any, meta: Sequence[object] = ()) -> tuple[bool, bool] | None:
    """(is numeric, has both bounds) for a field's type and constraints, or None when it is not a number."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *inner_meta = typing.get_args(hint)
        inner = _bounded(base, meta)
        if inner is None:
            return None
        return True, inner[1] or _ok(inner_meta)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _bounded(options[0], meta) if len(options) == 1 else None
    if origin is tuple:
        return _bounded(typing.get_args(hint)[0], meta)
    if hint in (int, float):
        return True, _ok(meta)
    return None


def _tables() -> Iterator[tuple[tuple[int | str, ...], str, type[Model]]]:
    """Every validated table of ``base_raw()``: its path, its dotted name in errors, its model."""
    config_hints = {name: field.annotation for name, field in Config.model_fields.items()}
    for name in ("storage", "http", "service", "delivery"):
        yield (name,), name, config_hints[name]
    yield ("sources", 0), "sources[0]", typing.get_args(config_hints["sources"])[0]
    yield ("subscriptions", 0), "subscriptions[0]", typing.get_args(config_hints["subscriptions"])[0]
    plugins = load_plugins(PLATFORMS)
    for i, platform in enumerate(PLATFORMS):
        yield ("channels", i), f"channels[{i}]", plugins[platform].options_model
    yield ("health",), "health", HealthSettings
    yield ("admin",), "admin", AdminSettings
    yield ("push",), "push", PushSettings


def numeric_keys() -> Iterator[tuple[tuple[int | str, ...], str, tuple[bool, bool]]]:
    """Every numeric key of every table: its path into ``base_raw()``, its dotted name, (numeric, bounded)."""
    for path, dotted, model in _tables():
        for field, spec in model.model_fields.items():
            bounded = _bounded(spec.annotation, spec.metadata)
            if bounded is None:
                continue
            if typing.get_origin(spec.annotation) is tuple:
                yield (*path, field, 0), f"{dotted}.{field}[0]", bounded
            else:
                yield (*path, field), f"{dotted}.{field}", bounded


NUMERIC_KEYS = [(path, dotted) for path, dotted, _ in numeric_keys()]
BOUNDED = {dotted: bounded for _, dotted, bounded in numeric_keys()}


def test_the_walk_finds_the_numeric_keys_of_every_table() -> None:
    assert {"sources[0].interval", "storage.lease_ttl", "http.max_bytes", "service.jitter", "delivery.retry_cap",
            "subscriptions[0].backfill", "channels[0].max_hashtags", "channels[2].max_characters",
            "health.port", "health.timeout", "admin.webhook_port", "admin.admin_ids[0]", "push.window",
            "push.min_gap", "push.lease", "push.renew_before", "push.hook_max_body"} <= set(BOUNDED)


@pytest.mark.parametrize("dotted", sorted(BOUNDED))
def test_every_numeric_key_has_a_lower_and_an_upper_bound(dotted: str) -> None:
    assert BOUNDED[dotted] == (True, True), f"{dotted} has no lower or no upper bound"


# -- the service's own arithmetic survives every value that loads ------------------------------------


def exercise(config: Config) -> None:
    """What the running service computes from the config (polling, retries, pacing, leases, timeouts)."""
    now = datetime.now(UTC)
    rng = random.Random(1)
    service = config.service
    for source in config.sources:
        for failures in (0, 1, 5, 16, 1000):
            delay = source_backoff(source.interval, failures, service.max_backoff) if failures else source.interval
            assert now + timedelta(seconds=jittered(delay, service.jitter, rng)) > now
    policy = RetryPolicy(base=config.delivery.retry_base, cap=config.delivery.retry_cap,
                         max_attempts=config.delivery.max_attempts)
    for attempt in range(1, config.delivery.max_attempts + 1):
        assert now + timedelta(seconds=policy.delay(attempt, rng)) >= now
    assert fair_share(10_000, 3, config.delivery.concurrency) >= 1
    rates = [*config.delivery.account_limits.values(), *config.delivery.channel_limits.values(),
             *(c.rate_limit for c in config.channels if c.rate_limit)]
    for rate in rates:
        bucket = TokenBucket(*parse_rate(rate))
        for _ in range(5):
            assert now + timedelta(seconds=bucket.reserve(0.0)) >= now
    ttl = config.storage.lease_ttl
    assert now + timedelta(seconds=ttl) > now and now + timedelta(seconds=ttl / 3) > now
    assert now + timedelta(seconds=ttl + config.http.timeout * DEADLINE_FACTOR) > now
    assert now + timedelta(seconds=service.shutdown_timeout) > now
    client_settings(config.http, version="test")
    assert math.isfinite(config.http.timeout) and config.http.max_bytes < 2**63
    assert isinstance(config.health, HealthSettings)
    assert now + timedelta(seconds=config.health.timeout) > now
    for channel in config.channels:
        assert channel.max_hashtags >= 0 and (channel.excerpt_length or 0) < 2**31
    push = config.push
    request = poll_request(next_poll_at=now + timedelta(days=1), failures=0, last_poll_at=now, now=now,
                           min_gap=push.min_gap)
    assert request.at >= now
    lease = hub_lease(str(int(push.lease)), push.lease)
    assert renewal_time(now, lease, push.renew_before) > now
    assert now.timestamp() - push.window < now.timestamp() < now.timestamp() + push.window
    assert ReplayGuard().admit(b"k", expires=now.timestamp() + push.window, now=now.timestamp())


def _values() -> st.SearchStrategy[object]:
    duration_text = st.builds(lambda n, u: f"{n}{u}", st.one_of(st.integers(), st.floats(allow_nan=False)),
                              st.sampled_from(["", "s", "m", "h", "d", " d", "ms"]))
    return st.one_of(
        st.floats(),  # NaN, ±inf, ±1e308, subnormals
        st.integers(),
        st.sampled_from([0, -1, 2**63 - 1, 2**63, 10**30, 10**400, -(10**5000), 1e308, math.inf, math.nan,
                         "99999999999999999999d", "1e308s", "nan", "inf", " " * 300 + "x", "1" * 5000 + "s"]),
        duration_text,
        st.text(max_size=40),
        st.booleans(),
    )


def _put(raw: dict[str, Any], path: tuple[int | str, ...], value: object) -> None:
    table: Any = raw
    for part in path[:-1]:
        if isinstance(part, str) and part not in table:
            table[part] = {}
        table = table[part]
    last = path[-1]
    if isinstance(last, int):
        table.append(value) if len(table) <= last else table.__setitem__(last, value)
    else:
        table[last] = value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(NUMERIC_KEYS), value=_values())
@example(key=(("sources", 0, "interval"), "sources[0].interval"), value=1e308)
@example(key=(("sources", 0, "interval"), "sources[0].interval"), value=9223372036854775807)
@example(key=(("sources", 0, "interval"), "sources[0].interval"), value="99999999999999999999d")
@example(key=(("service", "jitter"), "service.jitter"), value=math.nan)
@example(key=(("channels", 0, "max_hashtags"), "channels[0].max_hashtags"), value=10**5000)
def test_any_value_of_any_numeric_key_loads_into_a_working_config_or_names_the_key(
        key: tuple[tuple[int | str, ...], str], value: object) -> None:
    path, dotted = key
    raw = base_raw()
    _put(raw, path, value)
    result = outcome(raw)
    if isinstance(result, Config):
        exercise(result)
        return
    assert result.key in (dotted, dotted.removesuffix("[0]")), (result.key, result.reason)
    assert result.reason and "\n" not in result.reason and len(result.reason) < 300


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(max_size=30), st.from_regex(r"\A-?[0-9.e+]{0,12}/[0-9.e]{0,6}[a-z]{0,7}\Z")))
def test_any_rate_text_loads_into_working_buckets_or_names_the_key(text: str) -> None:
    raw = base_raw()
    raw["channels"][1]["rate_limit"] = text
    raw["delivery"]["account_limits"] = {"telegram": text}
    result = outcome(raw)
    if isinstance(result, Config):
        exercise(result)
        return
    assert result.key in ("channels[1].rate_limit", "delivery.account_limits.telegram"), result.key
    assert "'1/s'" in result.reason and "'20/min'" in result.reason  # the accepted syntax


# -- rates ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", ["lots", "0/s", "-1/m", "1e309/s", "nan/s", "inf/s", "1/0s", "1/-5m", "5/fortnight",
                                  "", "1/", "/s", "1.5/s", "99999999999/s", "1/999999d"])
@pytest.mark.parametrize("where", ["channel", "account", "channel_limits"])
def test_a_bad_rate_is_a_config_error_naming_the_key_with_the_syntax(rate: str, where: str) -> None:
    raw = base_raw()
    if where == "channel":
        raw["channels"][1]["rate_limit"] = rate
        key = "channels[1].rate_limit"
    elif where == "account":
        raw["delivery"]["account_limits"] = {"mastodon": rate}
        key = "delivery.account_limits.mastodon"
    else:
        raw["delivery"]["channel_limits"] = {"telegram": rate}
        key = "delivery.channel_limits.telegram"
    with pytest.raises(ConfigError) as info:
        validate(raw)
    assert info.value.key == key
    assert "'1/s', '20/min', '300/5min'" in info.value.reason


@pytest.mark.parametrize(("rate", "expected"), [("1/s", (1, 1)), ("20/min", (20, 60)), ("300/5min", (300, 300)),
                                                ("100/15m", (100, 900)), (" 30 / s ", (30, 1)), ("2/1.5h", (2, 5400)),
                                                ("1/day", (1, 86400))])
def test_documented_rates_still_parse(rate: str, expected: tuple[float, float]) -> None:
    assert parse_rate(rate) == expected
    raw = base_raw()
    raw["channels"][1]["rate_limit"] = rate
    assert validate(raw).channels[1].rate_limit == rate


# -- durations -----------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("text", [" " * 10_000 + "x", "1" * 10_000 + "x", "1s" * 5_000, "\t" * 3_000 + "1s x"])
def test_a_long_duration_text_is_refused_at_once(text: str) -> None:
    """The old pattern backtracked polynomially (100 spaces: 3 s; 200: minutes)."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
    raw = base_raw()
    raw["sources"][0]["interval"] = text
    with pytest.raises(ConfigError) as info:
        validate(raw)
    assert info.value.key == "sources[0].interval"


@pytest.mark.parametrize(("value", "seconds"), [("30s", 30), ("10m", 600), ("1h30m", 5400), ("2d", 172800),
                                                (" 1d 2h 3m 4s ", 93784), ("1.5h", 5400), (45, 45), (0.5, 0.5)])
def test_documented_durations_still_parse(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


# -- the whole file: nesting, encoding, integers tomllib refuses ---------------------------------------


@pytest.mark.parametrize(("content", "reason"), [
    (b"x = " + b"[" * 5000 + b"]" * 5000, "nests too deeply"),
    (b"x = " + b"{a=" * 3000 + b"1" + b"}" * 3000, "nests too deeply"),
    (b"[storage]\nlease_ttl = " + b"9" * 5000 + b"\n", "not valid TOML"),
    (b"[storage]\nurl = '\xff'\n", "not UTF-8"),
])
def test_a_file_tomllib_cannot_read_is_one_config_error(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "tagrelay.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_service_config(path, env=EnvSettings.load({}, tmp_path / "none.env"), secrets=Secrets(environ={}))
    assert info.value.key == ""
    assert reason in info.value.reason and str(path) in info.value.reason
    assert len(info.value.reason) < 300


# -- every table, the environment ------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "environ", "key", "says"), [
    ({"health": {"port": 99999}}, {}, "health.port", "at most 65535"),
    ({"health": {"port": -1}}, {}, "health.port", "at least 0"),
    ({"health": {"bogus_key": 1}}, {}, "health.bogus_key", "unknown key"),
    ({"health": {"timeout": math.nan}}, {}, "health.timeout", "duration"),
    ({"health": "on"}, {}, "health", "table"),
    ({}, {"TAGRELAY_HEALTH_PORT": "99999"}, "TAGRELAY_HEALTH_PORT", "65535"),
    ({}, {"TAGRELAY_HEALTH_PORT": "²"}, "TAGRELAY_HEALTH_PORT", "port number"),
    ({}, {"TAGRELAY_HEALTH_PORT": "9" * 5000}, "TAGRELAY_HEALTH_PORT", "port number"),
    ({"admin": {"enabled": True, "admin_ids": [42], "bogus": 1}}, {}, "admin.bogus", "unknown key"),
    ({"admin": {"enabled": True, "admin_ids": [10**30]}}, {}, "admin.admin_ids", "at most"),
    ({"admin": {"enabled": True, "admin_ids": [42], "webhook_port": 70000}}, {}, "admin.webhook_port", "65535"),
    ({}, {"TAGRELAY_ADMIN_IDS": "²"}, "TAGRELAY_ADMIN_IDS", "user id"),
    ({}, {"TAGRELAY_ADMIN_IDS": "9" * 5000}, "TAGRELAY_ADMIN_IDS", "user id"),
    ({}, {"TG_BOT_TOKEN": ""}, "admin.token_env", "TG_BOT_TOKEN"),
    ({"admin": None, "channels_tg_token": "TAGRELAY_TEST_UNSET"}, {}, "channels[1]", "TAGRELAY_TEST_UNSET"),
    ({"admin": None, "channels_x_bearer": "TAGRELAY_TEST_UNSET_BEARER"}, {}, "channels[3]",
     "TAGRELAY_TEST_UNSET_BEARER"),
    ({"admin": None}, {"MASTODON_TOKEN": " "}, "channels[2]", "MASTODON_TOKEN"),
    ({"telegram_admin": {"enabled": True}}, {}, "telegram_admin", "unknown key"),
    ({"storage": {"lease_ttl": "99999999999999999999d"}}, {}, "storage.lease_ttl", "from 1s to 1h"),
    ({"push": {"public_url": "ftp://relay.example.org"}}, {}, "push.public_url", "http:// or https://"),
    ({"push": {"public_url": "https://user:pw@relay.example.org"}}, {}, "push.public_url", "without credentials"),
    ({"push": {"public_url": "https://relay.example.org/?a=b"}}, {}, "push.public_url", "query"),
    ({"push": {"window": "2h"}}, {}, "push.window", "from 10s to 1h"),
    ({"push": {"min_gap": 0}}, {}, "push.min_gap", "longer than zero"),
    ({"push": {"hook_max_body": 10**9}}, {}, "push.hook_max_body", "at most"),
    ({"push": {"bogus": 1}}, {}, "push.bogus", "unknown key"),
    ({"push": {"websub_secret_env": "not a name"}}, {}, "push.websub_secret_env", "must match"),
    ({}, {"ARCHIVE_PUSH_SECRET": ""}, "sources[0].push_secret_env", "ARCHIVE_PUSH_SECRET is not set"),
    ({}, {"ARCHIVE_PUSH_SECRET": "short"}, "sources[0].push_secret_env", "shorter than 16 characters"),
    ({}, {"TAGRELAY_WEBSUB_SECRET": ""}, "push.websub_secret_env", "TAGRELAY_WEBSUB_SECRET is not set"),
    ({"health": {"enabled": False}}, {}, "health.enabled", "push endpoints"),
])
def test_every_table_and_the_environment_are_checked_at_load(change: dict[str, Any], environ: dict[str, str],
                                                             key: str, says: str) -> None:
    raw = base_raw()
    for table, value in change.items():
        if table == "channels_tg_token":
            raw["channels"][1]["token_env"] = value
        elif table == "channels_x_bearer":
            raw["channels"][3]["bearer_token_env"] = value
        elif value is None:
            raw.pop(table)
        else:
            raw[table] = value
    with pytest.raises(ConfigError) as info:
        validate(raw, {**ENV, **environ})
    assert info.value.key == key
    assert says in info.value.reason


def test_the_complete_config_with_every_table_is_valid() -> None:
    config = validate(base_raw())
    assert [c.platform for c in config.channels] == list(PLATFORMS)
    exercise(config)


def test_x_with_a_bearer_token_needs_only_that_variable() -> None:
    raw = base_raw()
    raw["channels"][3]["bearer_token_env"] = "X_BEARER"
    environ = {k: v for k, v in ENV.items() if not k.startswith("X_")} | {"X_BEARER": "b"}
    assert validate(raw, environ).channels[3].name == "x"
