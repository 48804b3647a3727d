"""``FakeBluesky``: a loopback PDS (the XRPC methods tagrelay calls), written from the atproto lexicons and the
reference PDS (bluesky-social/atproto ``packages/pds``, ``packages/xrpc-server``).

* ``POST /xrpc/com.atproto.server.createSession`` ``{identifier, password}`` → ``{accessJwt, refreshJwt,
  handle, did, didDoc, active}``; a wrong identifier or password → 401 ``{"error": "AuthenticationRequired",
  "message": "Invalid identifier or password"}``. Limited like the real one, per identifier: 30 per 5 minutes
  and 300 per day (``LOGIN_LIMITS``; ``RateLimitExceeded`` 429 with ``RateLimit-*`` headers and ``Retry-After``).
* ``POST /xrpc/com.atproto.server.refreshSession`` (the refresh JWT as Bearer) → a new pair; the old refresh
  JWT is spent. A spent, revoked or unknown one → 400 ``ExpiredToken`` "Token has been revoked".
* ``GET /xrpc/com.atproto.server.getSession`` → ``{handle, did, active}``.
* ``POST /xrpc/com.atproto.repo.createRecord`` ``{repo, collection, rkey?, record}`` → ``{uri, cid, commit,
  validationStatus}``. Checked as the PDS checks: the repo is the session's DID (else 401
  ``AuthenticationRequired``); an ``app.bsky.feed.post`` record has ``text`` (≤ 300 graphemes, ≤ 3000 bytes),
  ``createdAt``, ≤ 3 ``langs``; facets' byte ranges lie inside the text; an external embed has uri, title and
  description, and its ``thumb`` is a blob uploaded before, an image of at most 1,000,000 bytes; the key is a
  valid TID. Invalid → 400 ``InvalidRequest`` "Invalid app.bsky.feed.post record: …". A key that is taken →
  500 ``InternalServerError`` (what the reference PDS answers today, bluesky-social/atproto#3718). Costs 3
  write points: 5,000 an hour and 35,000 a day per DID, then 429.
* ``GET /xrpc/com.atproto.repo.getRecord?repo&collection&rkey`` → ``{uri, cid, value}`` or 400
  ``RecordNotFound`` "Could not locate record: at://…". No auth needed.
* ``POST /xrpc/com.atproto.repo.uploadBlob`` (the bytes, their ``Content-Type``) → ``{"blob": {"$type": "blob",
  "ref": {"$link": cid}, "mimeType", "size"}}``.
* Tokens: JWT-shaped; an access JWT expires after 2 hours of ``clock()`` (then 400 ``ExpiredToken`` "Token
  has expired"), a refresh JWT after 90 days. A missing or unknown Bearer → 401 ``AuthenticationRequired``.

Knobs: ``expire_access_tokens()``, ``revoke_sessions()`` (refresh JWTs revoked too), ``revoke_app_password()``
(the password stops working: a login gets 401), ``rate_limit(reset_epoch, match=…)`` (a 429 with
``RateLimit-Reset``), plus ``fail_next`` / ``drop_next`` / ``hold_next`` from ``ScriptedServer`` (matched on
the path). Recorded: ``posts`` (rkey → record), ``created`` (in order), ``blobs``, ``logins``, ``refreshes``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grapheme

from tests.fakes.http import Request, Response
from tests.fakes.telegram_api import ScriptedServer

HANDLE = "newsroom.example.org"
DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
CREATE_SESSION = "/xrpc/com.atproto.server.createSession"
REFRESH_SESSION = "/xrpc/com.atproto.server.refreshSession"
GET_SESSION = "/xrpc/com.atproto.server.getSession"
CREATE_RECORD = "/xrpc/com.atproto.repo.createRecord"
GET_RECORD = "/xrpc/com.atproto.repo.getRecord"
DELETE_RECORD = "/xrpc/com.atproto.repo.deleteRecord"
UPLOAD_BLOB = "/xrpc/com.atproto.repo.uploadBlob"
POST = "app.bsky.feed.post"
ACCESS_TTL = timedelta(hours=2)
REFRESH_TTL = timedelta(days=90)
LOGIN_LIMITS = ((30, timedelta(minutes=5)), (300, timedelta(days=1)))
WRITE_LIMITS = ((5000, timedelta(hours=1)), (35000, timedelta(days=1)))
THUMB_MAX = 1_000_000
_TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cid_of(data: bytes) -> str:
    """A CID-looking string (base32 of a SHA-256): stable for the same bytes."""
    return "bafyrei" + base64.b32encode(hashlib.sha256(data).digest()).decode().lower().rstrip("=")[:52]


@dataclass
class Token:
    kind: str  # "access" | "refresh"
    did: str
    expires: datetime
    revoked: bool = False


@dataclass
class Created:
    """A record the fake holds."""

    rkey: str
    record: dict[str, Any]
    cid: str
    created_at: datetime


@dataclass
class Account:
    handle: str
    did: str
    password: str
    active: bool = True
    logins: list[datetime] = field(default_factory=list)
    writes: list[tuple[datetime, int]] = field(default_factory=list)


class FakeBluesky(ScriptedServer):
    """A PDS for one account (``HANDLE`` / ``DID`` / ``APP_PASSWORD``) on 127.0.0.1."""

    def __init__(self, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC), handle: str = HANDLE,
                 did: str = DID, password: str = APP_PASSWORD, pds_url: str | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.account = Account(handle, did, password)
        self.pds_url = pds_url
        """The ``#atproto_pds`` endpoint in the DID document (default: this server)."""
        self.tokens: dict[str, Token] = {}
        self.posts: dict[str, Created] = {}
        self.deleted: list[str] = []
        """Record keys removed by ``deleteRecord``, in order."""
        self.created: list[Created] = []
        self.blobs: dict[str, tuple[bytes, str]] = {}
        self.logins = 0
        self.refreshes = 0
        self._serial = itertools.count(1)

    # -- knobs ---------------------------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """Every access JWT issued so far is expired (as if two hours had passed)."""
        with self.lock:
            for token in self.tokens.values():
                if token.kind == "access":
                    token.expires = self.clock() - timedelta(seconds=1)

    def revoke_sessions(self) -> None:
        """Every token issued so far is revoked (refreshSession answers ExpiredToken "Token has been revoked")."""
        with self.lock:
            for token in self.tokens.values():
                token.revoked = True

    def revoke_app_password(self) -> None:
        """The app password is deleted: its sessions end and a login with it fails (401)."""
        with self.lock:
            self.account.password = "revoked-" + self.account.password
        self.revoke_sessions()

    def rate_limit(self, reset_epoch: int, *, match: str = CREATE_RECORD, limit: int = 5000,
                   times: int = 1) -> None:
        """The next ``times`` requests to ``match`` get the PDS's 429, ``RateLimit-Reset`` = ``reset_epoch``."""
        now = self.clock().timestamp()
        headers = {"RateLimit-Limit": str(limit), "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset_epoch),
                   "RateLimit-Policy": f"{limit};w=3600", "Retry-After": str(max(0, int(reset_epoch - now)))}
        self.fail_next(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, headers,
                       match=match, times=times)

    # -- what it holds -------------------------------------------------------------------------

    def texts(self) -> list[str]:
        with self.lock:
            return [str(c.record.get("text", "")) for c in self.created]

    def live_secrets(self) -> list[str]:
        """Every JWT issued and the app password: what must never leak."""
        with self.lock:
            return [*self.tokens, self.account.password]

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def pds(self) -> str:
        return self.pds_url or self.url

    def route(self, request: Request) -> Response | object:
        method, path = request.method, request.path
        if method == "POST" and path == CREATE_SESSION:
            return self._create_session(request)
        if method == "POST" and path == REFRESH_SESSION:
            return self._refresh_session(request)
        if method == "GET" and path == GET_RECORD:
            return self._get_record(request)
        token = self._bearer(request, "access")
        if isinstance(token, Response):
            return token
        if method == "GET" and path == GET_SESSION:
            return Response.json({"handle": self.account.handle, "did": self.account.did,
                                  "active": self.account.active, "email": "desk@example.org"})
        if method == "POST" and path == CREATE_RECORD:
            return self._create_record(request, token)
        if method == "POST" and path == DELETE_RECORD:
            return self._delete_record(request, token)
        if method == "POST" and path == UPLOAD_BLOB:
            return self._upload_blob(request)
        return self._error(501, "MethodNotImplemented", "Method Not Implemented")

    @staticmethod
    def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> Response:
        return Response.json({"error": error, "message": message}, status, headers)

    def _issue(self, kind: str) -> str:
        now = self.clock()
        ttl = ACCESS_TTL if kind == "access" else REFRESH_TTL
        header = _b64(json.dumps({"typ": f"com.atproto.{kind}", "alg": "ES256K"}).encode())
        payload = _b64(json.dumps({"scope": f"com.atproto.{kind}", "sub": self.account.did,
                                   "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp()),
                                   "jti": f"{next(self._serial)}-{hashlib.sha256(str(now).encode()).hexdigest()[:8]}",
                                   "aud": "did:web:127.0.0.1"}).encode())
        signature = _b64(hashlib.sha256(f"{header}.{payload}.{kind}".encode()).digest())
        jwt = f"{header}.{payload}.{signature}"
        self.tokens[jwt] = Token(kind, self.account.did, now + ttl)
        return jwt

    def _session_body(self) -> dict[str, Any]:
        with self.lock:
            access, refresh = self._issue("access"), self._issue("refresh")
        return {"accessJwt": access, "refreshJwt": refresh, "handle": self.account.handle, "did": self.account.did,
                "didDoc": {"@context": ["https://www.w3.org/ns/did/v1"], "id": self.account.did,
                           "alsoKnownAs": [f"at://{self.account.handle}"],
                           "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                        "serviceEndpoint": self.pds}]},
                "email": "desk@example.org", "emailConfirmed": True, "active": self.account.active}

    def _limited(self, stamps: list[datetime], limits: tuple[tuple[int, timedelta], ...],
                 points: int = 1) -> Response | None:
        now = self.clock()
        for limit, window in limits:
            used = sum(1 for stamp in stamps if now - stamp < window) * points
            if used + points > limit:
                oldest = min(stamp for stamp in stamps if now - stamp < window)
                reset = int((oldest + window).timestamp())
                return self._error(429, "RateLimitExceeded", "Rate Limit Exceeded", {
                    "RateLimit-Limit": str(limit), "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset),
                    "RateLimit-Policy": f"{limit};w={int(window.total_seconds())}",
                    "Retry-After": str(max(0, reset - int(now.timestamp())))})
        return None

    def _create_session(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("identifier"), str) \
                or not isinstance(body.get("password"), str):
            return self._error(400, "InvalidRequest", "Input must have the property \"identifier\"")
        with self.lock:
            account = self.account
            limited = self._limited(account.logins, LOGIN_LIMITS)
            if limited is not None:
                return limited
            account.logins.append(self.clock())
            self.logins += 1
            known = body["identifier"].lower() in (account.handle.lower(), account.did)
            if not known or body["password"] != account.password:
                return self._error(401, "AuthenticationRequired", "Invalid identifier or password")
        return Response.json(self._session_body())

    def _bearer(self, request: Request, kind: str) -> Token | Response:
        auth = request.header("authorization") or ""
        if not auth.startswith("Bearer "):
            return self._error(401, "AuthenticationRequired", "Authentication Required")
        with self.lock:
            token = self.tokens.get(auth[7:])
        if token is None or token.kind != kind:
            return self._error(400, "InvalidToken", "Token could not be verified")
        if token.revoked and kind == "access":
            return self._error(401, "AuthenticationRequired", "Token has been revoked")
        if token.expires <= self.clock():
            return self._error(400, "ExpiredToken", "Token has expired")
        return token

    def _refresh_session(self, request: Request) -> Response:
        token = self._bearer(request, "refresh")
        if isinstance(token, Response):
            return token
        with self.lock:
            if token.revoked:
                return self._error(400, "ExpiredToken", "Token has been revoked")
            token.revoked = True  # rotated: a refresh JWT is good once
            self.refreshes += 1
        return Response.json(self._session_body())

    def _get_record(self, request: Request) -> Response:
        repo, collection, rkey = request.arg("repo"), request.arg("collection"), request.arg("rkey")
        if not repo or not collection or not rkey:
            return self._error(400, "InvalidRequest", "Error: Params must have the properties repo, collection, rkey")
        if repo not in (self.account.did, self.account.handle):
            return self._error(400, "InvalidRequest", f"Could not find repo: {repo}")
        uri = f"at://{self.account.did}/{collection}/{rkey}"
        with self.lock:
            created = self.posts.get(rkey) if collection == POST else None
        if created is None:
            return self._error(400, "RecordNotFound", f"Could not locate record: {uri}")
        return Response.json({"uri": uri, "cid": created.cid, "value": created.record})

    def _upload_blob(self, request: Request) -> Response:
        mime = request.header("content-type") or "application/octet-stream"
        cid = cid_of(request.body)
        with self.lock:
            self.blobs[cid] = (request.body, mime)
        return Response.json({"blob": {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime,
                                       "size": len(request.body)}})

    def _create_record(self, request: Request, token: Token) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            return self._error(400, "InvalidRequest", "Input must be an object")
        if body.get("repo") not in (self.account.did, self.account.handle) or token.did != self.account.did:
            return self._error(401, "AuthenticationRequired", "Authentication Required")
        record = body.get("record")
        if body.get("collection") != POST or not isinstance(record, dict) or record.get("$type") != POST:
            return self._error(400, "InvalidRequest", "Invalid collection or record type")
        problem = self._invalid_post(record)
        if problem:
            return self._error(400, "InvalidRequest", f"Invalid app.bsky.feed.post record: {problem}")
        rkey = body.get("rkey")
        if rkey is None:
            rkey = f"3l{next(self._serial):011d}".replace("0", "2").replace("1", "3")[:13]
        if not isinstance(rkey, str) or not _TID.match(rkey):
            return self._error(400, "InvalidRequest", f"Invalid record key for app.bsky.feed.post: {rkey}")
        with self.lock:
            limited = self._limited([when for when, _ in self.account.writes], WRITE_LIMITS, points=3)
            if limited is not None:
                return limited
            if rkey in self.posts:  # the MST already holds the key: the reference PDS throws, unhandled
                return self._error(500, "InternalServerError", "Internal Server Error")
            cid = cid_of(json.dumps(record, sort_keys=True).encode())
            created = Created(rkey, record, cid, self.clock())
            self.posts[rkey] = created
            self.created.append(created)
            self.account.writes.append((self.clock(), 3))
        uri = f"at://{self.account.did}/{POST}/{rkey}"
        return Response.json({"uri": uri, "cid": cid, "commit": {"cid": cid_of(uri.encode()), "rev": rkey},
                              "validationStatus": "valid"})

    def _delete_record(self, request: Request, token: Token) -> Response:
        """``com.atproto.repo.deleteRecord``: removes the record; one that is not there is a no-op (200), as
        the reference PDS answers. Recorded in ``deleted`` (rkeys, in order)."""
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("rkey"), str):
            return self._error(400, "InvalidRequest", "Input must have the properties repo, collection, rkey")
        if body.get("repo") not in (self.account.did, self.account.handle) or token.did != self.account.did:
            return self._error(401, "AuthenticationRequired", "Authentication Required")
        if body.get("collection") != POST:
            return self._error(400, "InvalidRequest", "Invalid collection")
        with self.lock:
            if self.posts.pop(body["rkey"], None) is not None:
                self.deleted.append(body["rkey"])
        return Response.json({"commit": {"cid": cid_of(body["rkey"].encode()), "rev": body["rkey"]}})

    def _invalid_post(self, record: dict[str, Any]) -> str | None:
        text = record.get("text")
        if not isinstance(text, str):
            return "Record/text must be a string"
        if int(grapheme.length(text)) > 300:
            return "Record/text must not be longer than 300 graphemes"
        data = text.encode("utf-8")
        if len(data) > 3000:
            return "Record/text must not be longer than 3000 characters"
        created = record.get("createdAt")
        try:
            datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        except ValueError:
            return "Record/createdAt must be an valid atproto datetime (both RFC-3339 and ISO-8601)"
        langs = record.get("langs", [])
        if not isinstance(langs, list) or len(langs) > 3:
            return "Record/langs must not have more than 3 elements"
        for i, facet in enumerate(record.get("facets", [])):
            index = facet.get("index", {}) if isinstance(facet, dict) else {}
            start, end = index.get("byteStart"), index.get("byteEnd")
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(data)):
                return f"Record/facets/{i}/index must be a byte range within the text"
        embed = record.get("embed")
        if embed is not None:
            if not isinstance(embed, dict) or embed.get("$type") != "app.bsky.embed.external":
                return "Record/embed must be an object which includes the \"$type\" property"
            external = embed.get("external")
            if not isinstance(external, dict) or not all(isinstance(external.get(k), str)
                                                         for k in ("uri", "title", "description")):
                return "Record/embed/external must have the properties \"uri\", \"title\", \"description\""
            thumb = external.get("thumb")
            if thumb is not None:
                ref = thumb.get("ref", {}).get("$link") if isinstance(thumb, dict) else None
                with self.lock:
                    blob = self.blobs.get(str(ref))
                if blob is None:
                    return "Could not find blob"
                if len(blob[0]) > THUMB_MAX:
                    return f"Record/embed/external/thumb cannot be over {THUMB_MAX} bytes"
                if not blob[1].startswith("image/"):
                    return "Record/embed/external/thumb mimeType is not accepted"
        return None
