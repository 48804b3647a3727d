"""The push secrets are read, checked and kept as ``tagrelay run`` needs them, and never shown."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.settings import Secrets, build_config
from bot.sidecars import MIN_PUSH_SECRET, load_push_secrets

SHORT = "pasted-but-short"[:MIN_PUSH_SECRET - 1]
GOOD = "a-long-enough-hook-secret-0123"


def config(**push: object) -> object:
    return build_config({
        "sources": [{"name": "archive", "url": "https://a.example/feed/", "push_secret_env": "ARCHIVE_PUSH_SECRET"},
                    {"name": "off", "url": "https://b.example/feed/", "push_secret_env": "OFF_SECRET",
                     "enabled": False},
                    {"name": "plain", "url": "https://c.example/feed/"}],
        **({"push": push} if push else {}),
    }, {})


def test_each_enabled_source_with_a_hook_gets_its_secret_and_nothing_shows_it() -> None:
    secrets = load_push_secrets(config(), Secrets(environ={"ARCHIVE_PUSH_SECRET": GOOD}))  # type: ignore[arg-type]
    assert dict(secrets.hooks) == {"archive": GOOD.encode()}  # a disabled source has no hook
    assert secrets.websub is None and secrets.any
    assert GOOD not in repr(secrets) and GOOD not in str(secrets)


def test_websub_needs_its_master_secret_only_with_a_public_url() -> None:
    environ = {"ARCHIVE_PUSH_SECRET": GOOD, "TAGRELAY_WEBSUB_SECRET": "websub-master-secret-0123"}
    on = load_push_secrets(config(public_url="https://relay.example.org"), Secrets(environ=environ))  # type: ignore[arg-type]
    assert on.websub == b"websub-master-secret-0123" and "websub-master" not in repr(on)
    off = load_push_secrets(config(public_url="https://relay.example.org", websub=False),  # type: ignore[arg-type]
                            Secrets(environ={"ARCHIVE_PUSH_SECRET": GOOD}))
    assert off.websub is None


@pytest.mark.parametrize(("environ", "key"), [
    ({}, "sources[0].push_secret_env"),
    ({"ARCHIVE_PUSH_SECRET": SHORT}, "sources[0].push_secret_env"),
])
def test_a_missing_or_short_secret_is_a_config_error_that_never_quotes_it(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_push_secrets(config(), Secrets(environ=environ))  # type: ignore[arg-type]
    assert info.value.key == key and "ARCHIVE_PUSH_SECRET" in info.value.reason
    assert SHORT not in str(info.value) and SHORT not in repr(info.value)
