"""Walk an operator through getting OAuth 1.0a user tokens for X (PIN-based, "oob" flow).

Used by ``tagrelay x-auth``. It needs the real X network (tweepy's
``OAuth1UserHandler`` talks to api.twitter.com, a fixed host), so it runs
interactively: print the authorization URL, ask for the PIN X shows, exchange it
for the access token and secret. The consumer secret never appears in what is
printed or raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bot.errors import CredentialsError
from bot.publishers.http import redact, shorten

AUTH_CHANNEL = "x-auth"
"""What the errors raised here name in place of a channel."""


class OAuth1Handler(Protocol):
    """The part of ``tweepy.OAuth1UserHandler`` this flow uses."""

    def get_authorization_url(self) -> str: ...

    def get_access_token(self, verifier: str) -> tuple[str, str]: ...


def _tweepy_handler(consumer_key: str, consumer_secret: str) -> OAuth1Handler:
    import tweepy

    handler: OAuth1Handler = tweepy.OAuth1UserHandler(consumer_key, consumer_secret, callback="oob")
    return handler


def x_auth_flow(consumer_key: str, consumer_secret: str, *, ask: Callable[[str], str], say: Callable[[str], object],
                make_handler: Callable[[str, str], OAuth1Handler] | None = None) -> tuple[str, str]:
    """Return ``(access_token, access_token_secret)`` for the account the operator authorizes.

    ``ask`` prompts and returns the answer (``input``); ``say`` prints a line.
    ``make_handler`` builds the OAuth handler (default: tweepy's, against the
    real X); tests pass a stand-in. Failures raise ``CredentialsError``.
    """
    if not consumer_key.strip() or not consumer_secret.strip():
        raise CredentialsError(AUTH_CHANNEL, "the X app's consumer key and secret are both needed")
    secrets = [consumer_secret, consumer_key]
    handler = (make_handler or _tweepy_handler)(consumer_key, consumer_secret)
    try:
        url = handler.get_authorization_url()
    except Exception as exc:  # noqa: BLE001 - tweepy wraps everything in TweepyException; report any failure
        raise CredentialsError(AUTH_CHANNEL, "X did not give a request token (check the consumer key and "
                                             f"secret, and that the app allows OAuth 1.0a): "
                                             f"{redact(shorten(str(exc)), secrets)}") from None
    say("1. Open this address in a browser, logged in as the X account that should post:")
    say(f"   {url}")
    say("2. Authorize the app. X then shows a PIN (the app needs 'Read and write' permission).")
    pin = ask("3. Enter the PIN: ").strip()
    if not pin.isdigit():
        raise CredentialsError(AUTH_CHANNEL, "the PIN is the number X shows after you authorize the app")
    try:
        token, token_secret = handler.get_access_token(pin)
    except Exception as exc:  # noqa: BLE001 - as above
        raise CredentialsError(AUTH_CHANNEL, "X did not accept the PIN (it is valid once and only for a few "
                                             f"minutes; start again): {redact(shorten(str(exc)), secrets)}") from None
    if not token or not token_secret:
        raise CredentialsError(AUTH_CHANNEL, "X answered without an access token")
    return token, token_secret
