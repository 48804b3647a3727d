"""Helpers shared by the source URL and Retry-After tests (tests/integration/test_source_*.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.app import App
from bot.bootstrap import build_app
from bot.clock import FakeClock
from bot.settings import HttpConfig, Secrets, build_config
from bot.testing import RecordingPlugin
from tests.fakes.archive import ArchiveServer
from tests.fakes.http import Request, Response

SECRET = "LOCAL-FILE-SENTINEL-7f3a"
"""Text only the local files of these tests contain: it must appear nowhere tagrelay writes."""

PASSWD_LIKE = f"root:x:0:0:{SECRET}:/root:/bin/bash\n".encode()

HTTP = HttpConfig(timeout=5)


def local_feed(path: Path) -> Path:
    """A valid RSS feed on disk whose one post matches the test subscription."""
    path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>{SECRET} channel</title><link>http://local.invalid/</link>
<item><title>{SECRET} post</title><link>http://local.invalid/1</link><guid>{SECRET}-1</guid>
<category>MEK</category><description>{SECRET}</description></item>
</channel></rss>
""", encoding="utf-8")
    return path


class Site(ArchiveServer):
    """The fake archive plus pages whose answers a test sets (``pages[path]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.pages: dict[str, Response] = {}

    def handle(self, request: Request) -> Response | object:
        page = self.pages.get(request.path)
        if page is not None:
            with self.lock:
                self.responses.append((request.path, page.status))
            return Response(page.status, page.body, dict(page.headers))
        return super().handle(request)


def page_linking(href: str) -> Response:
    return Response.text(f"""<!DOCTYPE html><html><head><title>News</title>
<link rel="alternate" type="application/rss+xml" title="Feed" href="{href}" />
</head><body>hello</body></html>""", content_type="text/html; charset=UTF-8")


def running_site() -> Iterator[Site]:
    """A started ``Site`` with one post tagged MEK (a fixture body)."""
    server = Site()
    server.start()
    try:
        server.add_post(title="Old MEK", tags=["MEK"])
        yield server
    finally:
        server.stop()


@dataclass
class Harness:
    app: App
    plugin: RecordingPlugin
    clock: FakeClock
    db: Path

    def sent(self) -> list[str]:
        pub = self.plugin.publishers.get("tg")
        return [s.text for s in pub.sent] if pub else []

    def stored_bytes(self) -> bytes:
        """Every byte of the SQLite database (and its WAL) as written so far."""
        return b"".join(p.read_bytes() for p in self.db.parent.glob(self.db.name + "*"))


def harness_builder(tmp_path: Path, clock: FakeClock) -> Callable[..., Harness]:
    """Builds an App on a fresh SQLite file with one source and a channel "tg" subscribed to MEK."""

    def build(url: str, *, kind: str = "auto", interval: float = 60, **service: object) -> Harness:
        plugin = RecordingPlugin()
        db = tmp_path / "relay.db"
        raw = {
            "storage": {"url": f"sqlite+aiosqlite:///{db}"},
            "delivery": {"pacing": False},
            "service": {"jitter": 0.1, **service},
            "sources": [{"name": "archive", "url": url, "kind": kind, "interval": interval}],
            "channels": [{"name": "tg", "platform": "recording"}],
            "subscriptions": [{"tag": "MEK", "channels": ["tg"], "backfill": 5}],
        }
        config = build_config(raw, {"recording": plugin})
        app = build_app(config, secrets=Secrets(environ={}), clock=clock,
                        plugins={"recording": plugin})  # type: ignore[dict-item]
        return Harness(app, plugin, clock, db)

    return build
