"""Bluesky end to end: the real ``tagrelay`` CLI (subprocesses) against the archive, ``FakeBluesky`` and an
image server on loopback. ``run --once`` delivers each post tagged for the channel once, as a record with
facets and a link card with its thumbnail; ``channels test`` posts nothing; ``preview`` shows the record's
text; pause/resume work; a SIGKILL while the answer to a create is on its way, then a restart, posts
nothing twice. The app password reaches the processes through ``.env`` in their working directory."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import Db, Service, run_cli
from tests.fakes.archive import ArchiveServer
from tests.fakes.bluesky_api import APP_PASSWORD, CREATE_RECORD, CREATE_SESSION, HANDLE, FakeBluesky
from tests.fakes.images import ImageServer, image_response, jpeg
from tests.fakes.telegram_api import Fault


@pytest.fixture
def servers() -> Iterator[tuple[ArchiveServer, FakeBluesky, ImageServer]]:
    with ArchiveServer() as archive, FakeBluesky() as bsky, ImageServer() as images:
        yield archive, bsky, images


def write_config(folder: Path, archive: ArchiveServer, bsky: FakeBluesky) -> Path:
    (folder / ".env").write_text(f"BLUESKY_APP_PASSWORD={APP_PASSWORD}\n")
    path = folder / "tagrelay.toml"
    path.write_text(f"""
[storage]
url = "sqlite+aiosqlite:///{folder / 'tagrelay.db'}"
[http]
timeout = 5
[service]
jitter = 0
shutdown_timeout = 2
[delivery]
pacing = false
retry_base = 0.2
retry_cap = 1
[health]
enabled = false
[[sources]]
name = "archive"
url = "{archive.url}/feed/"
kind = "rss"
interval = 1
[[channels]]
name = "bsky"
platform = "bluesky"
handle = "{HANDLE}"
service = "{bsky.url}"
hashtags = true
langs = ["en"]
[[subscriptions]]
tag = "MEK"
channels = ["bsky"]
""")
    return path


def cli(config: Path, *args: str) -> str:
    done = run_cli(config, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert APP_PASSWORD not in done.stdout + done.stderr
    return done.stdout


def test_run_once_posts_each_tagged_post_once_with_facets_and_card(
        tmp_path: Path, servers: tuple[ArchiveServer, FakeBluesky, ImageServer]) -> None:
    archive, bsky, images = servers
    config = write_config(tmp_path, archive, bsky)
    archive.add_post(title="Before the first poll", tags=["MEK"])
    cli(config, "run", "--once")  # the baseline: nothing is sent
    assert bsky.created == [] and bsky.logins == 0  # and nothing to post: no login either
    picture = images.serve("/uploads/crowd.jpg", image_response(jpeg(800, 600)))
    first = archive.add_post(title="Protesters in 🇮🇶 Baghdad: مرحبا", tags=["MEK", "Iraq"], image=picture,
                             excerpt_html="<p>Thousands marched, see https://example.org/live.</p>")
    archive.add_post(title="Not for Bluesky", tags=["Other"])
    second = archive.add_post(title="Second post #MeToo", tags=["MEK"])
    cli(config, "run", "--once")
    cli(config, "run", "--once")  # nothing new: nothing more
    assert bsky.logins == 1 and len(bsky.seen("POST", CREATE_SESSION)) == 1
    records = [c.record for c in bsky.created]
    assert [r["embed"]["external"]["uri"] for r in records] == [first.link(archive.site), second.link(archive.site)]
    one, two = records
    assert one["langs"] == ["en"] and one["text"].startswith("Protesters in 🇮🇶 Baghdad: مرحبا")
    assert one["embed"]["external"]["title"] == "Protesters in 🇮🇶 Baghdad: مرحبا"
    assert "Thousands marched" in one["embed"]["external"]["description"]
    assert one["embed"]["external"]["thumb"]["mimeType"] == "image/jpeg"
    assert "thumb" not in two["embed"]["external"]
    for record in records:
        data = record["text"].encode()
        covered = {data[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode() for f in record.get("facets", [])}
        tags = {f["features"][0]["tag"] for f in record.get("facets", []) if "tag" in f["features"][0]}
        assert {"#" + tag for tag in tags} <= covered and "MEK" in tags
    assert [f["features"][0].get("tag") for f in two["facets"]] == ["MeToo", "MEK"]
    assert first.link(archive.site) not in one["text"]  # the card is the link (the default)
    rows = Db(config).deliveries()
    assert [status for *_, status, _ in rows] == ["sent", "sent"]
    # preview shows what was posted; channels test posts nothing
    items = json.loads(cli(config, "preview", "MEK", "--json"))
    assert [i["text"] for i in items] == [two["text"]] and items[0]["link"] == second.link(archive.site)
    out = cli(config, "channels", "test", "bsky")
    assert out.startswith(f"bsky (bluesky): OK, posts as @{HANDLE} on 127.0.0.1:{bsky.port}")
    assert len(bsky.created) == 2 and bsky.logins == 2  # a login for the test, counted like the service's
    # pause and resume are the generic ones
    assert "paused" in cli(config, "channels", "pause", "bsky", "--reason", "maintenance")
    archive.add_post(title="While paused", tags=["MEK"])
    cli(config, "run", "--once")
    assert len(bsky.created) == 2
    listing = json.loads(cli(config, "channels", "list", "--json"))
    assert [c["platform"] for c in listing] == ["bluesky"]
    cli(config, "channels", "resume", "bsky")
    cli(config, "run", "--once")
    assert len(bsky.created) == 3
    status = cli(config, "status")
    for secret in bsky.live_secrets():
        assert secret not in status
        assert secret.encode() not in (tmp_path / "tagrelay.db").read_bytes()


@pytest.mark.timeout(120)
def test_sigkill_while_the_answer_is_on_its_way_then_restart_posts_nothing_twice(
        tmp_path: Path, servers: tuple[ArchiveServer, FakeBluesky, ImageServer]) -> None:
    archive, bsky, _ = servers
    config = write_config(tmp_path, archive, bsky)
    cli(config, "run", "--once")  # the baseline
    service = Service(config).start()
    try:
        fault = Fault(hold=threading.Event(), process=True, match=CREATE_RECORD)
        bsky.add_fault(fault)  # the record is created; its answer waits
        archive.add_post(title="Posted once", tags=["MEK"])
        archive.add_post(title="Posted after the restart", tags=["MEK"])
        assert bsky.wait_for(lambda: fault.times == 0 and bsky.handled == len(bsky.requests), 60), service.tail()
        assert len(bsky.created) == 1
        service.kill()
        assert service.wait(30) == -signal.SIGKILL
        assert fault.hold is not None
        fault.hold.set()
    finally:
        service.stop()
    # Bluesky deduplicates (the record key is read back): both posts were claimed in one group
    assert [status for *_, status, _ in Db(config).deliveries()] == ["sending", "sending"]
    cli(config, "run", "--once")
    assert [c.record["text"].splitlines()[0] for c in bsky.created] == ["Posted once", "Posted after the restart"]
    assert len(bsky.seen("POST", CREATE_RECORD)) == 2  # the first was read back, not sent again
    assert [status for *_, status, _ in Db(config).deliveries()] == ["sent", "sent"]
