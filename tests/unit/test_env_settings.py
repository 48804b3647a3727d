"""``EnvSettings.load``: ``TAGRELAY_*`` from the environment over ``.env``, any case, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import EnvSettings


def test_defaults_without_environment_or_dotenv(tmp_path: Path) -> None:
    env = EnvSettings.load({}, tmp_path / "missing.env")
    assert (env.config, env.storage_url, env.log_level, env.log_format, env.env_file) == (
        None, None, "INFO", "text", Path(".env"))


def test_environment_wins_over_dotenv_and_other_names_are_ignored(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("TAGRELAY_LOG_LEVEL=DEBUG\nTAGRELAY_CONFIG=from-dotenv.toml\nTAGRELAY_NOT_A_FIELD=1\n"
                      "TG_BOT_TOKEN=123:abc\n")
    env = EnvSettings.load({"TAGRELAY_CONFIG": "from-env.toml", "tagrelay_storage_url": "sqlite+aiosqlite:///x.db",
                            "HOME": "/root"}, dotenv)
    assert env.config == Path("from-env.toml")
    assert env.log_level == "DEBUG"
    assert env.storage_url == "sqlite+aiosqlite:///x.db"
    assert not hasattr(env, "not_a_field")


def test_a_bad_value_names_the_field(tmp_path: Path) -> None:
    expected = r"^TAGRELAY_LOG_FORMAT: must be 'text' or 'json' \(from the environment or \.env\)$"
    with pytest.raises(ConfigError, match=expected):
        EnvSettings.load({"TAGRELAY_LOG_FORMAT": "xml"}, tmp_path / "none.env")
