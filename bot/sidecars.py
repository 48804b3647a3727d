"""Optional subsystems that run beside the service, chosen from the config.

Sidecars are built here (at ``tagrelay run``), started by ``App.run_forever``
after the database is migrated and stopped after in-flight sends finish.
``run --once`` builds them but never starts them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.admin.settings import load_admin_settings
from bot.app import Sidecar
from bot.errors import ConfigError
from bot.health import HealthServer
from bot.services.push import PushSecrets
from bot.settings import Config, Secrets, load_health_settings

if TYPE_CHECKING:
    from bot.admin.bot import AdminBot


MIN_PUSH_SECRET = 16
"""Shortest hook or WebSub secret accepted (characters): a short one could be guessed."""


def check_sidecars(config: Config, secrets: Secrets) -> None:
    """Validate the ``[health]`` and ``[admin]`` tables and what they need from the environment, exactly as
    ``make_sidecars`` will, and the push secrets (``ConfigError`` names the key or the variable). Builds and
    starts nothing."""
    load_health_settings(config.health, secrets.get)
    if config.admin is not None:  # no [admin] table: TAGRELAY_ADMIN_IDS alone is not read
        load_admin_settings(config.admin, secrets.get)
    load_push_secrets(config, secrets)


def load_push_secrets(config: Config, secrets: Secrets) -> PushSecrets:
    """The hook secret of every enabled source with ``push_secret_env``, and the WebSub master secret when
    ``[push] public_url`` is set (and WebSub not off). ``ConfigError`` names the key when a variable is
    unset or its secret shorter than ``MIN_PUSH_SECRET``, or when the push endpoints have no listener
    (``[health] enabled = false``)."""
    hooks: dict[str, bytes] = {}
    for i, source in enumerate(config.sources):
        if source.enabled and source.push_secret_env is not None:
            hooks[source.name] = _push_secret(secrets, source.push_secret_env, f"sources[{i}].push_secret_env")
    websub = None
    if config.push.websub_on:
        websub = _push_secret(secrets, config.push.websub_secret_env, "push.websub_secret_env")
    if (hooks or websub) and not load_health_settings(config.health, secrets.get).enabled:
        raise ConfigError("health.enabled", "must be true: the push endpoints (/hooks/…, /websub/…) are served on "
                                            "the health listener")
    return PushSecrets(hooks, websub)


def _push_secret(secrets: Secrets, name: str, key: str) -> bytes:
    value = secrets.get(name)
    if value is None:
        raise ConfigError(key, f"environment variable {name} is not set (set it in the environment or in .env)")
    if len(value) < MIN_PUSH_SECRET:
        raise ConfigError(key, f"the secret in {name} is shorter than {MIN_PUSH_SECRET} characters")
    return value.encode()


def make_health_server(config: Config, secrets: Secrets) -> HealthServer | None:
    """The health server unless ``[health] enabled = false`` (``ConfigError`` names a bad key)."""
    health = load_health_settings(config.health, secrets.get)
    return HealthServer(health) if health.enabled else None


def make_admin_bot(raw: object, env: Callable[[str], str | None]) -> AdminBot | None:
    """The admin bot for the ``[admin]`` table (``Config.admin``, or a raw table), or None when there is none
    or it is not enabled."""
    if raw is None:  # as check_sidecars: without the table, TAGRELAY_ADMIN_IDS alone is not read
        return None
    settings = load_admin_settings(raw, env)
    if not settings.enabled:
        return None
    # deliberately lazy: python-telegram-bot costs ~0.3 s and ~10 MiB to import, paid only when [admin] is on
    from bot.admin.bot import AdminBot

    token = env(settings.token_env)
    assert token is not None  # checked by load_admin_settings
    secret = env(settings.secret_token_env) if settings.mode == "webhook" else None
    return AdminBot(settings, token=token, secret_token=secret)


def make_sidecars(config: Config, secrets: Secrets) -> list[Sidecar]:
    """The sidecars the config asks for: the health server unless ``[health] enabled = false``,
    and the Telegram admin bot when ``[admin] enabled = true``.

    Validates each sidecar's table (``ConfigError`` names the key) before anything starts.
    """
    health = make_health_server(config, secrets)
    admin = make_admin_bot(config.admin, secrets.get)
    return [s for s in (health, admin) if s is not None]
