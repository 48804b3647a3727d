"""Helpers shared by the publisher tests (tests/integration/test_publish_*.py)."""

from __future__ import annotations

import traceback

from bot.errors import CredentialsError


class DictSecrets:
    """Like the composition root's lookup: raises CredentialsError naming the variable only."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def __call__(self, name: str) -> str:
        if name not in self.values:
            raise CredentialsError("?", f"environment variable {name} is not set")
        return self.values[name]


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """No secret in the message, the repr or the formatted traceback (with its causes)."""
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for secret in secrets:
        for text in texts:
            assert secret not in text
