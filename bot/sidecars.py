"""Optional subsystems that run beside the service, chosen from the config."""

from __future__ import annotations

from bot.app import Sidecar
from bot.settings import Config, Secrets


def make_sidecars(config: Config, secrets: Secrets) -> list[Sidecar]:
    """The sidecars the config asks for (none by default)."""
    return []
