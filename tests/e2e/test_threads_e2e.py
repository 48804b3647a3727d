"""A Threads channel through the real CLI (subprocesses) against ``FakeThreads`` and the fake archive.

* ``run --once``: each post tagged for the channel arrives once, as a container then a publish, a text post
  with its link as the attachment; ``status``, ``channels test``, ``preview``, ``deliveries``, pause and
  resume work for it; no token (the environment's nor the refreshed one) reaches a log line, a command's
  output or the database file, and the refreshed one sits in a 0600 file beside the database.
* SIGKILL at each step of a post (at the container request, at the publish request, and after the post was
  made with its answer held), then a restart: every post is on the profile exactly once.

The token comes from a ``.env`` file in the working directory, as an operator would put it there.
"""

from __future__ import annotations

import json
import re
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import Db, Service, run_cli, wait_until
from tests.fakes.archive import ArchiveServer
from tests.fakes.http import DROP, Request
from tests.fakes.telegram_api import Fault
from tests.fakes.threads_api import CONTAINERS, DEFAULT_TOKEN, PUBLISH, USERNAME, FakeThreads

POST = re.compile(r"/post-(\d{4})/")


@pytest.fixture
def fakes() -> Iterator[tuple[ArchiveServer, FakeThreads]]:
    with ArchiveServer() as archive, FakeThreads() as threads:
        yield archive, threads


def write_config(folder: Path, archive: ArchiveServer, threads: FakeThreads) -> Path:
    (folder / ".env").write_text(f"THREADS_ACCESS_TOKEN={DEFAULT_TOKEN}\n")
    path = folder / "tagrelay.toml"
    path.write_text(f"""
[storage]
url = "sqlite+aiosqlite:///{folder / 'tagrelay.db'}"
lease_ttl = 2

[service]
jitter = 0
burst_limit = 0
shutdown_timeout = 2

[delivery]
pacing = false
retry_base = 0.2
retry_cap = 1
max_attempts = 50

[health]
enabled = false

[[sources]]
name = "archive"
url = "{archive.url}/feed/"
kind = "rss"
interval = 1

[[channels]]
name = "threads"
platform = "threads"
api_base = "{threads.url}"

[[subscriptions]]
tag = "MEK"
channels = ["threads"]
""")
    return path


def numbers(threads: FakeThreads) -> list[int]:
    return [int(m[1]) for text in threads.posted_texts() for m in [POST.search(text)] if m]


def secrets(threads: FakeThreads) -> list[str]:
    return [DEFAULT_TOKEN, *threads.refreshes]


def assert_no_secret(threads: FakeThreads, *texts: str) -> None:
    for text in texts:
        leaked = [s for s in secrets(threads) if s in text]
        assert not leaked, f"a token leaked: {text[:2000]}"


