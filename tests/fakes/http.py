"""A small real HTTP server on 127.0.0.1 in a background thread.

Every fake (archive, Bot API, Mastodon, X) is a ``LoopbackServer`` with a
``handle(request) -> Response`` method. The code under test talks to it over
real sockets with httpx; nothing is monkeypatched.

Faults: a handler may return ``DROP`` to close the connection without an
answer, or a ``Response`` with ``hold`` set to a ``threading.Event`` that the
test sets to release it (slow responses without sleeping in the test), or
with ``trickle`` set to send its body a byte at a time.

Concurrency, counted at the server: ``in_flight`` and ``most_in_flight`` (by the request's ``Host``).

Waiting without sleeping: ``wait_for(predicate, timeout)`` wakes on every
request that arrives or is handled; ``on_request`` (if set) is called with each request as
soon as it is read, before it is handled (crash tests kill the client there); if it returns
``DROP`` the request is not handled at all and the connection is closed.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import socketserver
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Part:
    """One field of a multipart/form-data body."""

    data: bytes
    filename: str | None
    content_type: str

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def multipart(self) -> dict[str, Part]:
        """The fields of a ``multipart/form-data`` body by name (the last of a repeated name)."""
        ctype = self.header("content-type") or ""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + self.body)
        if not message.is_multipart():
            return {}
        parts: dict[str, Part] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)
            parts[name] = Part(data=payload if isinstance(payload, bytes) else b"", filename=part.get_filename(),
                               content_type=part.get_content_type())
        return parts

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None
    trickle: float | None = None
    """Send the body one byte every ``trickle`` seconds (a server that is slow but never silent for long)."""

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8",
             headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": content_type, **(headers or {})})


DROP = object()
"""Return this from ``handle`` to close the connection without answering."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else Nagle + delayed ACK stall every response ~40 ms
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        return

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        owner = self.server.owner
        host = (req.header("host") or "").rsplit(":", 1)[0].lower()
        with owner.lock:
            owner.requests.append(req)
            owner.in_flight[host] += 1
            owner.most_in_flight[host] = max(owner.most_in_flight[host], owner.in_flight[host])
            owner.arrived.notify_all()
        try:
            hook = owner.on_request
            result = hook(req) if hook is not None else None
            if result is not DROP:
                result = owner.handle(req)
            with owner.lock:
                owner.handled += 1
                owner.arrived.notify_all()
            if result is DROP:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            assert isinstance(result, Response)
            if result.hold is not None:
                result.hold.wait(timeout=30)
        finally:
            # before the answer goes out: the client cannot have it (and send the next request) before this
            with owner.lock:
                owner.in_flight[host] -= 1
                owner.arrived.notify_all()
        self.send_response(result.status)
        headers = {"Content-Length": str(len(result.body)), **result.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and result.status not in (204, 304):
            if result.trickle is None:
                self.wfile.write(result.body)
                return
            for i in range(len(result.body)):
                self.wfile.write(result.body[i:i + 1])
                self.wfile.flush()
                if owner.stopping.wait(result.trickle):
                    return

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: LoopbackServer


class LoopbackServer:
    """Base class: subclass and implement ``handle``. Use as a context manager."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.arrived = threading.Condition(self.lock)
        """Notified whenever a request arrives (see ``wait_for``)."""
        self.on_request: Callable[[Request], object] | None = None
        """Called with each request once it is read, before ``handle`` (from the server thread).
        Returning ``DROP`` closes the connection without handling the request."""
        self.requests: list[Request] = []
        self.handled = 0
        """Requests whose answer is decided (it may still be held or dropped)."""
        self.in_flight: Counter[str] = Counter()
        """Requests being handled right now, by the host their ``Host`` header names (without the port):
        read, and not yet answered (a held answer counts until it is released)."""
        self.most_in_flight: Counter[str] = Counter()
        """The most requests ``in_flight`` at once, by host, since the server started."""
        self.stopping = threading.Event()
        """Set by ``stop``: a trickling answer ends."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._server.handle_error = self._handle_error  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True, name=type(self).__name__)

    def _handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (timed out, or was killed by a crash test) is not an error of the fake."""
        if isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            return
        socketserver.BaseServer.handle_error(self._server, request, client_address)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, request: Request) -> Response | object:
        raise NotImplementedError

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate()`` is true, re-checking whenever a request arrives or has been handled
        (its answer decided, e.g. a post created whose answer is then held); False on timeout.

        The predicate runs with the server's (re-entrant) lock held, so it may call ``seen``.
        """
        with self.arrived:
            return self.arrived.wait_for(predicate, timeout)

    def seen(self, method: str | None = None, path: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or r.path == path)]
