"""The hostile-source corpus, served from a loopback server, run through the real CLI.

Every case follows a user's story on one SQLite database, with the real
``tagrelay run --once`` (sources, store, console publisher) in this process:

1. the clean feed (``before.xml``) is polled: a baseline, nothing sent;
2. the hostile answer is polled (a broken, huge, deceitful or throttling source);
3. the clean feed one post later (``after.xml``) is polled, twice.

What a user must see, whatever step 2 was: the new post ("Post 4", tagged
``MEK`` and ``إيران``) reaches each subscribed channel exactly once (in step 2 or
3), no old post is sent again, no byte of a local file appears anywhere (the
channels, the terminal, the logs, the database, ``status``), and no raw control
character reaches the terminal. The corpus files live in ``tests/data/hostile/``
(``make_hostile.py`` writes them and builds the cases too large to keep as files).
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from tests.data.hostile import make_hostile as corpus
from tests.fakes.http import LoopbackServer, Request, Response

HERE = Path(__file__).resolve().parent.parent / "data" / "hostile"
RSS = "application/rss+xml; charset=UTF-8"
RAW_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069]")
"""What must never reach a terminal raw (tab, newline and carriage return aside)."""


class HostileServer(LoopbackServer):
    """Serves a script per path: each request takes the next answer; the last one stays."""

    def __init__(self) -> None:
        super().__init__()
        self.script: dict[str, list[Callable[[Request], Response]]] = {}

    def serve(self, path: str, *answers: Callable[[Request], Response]) -> None:
        with self.lock:
            self.script[path] = list(answers)

    def handle(self, request: Request) -> Response:
        with self.lock:
            answers = self.script.get(request.path)
            if not answers:
                return Response(404, b"not found")
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(request)


def body(data: bytes, content_type: str = RSS, status: int = 200,
         headers: dict[str, str] | None = None) -> Callable[[Request], Response]:
    return lambda _req: Response(status, data, {"Content-Type": content_type, **(headers or {})})


@dataclass
class Run:
    """One CLI call: exit code, what it printed, what it logged."""

    code: int
    out: str
    err: str


@dataclass
class World:
    """A config, a database, the server and the files a leak would show in."""

    server: HostileServer
    tmp: Path
    canary_path: Path
    canary: str
    config: Path
    capsys: pytest.CaptureFixture[str]
    runs: list[Run] = field(default_factory=list)

    def file(self, name: str) -> bytes:
        data = (HERE / name).read_bytes()
        return data.replace(corpus.SITE.encode(), self.server.url.encode()).replace(
            corpus.CANARY.encode(), str(self.canary_path).encode())

    def cli(self, *args: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--config", str(self.config), *args], out=out, err=err)
        captured = self.capsys.readouterr()  # the console channel and the logs write to the process streams
        run = Run(code, out.getvalue() + captured.out, err.getvalue() + captured.err)
        self.runs.append(run)
        return run

    def once(self) -> Run:
        run = self.cli("run", "--once")
        assert run.code == 0, run.err[-2000:]
        return run

    def sent(self, channel: str) -> list[str]:
        path = self.tmp / f"{channel}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["text"].splitlines()[0] for line in path.read_text("utf-8").splitlines()]

    def status(self) -> dict[str, object]:
        run = self.cli("status", "--json")
        return dict(json.loads(run.out))

    def assert_clean(self) -> None:
        """No local file byte anywhere; no raw control character on the terminal."""
        human = [self.cli(*cmd) for cmd in (("status",), ("deliveries",), ("tags",), ("sources", "list"),
                                            ("channels", "list"), ("audit",))]
        for run in [*self.runs, *human]:
            assert self.canary not in run.out and self.canary not in run.err
            bad = RAW_CONTROLS.findall(run.out + run.err)
            assert not bad, f"raw control characters on the terminal: {bad[:5]!r}"
        for path in self.tmp.iterdir():
            if path.is_file() and path != self.canary_path:
                assert self.canary.encode() not in path.read_bytes(), f"local file content in {path.name}"


@pytest.fixture
def world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[World]:
    canary = f"CANARY-{uuid.uuid4().hex}"
    canary_path = tmp_path / "secret-feed.xml"
    # a local file that is itself a valid feed: read, it would be published
    canary_path.write_bytes(corpus.feed_xml(
        [corpus.Item(9, f"Post 9 {canary}", ("MEK", "إيران"), excerpt=canary)]).encode())
    with HostileServer() as server:
        config = tmp_path / "tagrelay.toml"
        config.write_text(
            "[storage]\n"
            f"url = \"sqlite+aiosqlite:///{tmp_path / 'tagrelay.db'}\"\n"
            "[delivery]\npacing = false\n"
            "[http]\nmax_bytes = 262144\n"
            "[health]\nenabled = false\n"
            "[[sources]]\nname = \"archive\"\n"
            f"url = \"{server.url}/feed/\"\nkind = \"rss\"\ninterval = \"10m\"\n"
            "[[channels]]\nname = \"mek\"\nplatform = \"console\"\n"
            f"jsonl = \"{tmp_path / 'mek.jsonl'}\"\n"
            "[[channels]]\nname = \"iran\"\nplatform = \"console\"\n"
            f"jsonl = \"{tmp_path / 'iran.jsonl'}\"\n"
            "[[subscriptions]]\ntag = \"MEK\"\nchannels = [\"mek\"]\n"
            "[[subscriptions]]\ntag = \"إيران\"\nchannels = [\"iran\"]\n",
            encoding="utf-8")
        yield World(server, tmp_path, canary_path, canary, config, capsys)


NEW_TITLE = corpus.NEW_ITEM.title


def story(world: World, *hostile: Callable[[Request], Response]) -> None:
    """Baseline on the clean feed, then each hostile answer, then the clean feed with post 4, twice."""
    world.server.serve("/feed/", body(world.file("before.xml")))
    world.once()
    assert world.sent("mek") == [] and world.sent("iran") == []
    for answer in hostile:
        world.server.serve("/feed/", answer)
        world.once()
    world.server.serve("/feed/", body(world.file("after.xml")))
    world.once()
    world.once()


def assert_post4_once(world: World) -> None:
    for channel in ("mek", "iran"):
        sent = world.sent(channel)
        assert len(sent) == 1, f"{channel} got {sent!r}"
        assert sent[0].startswith("Post 4"), sent
    world.assert_clean()


# -- truncated documents: never "seen" on partial data --------------------------------------------

def _cuts() -> dict[str, int]:
    doc = corpus.after()
    guid = doc.index(b"</guid>") + len(b"</guid>")  # post 4 comes first (newest first)
    return {
        "after-new-guid": guid,
        "mid-new-title": doc.index(b"Basra"),
        "mid-new-category": doc.index("إيران".encode()) + 2,
        "after-first-item": doc.index(b"</item>") + len(b"</item>"),
        "before-channel-close": doc.index(b"</channel>"),
        "in-xml-declaration": 20,
    }


@pytest.mark.parametrize("cut", sorted(_cuts()))
def test_truncated_document_never_marks_a_post_seen(world: World, cut: str) -> None:
    cut_doc = corpus.after()[:_cuts()[cut]].replace(corpus.SITE.encode(), world.server.url.encode())
    story(world, body(cut_doc))
    assert_post4_once(world)


# -- encodings -------------------------------------------------------------------------------------

def test_one_bad_byte_does_not_re_decode_the_other_items(world: World) -> None:
    story(world, body(world.file("bad-byte-old-item.xml")))
    assert_post4_once(world)
    tags = world.cli("tags", "--json")
    names = {t["name"] for t in json.loads(tags.out)}
    assert "إيران" in names and "ایران" in names
    assert not any("Ø" in n for n in names), names


def test_windows_1256_declared_utf8_is_never_sent_as_mojibake_and_the_clean_post_follows(world: World) -> None:
    story(world, body(world.file("cp1256-declared-utf8.xml")))
    for channel in ("mek", "iran"):
        sent = world.sent(channel)
        assert len(sent) <= 1, sent
        assert all("Ø" not in s and "Ù" not in s for s in sent), sent
    assert world.sent("mek") == [NEW_TITLE]
    world.assert_clean()


# -- control characters ----------------------------------------------------------------------------

def test_control_characters_never_reach_the_terminal(world: World) -> None:
    story(world, body(world.file("control-chars.xml")))
    for channel in ("mek", "iran"):
        assert len(world.sent(channel)) == 1, world.sent(channel)
    world.assert_clean()


# -- local files -----------------------------------------------------------------------------------

def test_an_external_entity_never_reads_a_local_file(world: World) -> None:
    story(world, body(world.file("xxe.xml")))
    for channel in ("mek", "iran"):
        assert len(world.sent(channel)) <= 1
    world.assert_clean()


def test_discovery_never_follows_a_link_to_a_local_file(world: World) -> None:
    text = world.config.read_text("utf-8").replace('/feed/"\nkind = "rss"', '/"\nkind = "auto"')
    world.config.write_text(text, "utf-8")
    world.server.serve("/", body(world.file("discovery-file-link.html"), "text/html; charset=UTF-8"))
    world.server.serve("/feed/", body(world.file("before.xml")))
    world.once()
    source = next(s for s in world.status()["sources"] if s["name"] == "archive")  # type: ignore[attr-defined]
    assert source["last_error"], source
    assert "file:" not in str(source.get("resolved_url") or "")
    world.server.serve("/", body(world.file("discovery-ok.html"), "text/html; charset=UTF-8"))
    world.once()
    world.server.serve("/feed/", body(world.file("after.xml")))
    world.once()
    world.once()
    assert_post4_once(world)


def test_a_redirect_to_a_local_file_is_refused(world: World) -> None:
    story(world, body(b"", status=302, headers={"Location": f"file://{world.canary_path}"}))
    assert_post4_once(world)


# -- size and depth --------------------------------------------------------------------------------

def test_a_body_over_the_cap_is_an_error_and_loses_nothing(world: World) -> None:
    huge = world.file("after.xml").replace(b"</channel>", b"<!--" + b"x" * 400_000 + b"--></channel>")
    story(world, body(huge))
    assert_post4_once(world)


def test_entity_expansion_is_bounded(world: World) -> None:
    story(world, body(world.file("billion-laughs.xml")))
    for channel in ("mek", "iran"):
        assert len(world.sent(channel)) <= 1
        assert all(len(s) < 5000 for s in world.sent(channel))
    world.assert_clean()


def test_a_deeply_nested_document_is_bounded(world: World) -> None:
    deep = world.file("after.xml").replace(b"</channel>", b"<x>" * 50_000 + b"</x>" * 50_000 + b"</channel>")
    story(world, body(deep))
    assert_post4_once(world)


def test_a_huge_link_and_title_are_bounded(world: World) -> None:
    item = corpus.Item(4, NEW_TITLE + " " + "T" * 100_000, corpus.NEW_ITEM.tags,
                       link=f"{corpus.SITE}/2024/03/05/post-4/?" + "a" * 100_000)
    doc = corpus.feed_xml((*corpus.BASE_ITEMS, item)).encode().replace(corpus.SITE.encode(),
                                                                      world.server.url.encode())
    world.server.serve("/feed/", body(world.file("before.xml")))
    world.once()
    world.server.serve("/feed/", body(doc))
    world.once()
    for channel in ("mek", "iran"):
        assert len(world.sent(channel)) <= 1
        assert all(len(s) < 5000 for s in world.sent(channel))
    run = world.cli("deliveries", "--json")
    assert run.code == 0 and len(run.out) < 200_000
    world.assert_clean()


# -- throttling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(world: World, status: int) -> None:
    world.server.serve("/feed/", body(world.file("before.xml")))
    world.once()
    world.server.serve("/feed/", body(b"slow down", "text/plain", status=status, headers={"Retry-After": "3600"}))
    world.once()
    source = next(s for s in world.status()["sources"] if s["name"] == "archive")  # type: ignore[attr-defined]
    assert source["last_error"], source
    waited = datetime.fromisoformat(source["next_poll"]) - datetime.fromisoformat(source["last_poll"])
    assert timedelta(seconds=3599) <= waited <= timedelta(hours=7), source  # the interval is 10 minutes


# -- identity and volume ---------------------------------------------------------------------------

def _churning(world: World) -> Callable[[Request], Response]:
    counter = iter(range(1_000_000))
    lock = threading.Lock()

    def answer(_req: Request) -> Response:
        with lock:
            n = next(counter)
        items = [corpus.Item(i.number, i.title, i.tags, guid=f"urn:uuid:{n}-{i.number}")
                 for i in (*corpus.BASE_ITEMS, corpus.NEW_ITEM)]
        doc = corpus.feed_xml(items).encode().replace(corpus.SITE.encode(), world.server.url.encode())
        return Response(200, doc, {"Content-Type": RSS})

    return answer


def test_churning_guids_send_nothing_twice(world: World) -> None:
    world.server.serve("/feed/", body(world.file("before.xml")))
    world.once()
    world.server.serve("/feed/", _churning(world))
    for _ in range(4):
        world.once()
    for channel in ("mek", "iran"):
        assert len(world.sent(channel)) == 1, world.sent(channel)
    assert "churn" in json.dumps(world.status()).lower()
    world.assert_clean()


def test_a_burst_is_held_not_sent(world: World) -> None:
    world.config.write_text(world.config.read_text("utf-8").replace("max_bytes = 262144", "max_bytes = 20971520"),
                            "utf-8")
    world.server.serve("/feed/", body(world.file("before.xml")))
    world.once()
    burst = [corpus.Item(100 + i, f"Burst {i}", ("MEK",)) for i in range(10_000)]
    doc = corpus.feed_xml((*corpus.BASE_ITEMS, *burst)).encode().replace(corpus.SITE.encode(),
                                                                        world.server.url.encode())
    world.server.serve("/feed/", body(doc))
    world.once()
    assert world.sent("mek") == []
    status = world.status()
    source = next(s for s in status["sources"] if s["name"] == "archive")  # type: ignore[attr-defined]
    assert not source["last_error"], source  # the document was read: the burst is held, not refused
    assert "burst" in world.cli("status").out.lower()
    world.assert_clean()