def cli(config: Path, threads: FakeThreads, *args: str) -> str:
    result = run_cli(config, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_secret(threads, result.stdout, result.stderr)
    return result.stdout


def test_run_once_posts_each_post_once_and_every_command_works(tmp_path: Path,
                                                               fakes: tuple[ArchiveServer, FakeThreads]) -> None:
    archive, threads = fakes
    archive.add_post(title="Before", tags=["MEK"], slug="post-0000")  # the baseline: never sent
    config = write_config(tmp_path, archive, threads)
    assert "posts as @" + USERNAME in cli(config, threads, "channels", "test", "threads")
    assert threads.containers == [] and threads.refreshes == []  # channels test sends and refreshes nothing
    cli(config, threads, "run", "--once")  # the first poll: the baseline
    for n in (1, 2, 3):
        archive.add_post(title=f"Post {n} 😀", tags=["MEK"] if n != 2 else ["Other"], slug=f"post-000{n}",
                         excerpt_html=f"<p>Excerpt {n} with www.example.org and https://docs.example.com/{n}</p>")
    result = run_cli(config, "run", "--once", "--log-format", "json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_secret(threads, result.stdout, result.stderr)
    assert any(json.loads(line).get("event") == "threads.token_refreshed" for line in result.stderr.splitlines())

    assert numbers(threads) == [1, 3]
    for n, post, container in zip((1, 3), threads.posts, threads.containers, strict=True):
        assert container.media_type == "TEXT" and post.container_id == container.id
        assert post.link_attachment is not None and post.link_attachment.startswith(archive.url)
        assert post.link_attachment.endswith(f"/post-000{n}/") and post.link_attachment in post.text
        assert post.text.startswith(f"Post {n} 😀\n\nExcerpt {n}")
        assert post.token == threads.refreshes[0]
    assert [r.path for r in threads.seen("POST")] == [CONTAINERS, PUBLISH, CONTAINERS, PUBLISH]

    token_file = tmp_path / "threads-threads.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    for db_file in tmp_path.glob("tagrelay.db*"):  # the database (and its WAL) holds no token
        content = db_file.read_bytes()
        assert not [s for s in secrets(threads) if s.encode() in content], db_file.name

    status = cli(config, threads, "status")
    assert "access token expires in 59 days" in status and "NOTES" in status
    as_json = json.loads(cli(config, threads, "status", "--json"))
    assert any("access token expires in" in n for n in as_json["notes"])
    rows = json.loads(cli(config, threads, "deliveries", "--json"))
    assert {r["status"] for r in rows} == {"sent"}
    assert {r["remote_url"] for r in rows} == {p.permalink for p in threads.posts}
    preview = json.loads(cli(config, threads, "preview", "MEK", "--channel", "threads", "--json"))
    assert preview[0]["text"] == threads.posts[-1].text and preview[0]["limit"] == 500
    assert "paused" in cli(config, threads, "channels", "pause", "threads", "--reason", "holiday").lower()
    assert "PAUSED" in cli(config, threads, "channels", "list")
    cli(config, threads, "channels", "resume", "threads")
    assert "PAUSED" not in cli(config, threads, "channels", "list")


class KillAt:
    """Kills the service when the first request for ``path`` arrives (and drops it), or, with ``answer``,
    once the post is made and its answer held."""

    def __init__(self, threads: FakeThreads, service: Service, path: str) -> None:
        self.threads, self.service, self.path = threads, service, path
        threads.on_request = self._on_request

    def _on_request(self, request: Request) -> object:
        if request.method == "POST" and request.path == self.path:
            self.threads.on_request = None
            self.service.kill_now()
            return DROP
        return None


@pytest.mark.parametrize("at", ["container", "publish", "answer"])
@pytest.mark.timeout(180)
def test_a_sigkill_at_any_step_of_a_post_never_posts_it_twice(tmp_path: Path, at: str,
                                                              fakes: tuple[ArchiveServer, FakeThreads]) -> None:
    archive, threads = fakes
    config = write_config(tmp_path, archive, threads)
    db = Db(config)
    service = Service(config).start()
    try:
        wait_until(db.baseline_done, 30, "the baseline")
        hold: threading.Event | None = None
        if at == "answer":  # the post is made, its answer held: the kill lands before the outcome is recorded
            hold = threading.Event()
            fault = Fault(hold=hold, process=True, match=PUBLISH)
            threads.add_fault(fault)
        else:
            KillAt(threads, service, CONTAINERS if at == "container" else PUBLISH)
        for n in (1, 2):
            archive.add_post(title=f"Post {n}", tags=["MEK"], slug=f"post-000{n}")
        if hold is not None:
            assert threads.wait_for(lambda: fault.times == 0 and threads.handled == len(threads.requests), 60), \
                service.tail()
            service.kill_now()
        code = service.wait(60)
        if hold is not None:
            hold.set()
        assert code < 0, f"the service exited by itself ({code}):\n{service.tail()}"
    finally:
        service.stop()
    # what the kill left: one delivery `sending`; what the platform holds depends on where it landed
    (staged,) = db.query("SELECT staged FROM deliveries WHERE status = 'sending'")
    made = {"container": (0, 0), "publish": (1, 0), "answer": (1, 1)}[at]
    assert (len(threads.containers), len(threads.posts)) == made
    assert (staged[0] is None) == (at == "container")  # the container id was committed before publishing

    restart = run_cli(config, "run", "--once")  # what a supervisor does: start again at once
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert numbers(threads) == [1, 2]  # each once
    assert set(db.statuses()) == {"sent"}
    assert len(threads.containers) == 2  # one per post: a staged container is reused, never remade
    staged = db.query("SELECT staged FROM deliveries ORDER BY id")
    assert all(value and value[0] for value in staged)


def test_on_postgresql_a_threads_channel_needs_a_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("THREADS_ACCESS_TOKEN", DEFAULT_TOKEN)
    monkeypatch.delenv("TAGRELAY_STORAGE_URL", raising=False)
    path = tmp_path / "tagrelay.toml"
    table = '[[channels]]\nname = "th"\nplatform = "threads"\n'
    path.write_text(f'[storage]\nurl = "postgresql+asyncpg://tagrelay@127.0.0.1:9/tagrelay"\n{table}')
    assert main(["--config", str(path), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "channels[0]" in err and "token_file" in err and DEFAULT_TOKEN not in err
    path.write_text(f'[storage]\nurl = "postgresql+asyncpg://tagrelay@127.0.0.1:9/tagrelay"\n{table}'
                    f'token_file = "{tmp_path / "th.token"}"\n')
    assert main(["--config", str(path), "config", "check"]) == 0
