"""``FakeX``: a loopback X API v2 server for ``POST /2/tweets`` and ``GET /2/users/me``.

Authentication is checked, not just looked at:

* OAuth 1.0a: the ``Authorization: OAuth ...`` header must name the known
  consumer key and access token, use HMAC-SHA1, carry a fresh nonce, and its
  signature must verify (RFC 5849 §3.4, computed here independently) over
  ``<fake.url><path>`` with the known consumer and token secrets; a present
  ``oauth_body_hash`` must match the body. A client that signed for
  ``https://api.x.com`` while talking to the fake fails, so a passing test
  proves the signature honours the configured ``api_base``.
* OAuth 2.0: ``Authorization: Bearer <user token>`` equal to ``bearer_token``.

Failures answer 401 ``{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}``
and the reason is appended to ``fake.auth_failures``.

Posting: 201 ``{"data":{"id","text","edit_history_tweet_ids"}}``; the same text
as an earlier post → 403 "You are not allowed to create a Tweet with duplicate
content."; empty or over 280 weighted characters (twitter-text v3) → 400
invalid-request. Answers carry ``x-rate-limit-limit/-remaining/-reset`` (reset
in Unix epoch seconds; X sends no Retry-After).

Scripting (plus ``fail_next`` / ``drop_next`` / ``hold_next`` matching the path)::

    fake.rate_limit(reset_epoch)               # 429 + x-rate-limit-* (daily=True: 24-hour cap headers too)
    fake.payment_required()                    # 402 CreditsDepleted (X's body as seen in the wild; see there)
    fake.forbid_oauth1_permissions()           # 403 oauth1-permissions problem

Media (the v2 endpoints, docs.x.com "Upload media" and "Create Media metadata"):

* ``POST /2/media/upload`` with JSON ``media`` (base64), ``media_category``,
  ``media_type`` → 200 ``{"data": {"id", "media_key", "size",
  "expires_after_secs", "image"}}``; not an image, or over ``image_limit``
  bytes (5 MB) → 400 invalid-request. With ``media_processing`` > 0 the answer
  carries ``processing_info`` (pending) and ``GET /2/media/upload?command=STATUS&
  media_id=`` answers in_progress that many times, then succeeded.
* ``POST /2/media/metadata`` ``{"id", "metadata": {"alt_text": {"text"}}}`` →
  200; an unknown id or an alt text over 1,000 characters → 400.
* ``POST /2/tweets`` with ``media.media_ids``: every id must be a processed
  upload of this fake, else 400 "Your media IDs are invalid."

``DELETE /2/tweets/:id`` removes one of ``fake.tweets`` (200 ``{"data": {"deleted": true}}``;
an unknown id: 404 resource-not-found) and records it in ``fake.deleted``.

Recorded: ``fake.tweets`` (accepted posts, with the auth style used and their
``media_ids``), ``fake.media`` (uploads by id, with their ``alt_text``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import itertools
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from PIL import Image as PIL
from twitter_text import parse_tweet

from tests.fakes.http import Request, Response
from tests.fakes.telegram_api import ScriptedServer

CONSUMER_KEY = "xTestConsumerKey0123456789"
CONSUMER_SECRET = "xTestConsumerSecret-abcdefghijklmnopqrstuvwxyz0123"
ACCESS_TOKEN = "1234567890-xTestAccessToken0123456789abcdef"
ACCESS_TOKEN_SECRET = "xTestAccessTokenSecret-abcdefghijklmnopqrstu"
BEARER_TOKEN = "xTestOAuth2UserToken-abcdefghijklmnopqrstuvwxyz0123456789"
TWEETS = "/2/tweets"
USERS_ME = "/2/users/me"

DUPLICATE_DETAIL = "You are not allowed to create a Tweet with duplicate content."
CREDITS_ACCOUNT_ID = "1243608864848629761"
"""The developer account id X names in its 402 CreditsDepleted body."""
_AUTH_PARAM = re.compile(r'([A-Za-z0-9_]+)="([^"]*)"')


def problem(status: int, title: str, detail: str, kind: str = "about:blank") -> dict[str, Any]:
    """X's error body (RFC 7807-ish problem JSON)."""
    return {"title": title, "detail": detail, "type": kind, "status": status}


def percent_encode(value: str) -> str:
    """RFC 5849 §3.6: unreserved characters stay, everything else is %XX of its UTF-8 bytes."""
    return quote(value, safe="-._~")


