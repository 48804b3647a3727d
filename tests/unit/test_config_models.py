"""The configuration's models on pydantic (issue 16): typed ``[health]``/``[admin]`` in ``Config``,
``ChannelOptions`` below ``render/`` and ``publishers/``, a plugin written against the documented API
still loading, and no message that repeats a pasted secret."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bot.channel_options
import bot.publishers.api
from bot.admin.settings import AdminSettings
from bot.errors import ConfigError
from bot.publishers.registry import load_plugins
from bot.settings import Config, HealthSettings, build_config
from bot.testing import RecordingPlugin

ROOT = Path(__file__).resolve().parents[2]
PLUGINS: dict[str, Any] = dict(load_plugins(("console", "telegram", "mastodon", "x")))
TOKEN = "123456789:AAE-pasted-bot-token-value_x"


def raw(**tables: Any) -> dict[str, Any]:
    return {"channels": [{"name": "c", "platform": "console"}],
            "subscriptions": [{"tag": "MEK", "channels": ["c"]}], **tables}


# -- [health] and [admin] are typed fields of Config ---------------------------------------------------


def test_health_and_admin_are_typed_fields_of_the_config() -> None:
    config = build_config(raw(health={"port": 9000, "timeout": "5s"},
                              admin={"enabled": True, "admin_ids": [42], "api_base": "http://127.0.0.1:9/"}), PLUGINS)
    assert config.health == HealthSettings(port=9000, timeout=5.0)
    assert isinstance(config.admin, AdminSettings)
    assert config.admin.admin_ids == (42,) and config.admin.api_base == "http://127.0.0.1:9"
    assert "extra" not in Config.model_fields


def test_without_the_tables_health_has_its_defaults_and_admin_is_none() -> None:
    config = build_config(raw(), PLUGINS)
    assert config.health == HealthSettings() and config.health.enabled and config.health.port == 9464
    assert config.admin is None


@pytest.mark.parametrize(("tables", "key", "says"), [
    ({"health": {"port": "9464"}}, "health.port", "must be an integer, not a string"),
    ({"health": {"bogus": 1}}, "health.bogus", "unknown key (known: enabled, host, port, timeout)"),
    ({"admin": {"admin_ids": [0]}}, "admin.admin_ids", "must be at least 1 (got 0)"),
    ({"admin": {"mode": "push"}}, "admin.mode", "must be 'polling' or 'webhook'"),
    ({"admin": {"page_size": 1.5}}, "admin.page_size", "must be an integer, not the number 1.5"),
    ({"admin": []}, "admin", "must be a table ([admin])"),
])
def test_a_bad_sidecar_table_is_a_config_error_naming_its_key(tables: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(raw(**tables), PLUGINS)
    assert (info.value.key, info.value.reason) == (key, says) or (
        info.value.key == key and info.value.reason.startswith(says))


def test_loading_a_config_with_an_admin_table_does_not_import_python_telegram_bot() -> None:
    """PTB costs ~0.3 s and several MiB: only the admin bot itself (``tagrelay run``) imports it."""
    code = ("import sys\n"
            "from bot.settings import build_config\n"
            "from bot.publishers.console import plugin\n"
            "c = build_config({'admin': {'admin_ids': [1]}, 'channels': [{'name': 'c', 'platform': 'console'}]},"
            " {'console': plugin})\n"
            "print(c.admin.admin_ids, 'telegram' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "(1,) False"


# -- ChannelOptions lives below render/ and publishers/ -----------------------------------------------


def test_channel_options_live_below_render_and_publishers() -> None:
    assert bot.publishers.api.ChannelOptions is bot.channel_options.ChannelOptions  # the plugins' import path
    code = ("import sys\nimport bot.channel_options\n"
            "print(sorted(m for m in sys.modules if m.startswith(('bot.publishers', 'bot.render'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
    tree = ast.parse((ROOT / "bot" / "render" / "options.py").read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in imported if m.startswith("bot.publishers")}


# -- the plugin API of docs/architecture.md ----------------------------------------------------------------


def test_a_plugin_declared_as_the_docs_show_still_loads() -> None:
    """A third-party plugin written against ``bot.validation`` (docs/architecture.md, "Publisher plugins")."""
    from bot.publishers.api import ChannelOptions
    from bot.validation import Field, field_validator, model_validator

    class DiscordOptions(ChannelOptions):
        webhook_env: str = Field(default="DISCORD_WEBHOOK", pattern=r"^[A-Z_][A-Z0-9_]*$")
        username: str | None = None
        max_embeds: int = Field(default=1, ge=0, le=10)
        roles: tuple[str, ...] = ()

        @field_validator("username")
        @classmethod
        def _trimmed(cls, value: str | None) -> str | None:
            return value.strip() if value is not None else None

        @model_validator(mode="after")
        def _roles_need_a_name(self) -> DiscordOptions:
            if self.roles and self.username is None:
                raise ValueError("roles need a username")
            return self

    class DiscordPlugin(RecordingPlugin):
        name = "discord"
        options_model = DiscordOptions

    plugins = {**PLUGINS, "discord": DiscordPlugin()}
    table = {"name": "d", "platform": "discord", "username": " relay ", "roles": ["a", "b"], "hashtags": True}
    config = build_config({"channels": [table]}, plugins)
    options = config.channels[0]
    assert isinstance(options, DiscordOptions)
    assert (options.username, options.roles, options.max_embeds, options.hashtags) == ("relay", ("a", "b"), 1, True)
    for bad, key, says in (({"max_embeds": 11}, "channels[0].max_embeds", "must be at most 10 (got 11)"),
                           ({"webhook": "x"}, "channels[0].webhook", "unknown key"),
                           ({"username": None, "roles": ["a"]}, "channels[0]", "roles need a username")):
        with pytest.raises(ConfigError) as info:
            build_config({"channels": [{**table, **bad}]}, plugins)
        assert info.value.key == key and info.value.reason.startswith(says), (info.value.key, info.value.reason)


# -- no message repeats a pasted secret ------------------------------------------------------------------

CHANNEL_KEYS = {
    "console": ("stream", "hashtags", "max_hashtags", "name"),
    "telegram": ("token_env", "api_base", "link_preview", "excerpt_length"),
    "mastodon": ("token_env", "instance", "visibility", "language", "max_characters"),
    "x": ("consumer_key_env", "bearer_token_env", "access_token_secret_env", "api_base", "at_least_once"),
}
CHANNEL_BASE = {"console": {}, "telegram": {"chat_id": "@chan"}, "mastodon": {"instance": "https://m.example"},
                "x": {}}
PLACES = ([("channel", p, k) for p, keys in CHANNEL_KEYS.items() for k in keys]
          + [("admin", "", k) for k in ("token_env", "secret_token_env", "mode", "api_base", "webhook_port")]
          + [("storage", "", "lease_ttl"), ("service", "", "burst_limit"), ("sources", "", "kind"),
             ("sources", "", "interval"), ("delivery", "", "retry_base"), ("health", "", "timeout")]
          + [("channel", "telegram", "rate_limit")])


@settings(max_examples=60, deadline=None)
@given(place=st.sampled_from(PLACES),
       shape=st.sampled_from(["text", "in an array", "in a table"]))
def test_no_config_error_repeats_a_token_pasted_into_a_key(place: tuple[str, str, str], shape: str) -> None:
    where, platform, key = place
    value: Any = {"text": TOKEN, "in an array": [TOKEN], "in a table": {"v": TOKEN}}[shape]
    data: dict[str, Any] = {"sources": [{"name": "a", "url": "https://a.example/feed"}]}
    if where == "channel":
        data["channels"] = [{"name": "c", "platform": platform, **CHANNEL_BASE[platform], key: value}]
    elif where == "sources":
        data["sources"][0][key] = value
    else:
        data[where] = {key: value}
    with pytest.raises(ConfigError) as info:
        build_config(data, PLUGINS)
    assert TOKEN not in str(info.value) and TOKEN[:12] not in info.value.reason, str(info.value)
    assert "\n" not in str(info.value)
