"""Find publisher plugins through the ``tagrelay.publishers`` entry point group."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from bot.errors import PluginError
from bot.publishers.api import API_VERSION, PublisherPlugin

GROUP = "tagrelay.publishers"


def _describe(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"{ep.name} = {ep.value}{where}"


def available_platforms() -> list[str]:
    """Names of every installed platform (without importing them)."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load_plugins(names: Iterable[str]) -> dict[str, PublisherPlugin]:
    """Import only the named platforms. Errors name the entry point and its distribution."""
    wanted = set(names)
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name not in wanted:
            continue
        if ep.name in found and found[ep.name].value != ep.value:
            raise PluginError(ep.name, f"declared twice: {_describe(found[ep.name])} and {_describe(ep)}")
        found[ep.name] = ep
    plugins: dict[str, PublisherPlugin] = {}
    for name in sorted(wanted):
        if name not in found:
            known = ", ".join(available_platforms()) or "none"
            raise PluginError(name, f"no such platform is installed (installed: {known})")
        ep = found[name]
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginError(name, f"failed to import {_describe(ep)}: {exc}") from exc
        if getattr(obj, "api_version", None) != API_VERSION:
            raise PluginError(name, f"{_describe(ep)} implements API version "
                              f"{getattr(obj, 'api_version', None)!r}, tagrelay needs {API_VERSION}")
        if not isinstance(obj, PublisherPlugin):
            raise PluginError(name, f"{_describe(ep)} does not provide render/create/options_model")
        plugins[name] = obj
    return plugins
