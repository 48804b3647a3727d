"""Bluesky's secrets (the app password, the access and refresh JWTs) never reach a log record, an error, the
database or a repr, even when the server echoes them; and JWT-shaped text is redacted from any log line."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from bot.clock import FakeClock
from bot.errors import PublishError
from bot.log import redact_text
from bot.publishers.api import PublisherContext
from bot.publishers.bluesky import BlueskyOptions, plugin
from bot.render.message import RenderedMessage
from tests.fakes.bluesky_api import APP_PASSWORD, CREATE_RECORD, CREATE_SESSION, HANDLE, FakeBluesky
from tests.publish_support import DictSecrets, assert_clean


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeBluesky]:
    with FakeBluesky(clock=clock.now) as server:
        yield server


def test_jwt_shaped_text_is_redacted() -> None:
    jwt = ("eyJ0eXAiOiJjb20uYXRwcm90by5hY2Nlc3MiLCJhbGciOiJFUzI1NksifQ.eyJzY29wZSI6ImNvbS5hdHByb3RvLmFjY2VzcyJ9"
           ".c2lnbmF0dXJlLXNpZ25hdHVyZQ")
    assert redact_text(f"refused {jwt}; again:{jwt}") == "refused ***; again:***"
    assert redact_text("eyJhbGciOi alone, eyJ.eyJ short, notjwt.eyJabc.x") == \
        "eyJhbGciOi alone, eyJ.eyJ short, notjwt.eyJabc.x"
    started = time.perf_counter()
    redact_text("eyJ" * 300_000 + "." + "eyJa" * 100_000)
    assert time.perf_counter() - started < 2.0


async def test_no_secret_in_any_log_record_error_or_repr(fake: FakeBluesky, clock: FakeClock,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    options = BlueskyOptions.model_validate({"name": "bsky", "platform": "bluesky", "handle": HANDLE,
                                             "service": fake.url})
    errors: list[PublishError] = []
    seen: set[str] = set()
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.5)) as http:
        ctx = PublisherContext(http=http, secret=DictSecrets({"BLUESKY_APP_PASSWORD": APP_PASSWORD}),
                               logger=logging.getLogger("test.bluesky.secrets"), clock=clock)
        pub = plugin.create(options, ctx)
        message = RenderedMessage(text="Hello https://a.example/1/", link="https://a.example/1/",
                                  extra={"facets": [], "langs": [], "card": None})
        with caplog.at_level(logging.DEBUG):
            await pub.publish(message, idempotency_key="k1")
            seen.update(fake.live_secrets())
            fake.expire_access_tokens()
            await pub.publish(message, idempotency_key="k2")  # refreshed
            seen.update(fake.live_secrets())
            access = next(t for t, tok in fake.tokens.items() if tok.kind == "access" and not tok.revoked)
            fake.fail_next(400, {"error": "InvalidRequest", "message": f"echo {access} {APP_PASSWORD}"},
                           match=CREATE_RECORD)
            fake.drop_next(CREATE_RECORD)
            for key in ("k3", "k4"):
                with pytest.raises(PublishError) as info:
                    await pub.publish(message, idempotency_key=key)
                errors.append(info.value)
            fake.revoke_app_password()
            fake.fail_next(401, {"error": "AuthenticationRequired", "message": f"no {APP_PASSWORD}"},
                           match=CREATE_SESSION)
            with pytest.raises(PublishError) as info:
                await pub.publish(message, idempotency_key="k5")
            errors.append(info.value)
            seen.update(fake.live_secrets())
            text = repr(pub) + repr(pub._keeper.session)
    assert len(seen) == 6  # the password (before and after its revocation) and two pairs of JWTs
    lines = [record.getMessage() + " " + str(getattr(record, "kv", "")) for record in caplog.records]
    assert any("bluesky.login" in line for line in lines) and any("token_refused" in line for line in lines)
    for secret in seen:
        for line in lines:
            assert secret not in line
        assert secret not in text
        for exc in errors:
            assert_clean(exc, secret)