def signature_base_string(method: str, base_uri: str, params: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 §3.4.1: METHOD & enc(base URI) & enc(sorted, encoded parameters)."""
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in encoded)
    return "&".join((method.upper(), percent_encode(base_uri), percent_encode(normalized)))


def hmac_sha1_signature(base_string: str, consumer_secret: str, token_secret: str) -> str:
    """RFC 5849 §3.4.2."""
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base_string.encode(), hashlib.sha1).digest()).decode()


def parse_oauth_header(value: str) -> dict[str, str]:
    """``OAuth k="v", ...`` → {k: unquoted v}."""
    if not value.startswith("OAuth "):
        raise ValueError("not an OAuth header")
    return {k: unquote(v) for k, v in _AUTH_PARAM.findall(value[6:])}


@dataclass
class Tweet:
    id: str
    text: str
    auth: str  # "oauth1" or "oauth2"
    media_ids: tuple[str, ...] = ()


@dataclass
class XMedia:
    id: str
    size: int
    mime: str
    width: int
    height: int
    category: str | None
    polls_left: int
    alt_text: str | None = None


MEDIA_UPLOAD = "/2/media/upload"
MEDIA_METADATA = "/2/media/metadata"
ALT_TEXT_LIMIT = 1000

class FakeX(ScriptedServer):
    """An X API v2 server on 127.0.0.1 for one user. See the module docstring."""

    def __init__(self, *, consumer_key: str = CONSUMER_KEY, consumer_secret: str = CONSUMER_SECRET,
                 access_token: str = ACCESS_TOKEN, access_token_secret: str = ACCESS_TOKEN_SECRET,
                 bearer_token: str | None = BEARER_TOKEN, user_id: str = "2244994945",
                 username: str = "tagrelay_test", name: str = "Tagrelay Test", rate_limit_total: int = 100,
                 epoch: float | None = None) -> None:
        super().__init__()
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.access_token = access_token
        self.access_token_secret = access_token_secret
        self.bearer_token = bearer_token
        self.user = {"id": user_id, "name": name, "username": username}
        self.rate_limit_total = rate_limit_total
        self.epoch = epoch
        """The 'now' used for x-rate-limit-reset on normal answers (None: the real time)."""
        self.tweets: list[Tweet] = []
        self.deleted: list[Tweet] = []
        """Posts removed by ``DELETE /2/tweets/:id`` (no longer in ``tweets``), in order."""
        self.media: dict[str, XMedia] = {}
        self.image_limit = 5 * 1024 * 1024
        self.media_processing = 0
        """Uploads carry processing_info and STATUS answers in_progress this many times."""
        self._media_ids = itertools.count(1900000000000000001)
        self.auth_failures: list[str] = []
        self._nonces: set[tuple[str, str]] = set()
        self._ids = itertools.count(1880000000000000001)
        self._posts = 0

    # -- scripting helpers -------------------------------------------------------------------

    def rate_limit(self, reset_epoch: int, *, daily: bool = False, match: str | None = TWEETS,
                   times: int = 1) -> None:
        """429 with x-rate-limit-* headers; ``daily=True`` adds an exhausted x-user-limit-24hour-* window."""
        headers = {"x-rate-limit-limit": str(self.rate_limit_total), "x-rate-limit-remaining": "0",
                   "x-rate-limit-reset": str(reset_epoch)}
        if daily:
            headers.update({"x-user-limit-24hour-limit": "10000", "x-user-limit-24hour-remaining": "0",
                            "x-user-limit-24hour-reset": str(reset_epoch)})
            headers["x-rate-limit-remaining"] = "57"
            headers["x-rate-limit-reset"] = str(reset_epoch - 3600)
        self.fail_next(429, problem(429, "Too Many Requests", "Too Many Requests"), headers, match=match,
                       times=times)

    def payment_required(self, *, match: str | None = TWEETS, times: int = 1) -> None:
        """402 with the body X sends when the pay-per-use credits are spent. X's error page lists no 402;
        these are the fields clients quote from production (title ``CreditsDepleted``, type
        ``…/2/problems/credits``, no ``status`` member; written compactly they make exactly the
        ``content-length: 185`` of the 402s in tryethernal/ethernal#1324)."""
        self.fail_next(402, {"title": "CreditsDepleted",
                             "detail": f"Your enrolled account [{CREDITS_ACCOUNT_ID}] does not have any credits "
                                       "to fulfill this request.",
                             "type": "https://api.twitter.com/2/problems/credits"}, match=match, times=times)

    def forbid_oauth1_permissions(self, *, match: str | None = TWEETS, times: int = 1) -> None:
        self.fail_next(403, problem(403, "Forbidden", "Your client app is not configured with the appropriate "
                                                      "oauth1 app permissions for this endpoint.",
                                    "https://api.x.com/2/problems/oauth1-permissions"), match=match, times=times)

    # -- plumbing ----------------------------------------------------------------------------

    def route(self, request: Request) -> Response | object:
        auth = self._authenticate(request)
        if auth is None:
            return Response.json(problem(401, "Unauthorized", "Unauthorized"), 401)
        if request.method == "POST" and request.path == TWEETS:
            return self._create(request, auth)
        if request.method == "GET" and request.path == USERS_ME:
            return Response.json({"data": dict(self.user)})
        if request.method == "DELETE" and request.path.startswith(TWEETS + "/"):
            return self._delete(request.path[len(TWEETS) + 1:])
        if request.method == "POST" and request.path == MEDIA_UPLOAD:
            return self._upload(request)
        if request.method == "GET" and request.path == MEDIA_UPLOAD:
            return self._media_status(request)
        if request.method == "POST" and request.path == MEDIA_METADATA:
            return self._metadata(request)
        return Response.json({"errors": [{"message": "Sorry, that page does not exist", "code": 34}]}, 404)

    def _fail(self, reason: str) -> None:
        with self.lock:
            self.auth_failures.append(reason)

    def _authenticate(self, request: Request) -> str | None:
        value = request.header("authorization") or ""
        if value.startswith("Bearer "):
            if self.bearer_token is not None and hmac.compare_digest(value[7:].strip(), self.bearer_token):
                return "oauth2"
            self._fail("unknown bearer token")
            return None
        if not value.startswith("OAuth "):
            self._fail("no Authorization header")
            return None
        return "oauth1" if self._verify_oauth1(request, parse_oauth_header(value)) else None

    def _verify_oauth1(self, request: Request, oauth: dict[str, str]) -> bool:
        required = ("oauth_consumer_key", "oauth_token", "oauth_signature_method", "oauth_timestamp",
                    "oauth_nonce", "oauth_signature")
        missing = [k for k in required if not oauth.get(k)]
        if missing:
            self._fail(f"missing {', '.join(missing)}")
            return False
        if oauth["oauth_consumer_key"] != self.consumer_key or oauth["oauth_token"] != self.access_token:
            self._fail("unknown consumer key or access token")
            return False
        if oauth["oauth_signature_method"] != "HMAC-SHA1" or oauth.get("oauth_version", "1.0") != "1.0":
            self._fail("unsupported signature method or version")
            return False
        nonce = (oauth["oauth_nonce"], oauth["oauth_timestamp"])
        with self.lock:
            if nonce in self._nonces:
                self.auth_failures.append("nonce reused")
                return False
            self._nonces.add(nonce)
        ctype = (request.header("content-type") or "").lower()
        if "oauth_body_hash" in oauth:
            expected = base64.b64encode(hashlib.sha1(request.body, usedforsecurity=False).digest()).decode()
            if oauth["oauth_body_hash"] != expected:
                self._fail("oauth_body_hash does not match the body")
                return False
        params = [(k, v) for k, v in oauth.items() if k not in ("oauth_signature", "realm")]
        params += [(k, v) for k, values in request.query.items() for v in values]
        if ctype.startswith("application/x-www-form-urlencoded") and request.body:
            params += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        base = signature_base_string(request.method, f"{self.url}{request.path}", params)
        expected_sig = hmac_sha1_signature(base, self.consumer_secret, self.access_token_secret)
        if not hmac.compare_digest(expected_sig, oauth["oauth_signature"]):
            self._fail(f"bad signature for base string {base[:120]}…")
            return False
        return True

    def _rate_headers(self) -> dict[str, str]:
        with self.lock:
            self._posts += 1
            remaining = max(0, self.rate_limit_total - self._posts)
        now = self.epoch if self.epoch is not None else time.time()
        return {"x-rate-limit-limit": str(self.rate_limit_total), "x-rate-limit-remaining": str(remaining),
                "x-rate-limit-reset": str(int(now) + 900)}

    def _delete(self, tweet_id: str) -> Response:
        """``DELETE /2/tweets/:id`` → 200 ``{"data": {"deleted": true}}``; an unknown or deleted id → 404
        resource-not-found."""
        headers = self._rate_headers()
        with self.lock:
            tweet = next((t for t in self.tweets if t.id == tweet_id), None)
            if tweet is not None:
                self.tweets.remove(tweet)
                self.deleted.append(tweet)
        if tweet is None:
            return Response.json(problem(404, "Not Found Error", f"Could not find tweet with id: [{tweet_id}].",
                                         "https://api.twitter.com/2/problems/resource-not-found"), 404, headers)
        return Response.json({"data": {"deleted": True}}, 200, headers)

    def _create(self, request: Request, auth: str) -> Response:
        headers = self._rate_headers()
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            body = None
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return Response.json({"errors": [{"parameters": {"text": [text]}, "message": "Text is required"}],
                                  "title": "Invalid Request", "detail": "One or more parameters to your request "
                                  "was invalid.", "type": "https://api.twitter.com/2/problems/invalid-request"},
                                 400, headers)
        if not parse_tweet(text).valid:
            return Response.json(problem(400, "Invalid Request", "Your Tweet text is too long.",
                                         "https://api.twitter.com/2/problems/invalid-request"), 400, headers)
        media = body.get("media") if isinstance(body, dict) else None
        ids = media.get("media_ids") if isinstance(media, dict) else None
        media_ids = tuple(str(i) for i in ids) if isinstance(ids, list) else ()
        with self.lock:
            bad = [i for i in media_ids if i not in self.media or self.media[i].polls_left > 0]
        if bad or len(media_ids) > 4:
            return Response.json(problem(400, "Invalid Request", "Your media IDs are invalid.",
                                         "https://api.twitter.com/2/problems/invalid-request"), 400, headers)
        with self.lock:
            if any(t.text == text for t in self.tweets):
                duplicate = True
            else:
                duplicate = False
                tweet = Tweet(id=str(next(self._ids)), text=text, auth=auth, media_ids=media_ids)
                self.tweets.append(tweet)
        if duplicate:
            return Response.json(problem(403, "Forbidden", DUPLICATE_DETAIL), 403, headers)
        return Response.json({"data": {"id": tweet.id, "text": text, "edit_history_tweet_ids": [tweet.id]}},
                             201, headers)

    # -- media -------------------------------------------------------------------------------

    @staticmethod
    def _invalid(detail: str) -> Response:
        return Response.json(problem(400, "Invalid Request", detail, "https://api.x.com/2/problems/invalid-request"),
                             400)

    def _upload(self, request: Request) -> Response:
        try:
            body = json.loads(request.body or b"null")
            data = base64.b64decode(body["media"], validate=True)
        except (ValueError, KeyError, TypeError):
            return self._invalid("One or more parameters to your request was invalid.")
        if len(data) > self.image_limit:
            return self._invalid(f"File size exceeds {self.image_limit} bytes.")
        try:
            with PIL.open(io.BytesIO(data)) as image:
                mime = PIL.MIME.get(str(image.format), "")
                width, height = image.size
        except (OSError, ValueError, SyntaxError):
            return self._invalid("Unsupported media type.")
        with self.lock:
            media = XMedia(id=str(next(self._media_ids)), size=len(data), mime=mime, width=width, height=height,
                           category=body.get("media_category"), polls_left=self.media_processing)
            self.media[media.id] = media
        answer: dict[str, Any] = {"id": media.id, "media_key": f"3_{media.id}", "size": media.size,
                                  "expires_after_secs": 86400,
                                  "image": {"image_type": mime, "w": width, "h": height}}
        if media.polls_left > 0:
            answer["processing_info"] = {"state": "pending", "check_after_secs": 0}
        return Response.json({"data": answer})

    def _media_status(self, request: Request) -> Response:
        if request.arg("command") != "STATUS":
            return self._invalid("One or more parameters to your request was invalid.")
        with self.lock:
            media = self.media.get(request.arg("media_id") or "")
            if media is None:
                return self._invalid("Invalid media id.")
            if media.polls_left > 0:
                media.polls_left -= 1
            state = "in_progress" if media.polls_left > 0 else "succeeded"
        info: dict[str, Any] = {"state": state, "progress_percent": 100 if state == "succeeded" else 50}
        if state != "succeeded":
            info["check_after_secs"] = 0
        return Response.json({"data": {"id": media.id, "media_key": f"3_{media.id}", "processing_info": info}})

    def _metadata(self, request: Request) -> Response:
        try:
            body = json.loads(request.body or b"null")
            media_id = str(body["id"])
            text = body["metadata"]["alt_text"]["text"]
        except (ValueError, KeyError, TypeError):
            return self._invalid("One or more parameters to your request was invalid.")
        if not isinstance(text, str) or len(text) > ALT_TEXT_LIMIT:
            return self._invalid(f"Alt text must be at most {ALT_TEXT_LIMIT} characters.")
        with self.lock:
            media = self.media.get(media_id)
            if media is None:
                return self._invalid("Invalid media id.")
            media.alt_text = text
        return Response.json({"data": {"id": media_id, "associated_metadata": {"alt_text": {"text": text}}}})
