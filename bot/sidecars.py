"""Optional subsystems that run beside the service, chosen from the config.

Sidecars are built here (at ``tagrelay run``), started by ``App.run_forever``
after the database is migrated and stopped after in-flight sends finish.
``run --once`` builds them but never starts them.
"""

from __future__ import annotations

from bot.admin.settings import load_admin_settings
from bot.app import Sidecar
from bot.health import HealthServer
from bot.settings import Config, Secrets, load_health_settings


def check_sidecars(config: Config, secrets: Secrets) -> None:
    """Validate the ``[health]`` and ``[admin]`` tables and what they need from the environment, exactly as
    ``make_sidecars`` will (``ConfigError`` names the key or the variable). Builds and starts nothing."""
    load_health_settings(config.health, secrets.get)
    if config.admin is not None:
        load_admin_settings(config.admin, secrets.get)


def make_sidecars(config: Config, secrets: Secrets) -> list[Sidecar]:
    """The sidecars the config asks for: the health server unless ``[health] enabled = false``,
    and the Telegram admin bot when ``[admin] enabled = true``.

    Validates each sidecar's table (``ConfigError`` names the key) before anything starts.
    """
    sidecars: list[Sidecar] = []
    health = load_health_settings(config.health, secrets.get)
    if health.enabled:
        sidecars.append(HealthServer(health))
    if config.admin is not None:  # PTB's Application costs ~0.3 s to import: only when asked
        from bot.admin_bot import make_admin_bot

        admin = make_admin_bot(config.admin, secrets.get)
        if admin is not None:
            sidecars.append(admin)
    return sidecars
