"""``FakeHub``: a loopback WebSub hub (W3C WebSub §5-§7), enough of one to test a subscriber against.

``POST /`` takes a form with ``hub.callback``, ``hub.mode`` (subscribe | unsubscribe), ``hub.topic``,
``hub.lease_seconds`` and ``hub.secret``; it answers ``202 Accepted`` (or ``status`` when scripted:
``fail_next(503)``), then verifies the intent: a ``GET`` to the callback with ``hub.mode``,
``hub.topic``, ``hub.challenge`` (random) and ``hub.lease_seconds`` (``grant``, else what was asked),
and records the subscription only when the callback answered 2xx with the challenge as its body.
``verify_first = True`` verifies *before* answering the request (hubs may, and the subscriber must
cope). ``deny(callback, topic, reason)`` sends ``hub.mode=denied``.

``publish(topic, body)`` delivers a notification to every verified subscriber of ``topic``: a ``POST``
of ``body`` with ``X-Hub-Signature: <algorithm>=<hex HMAC of the body under the subscriber's secret>``
(``algorithm`` defaults to sha256; ``secret=`` signs with another secret, ``signature=`` sends that
header as it is); it returns the callback's status codes.

Waiting without sleeping: ``wait_for(predicate)`` (from ``LoopbackServer``) wakes on every request;
``verifications`` lists ``(callback, mode, topic, status, echoed)`` in order.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

from tests.fakes.http import LoopbackServer, Request, Response


@dataclass
class Subscription:
    callback: str
    topic: str
    secret: str | None
    lease: int
    verified: bool = False


class FakeHub(LoopbackServer):
    """A WebSub hub on 127.0.0.1 (see the module docstring)."""

    def __init__(self, *, grant: int | None = None, verify_first: bool = False) -> None:
        super().__init__()
        self.grant = grant
        """The lease granted (``hub.lease_seconds`` in the verification); None: what was asked."""
        self.verify_first = verify_first
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.requests_made: list[dict[str, str]] = []
        """Every subscription request's form, in order."""
        self.verifications: list[tuple[str, str, str, int, bool]] = []
        self._fail: list[int] = []
        self._threads: list[threading.Thread] = []

    # -- scripting ---------------------------------------------------------------------------------------

    def fail_next(self, status: int) -> None:
        with self.lock:
            self._fail.append(status)

    def verified(self, topic: str | None = None) -> list[Subscription]:
        with self.lock:
            return [s for s in self.subscriptions.values() if s.verified and (topic is None or s.topic == topic)]

    def deny(self, callback: str, topic: str, reason: str = "not allowed") -> int:
        return self._verify_get(callback, {"hub.mode": "denied", "hub.topic": topic, "hub.reason": reason})[0]

    def verify(self, callback: str, mode: str, topic: str, lease: int | None = None,
               challenge: str | None = None) -> tuple[int, bytes]:
        """Send a verification of intent by hand (as a hub, or as someone pretending to be one)."""
        query = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge or secrets.token_hex(16)}
        if lease is not None:
            query["hub.lease_seconds"] = str(lease)
        return self._verify_get(callback, query)

    def publish(self, topic: str, body: bytes, *, algorithm: str = "sha256", secret: str | None = None,
                signature: str | None = None) -> list[int]:
        statuses = []
        for sub in self.verified(topic):
            key = secret if secret is not None else sub.secret
            header = signature
            if header is None and key is not None:
                header = f"{algorithm}={hmac.new(key.encode(), body, getattr(hashlib, algorithm)).hexdigest()}"
            headers = {"Content-Type": "application/rss+xml",
                       "Link": f'<{self.url}/>; rel="hub", <{topic}>; rel="self"'}
            if header is not None:
                headers["X-Hub-Signature"] = header
            statuses.append(_call("POST", sub.callback, body, headers)[0])
        return statuses

    def join(self) -> None:
        """Wait for the verifications started so far (they run in threads, as a hub's would)."""
        for thread in list(self._threads):
            thread.join(timeout=30)

    # -- the hub -----------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/":
            return Response.text("not found", 404)
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8"), keep_blank_values=True).items()}
        with self.lock:
            self.requests_made.append(form)
            failure = self._fail.pop(0) if self._fail else None
        if failure is not None:
            return Response.text("hub trouble", failure)
        callback, topic, mode = form.get("hub.callback"), form.get("hub.topic"), form.get("hub.mode")
        if not callback or not topic or mode not in ("subscribe", "unsubscribe"):
            return Response.text("hub.callback, hub.topic and hub.mode are required", 400)
        asked = int(form.get("hub.lease_seconds") or 864000)
        lease = self.grant if self.grant is not None else asked
        sub = Subscription(callback, topic, form.get("hub.secret"), lease)
        if self.verify_first:
            self._check_intent(sub, mode)
        else:
            thread = threading.Thread(target=self._check_intent, args=(sub, mode), daemon=True)
            self._threads.append(thread)
            thread.start()
        return Response.text("", 202)

    def _check_intent(self, sub: Subscription, mode: str) -> None:
        challenge = secrets.token_hex(16)
        status, body = self._verify_get(sub.callback, {"hub.mode": mode, "hub.topic": sub.topic,
                                                       "hub.challenge": challenge,
                                                       "hub.lease_seconds": str(sub.lease)})
        ok = 200 <= status < 300 and body == challenge.encode()
        with self.lock:
            if ok and mode == "subscribe":
                sub.verified = True
                self.subscriptions[(sub.callback, sub.topic)] = sub
            elif ok:
                self.subscriptions.pop((sub.callback, sub.topic), None)
            self.arrived.notify_all()

    def _verify_get(self, callback: str, query: dict[str, str]) -> tuple[int, bytes]:
        sep = "&" if "?" in callback else "?"
        status, body = _call("GET", callback + sep + urlencode(query), None, {})
        with self.lock:
            self.verifications.append((callback, query["hub.mode"], query.get("hub.topic", ""), status,
                                       body == query.get("hub.challenge", "").encode()))
            self.arrived.notify_all()
        return status, body


def _call(method: str, url: str, body: bytes | None, headers: dict[str, Any]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(req, timeout=20) as answer:  # noqa: S310 - loopback only
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""
