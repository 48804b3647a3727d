"""Discord channels through the real CLI and service processes, against ``FakeDiscord`` on loopback.

* ``tagrelay run --once``: every post tagged for a Discord channel arrives once, as one embed (title
  linked to the post, excerpt, image, time, source) or, on a forum channel, as a thread of its own;
  markdown and mentions in the archive's text are shown, never obeyed; nothing twice on the next run.
* ``channels test`` reads the webhook and sends nothing; ``preview``, ``status``, ``channels
  pause``/``resume`` work for the channel; the webhook URL is in none of their outputs, the logs or
  the database file.
* SIGKILL while Discord holds the answer to a message it made, then a restart: the delivery is
  ``unknown`` and nothing is posted twice; with ``at_least_once = true`` it is resent (the price: a
  duplicate). The secret comes from ``.env`` in the working directory, as in production.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.service import Db, Service, service_env, wait_until
from tests.fakes.archive import ArchiveServer
from tests.fakes.discord_api import GUILD_ID, FakeDiscord

SUBSCRIPTIONS = {"MEK": ("news-dc", "forum-dc"), "Iraq": ("news-dc",)}


@dataclass
class Setup:
    archive: ArchiveServer
    discord: FakeDiscord
    forum: FakeDiscord
    config: Path

    @property
    def secrets(self) -> list[str]:
        return [self.discord.webhook_url, self.discord.token, self.forum.webhook_url]


def write_config(folder: Path, archive: ArchiveServer, discord: FakeDiscord, forum: FakeDiscord, *,
                 at_least_once: bool = False) -> Path:
    (folder / ".env").write_text(f"DISCORD_WEBHOOK_URL={discord.webhook_url}\n"
                                 f"DISCORD_FORUM_WEBHOOK={forum.webhook_url}\n", encoding="utf-8")
    subs = "\n".join(f'[[subscriptions]]\ntag = "{tag}"\nchannels = {json.dumps(list(chans))}\n'
                     for tag, chans in SUBSCRIPTIONS.items())
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
name = "news-dc"
platform = "discord"
api_base = "{discord.api_base}"
hashtags = true
at_least_once = {json.dumps(at_least_once)}

[[channels]]
name = "forum-dc"
platform = "discord"
webhook_url_env = "DISCORD_FORUM_WEBHOOK"
api_base = "{forum.api_base}"
forum = true
mode = "content"

{subs}
""", encoding="utf-8")
    return path


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with ExitStack() as stack:
        archive = stack.enter_context(ArchiveServer())
        discord = stack.enter_context(FakeDiscord())
        forum = stack.enter_context(FakeDiscord(forum=True))
        yield Setup(archive, discord, forum, write_config(tmp_path, archive, discord, forum))


def cli(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    """One CLI command as a process in the config's folder (so it reads the ``.env`` there)."""
    result = subprocess.run([sys.executable, "-m", "bot", "--config", str(setup.config), *args],
                            cwd=setup.config.parent, env=service_env(), capture_output=True, text=True, timeout=60,
                            check=False)
    for secret in setup.secrets:
        assert secret not in result.stdout and secret not in result.stderr
    return result


def assert_no_secret_in_files(setup: Setup) -> None:
    for path in setup.config.parent.iterdir():
        if path.name.startswith("tagrelay.db"):
            data = path.read_bytes()
            for secret in setup.secrets:
                assert secret.encode() not in data, path.name


def test_run_once_delivers_each_post_once_with_the_right_shape(setup: Setup) -> None:
    archive, discord, forum = setup.archive, setup.discord, setup.forum
    archive.add_post(title="Before the first poll", tags=["MEK"])
    assert cli(setup, "run", "--once").returncode == 0  # the baseline: nothing sent
    assert discord.messages == [] and forum.messages == []

    rally = archive.add_post(title="MEK rally in **Paris** @everyone", tags=["MEK", "Editor’s picks"],
                             excerpt_html="<p>Thousands [marched](https://evil.example) again &lt;@&amp;123&gt;.</p>",
                             image="https://archive.example/uploads/rally.jpg")
    iraq = archive.add_post(title="Baghdad protest", tags=["Iraq"])
    archive.add_post(title="Unrelated", tags=["Other"])
    done = cli(setup, "run", "--once")
    assert done.returncode == 0, done.stderr

    by_url = {m.embeds[0]["url"]: m for m in discord.messages}
    assert set(by_url) == {rally.link(archive.site), iraq.link(archive.site)} and len(discord.messages) == 2
    embed = by_url[rally.link(archive.site)].embeds[0]
    assert embed["title"] == "MEK rally in \\*\\*Paris\\*\\* @everyone"
    assert embed["description"].startswith("Thousands \\[marched\\](https://evil.example) again \\<@&123\\>.")
    assert "\\#MEK \\#EditorsPicks" in embed["description"]
    assert embed["image"] == {"url": "https://archive.example/uploads/rally.jpg"}
    assert embed["footer"] == {"text": "archive"} and embed["timestamp"].endswith("+00:00")
    assert all(m.pinged == [] and m.allowed_mentions == {"parse": []} for m in discord.messages)
    [thread] = forum.messages  # the forum channel is subscribed to MEK only
    assert thread.thread_name == "MEK rally in **Paris** @everyone" and thread.embeds == []
    assert rally.link(archive.site) in thread.content and thread.pinged == []

    again = cli(setup, "run", "--once")
    assert again.returncode == 0 and len(discord.messages) == 2 and len(forum.messages) == 1
    rows = json.loads(cli(setup, "deliveries", "--json").stdout)
    assert sorted((r["channel"], r["status"]) for r in rows) == [("forum-dc", "sent"), ("news-dc", "sent"),
                                                                ("news-dc", "sent")]
    urls = {r["remote_url"] for r in rows if r["channel"] == "news-dc"}
    assert urls == {f"https://discord.com/channels/{GUILD_ID}/{m.channel_id}/{m.id}" for m in discord.messages}
    assert_no_secret_in_files(setup)


def test_channels_test_preview_status_and_pause_resume(setup: Setup) -> None:
    archive, discord = setup.archive, setup.discord
    tested = cli(setup, "channels", "test", "news-dc")
    assert tested.returncode == 0, tested.stderr
    assert "OK, posts as" in tested.stdout and "webhook 'tagrelay'" in tested.stdout
    assert {r.method for r in discord.requests} == {"GET"} and discord.messages == []  # read-only

    assert cli(setup, "run", "--once").returncode == 0
    post = archive.add_post(title="Q&A: <script> and `code`", tags=["Iraq"])
    assert cli(setup, "channels", "pause", "news-dc", "--reason", "moving servers").returncode == 0
    assert cli(setup, "run", "--once").returncode == 0
    assert discord.messages == []  # paused: kept, not sent
    status = cli(setup, "status", "--json")
    channels = {c["name"]: c for c in json.loads(status.stdout)["channels"]}
    assert channels["news-dc"]["paused"] and "moving servers" in json.dumps(channels["news-dc"])

    preview = cli(setup, "preview", "Iraq", "--channel", "news-dc", "--json")
    [item] = json.loads(preview.stdout)
    assert item["platform"] == "discord" and item["format"] == "markdown" and item["length"] <= item["limit"]
    assert "Q&A: \\<script\\> and \\`code\\`" in item["text"] and post.link(archive.site) in item["text"]

    assert cli(setup, "channels", "resume", "news-dc").returncode == 0
    assert cli(setup, "run", "--once").returncode == 0
    [message] = discord.messages
    assert message.embeds[0]["title"] == "Q&A: \\<script\\> and \\`code\\`"
    assert_no_secret_in_files(setup)


def test_a_missing_or_malformed_webhook_url_is_a_config_error_naming_the_variable(setup: Setup) -> None:
    env_file = setup.config.parent / ".env"
    env_file.write_text(f"DISCORD_FORUM_WEBHOOK={setup.forum.webhook_url}\n", encoding="utf-8")
    missing = cli(setup, "channels", "test", "news-dc")
    assert missing.returncode == 2 and "news-dc" in missing.stderr and "DISCORD_WEBHOOK_URL" in missing.stderr
    env_file.write_text(f"DISCORD_WEBHOOK_URL={setup.discord.webhook_url}/extra\n"
                        f"DISCORD_FORUM_WEBHOOK={setup.forum.webhook_url}\n", encoding="utf-8")
    bad = cli(setup, "run", "--once")
    assert bad.returncode == 2 and "DISCORD_WEBHOOK_URL" in bad.stderr
    assert setup.discord.requests == []


@pytest.mark.parametrize("at_least_once", [False, True])
def test_sigkill_while_discord_holds_the_answer(tmp_path: Path, at_least_once: bool) -> None:
    """The message is made, its answer never reaches the service (SIGKILL), the service restarts at once."""
    with ArchiveServer() as archive, FakeDiscord() as discord, FakeDiscord(forum=True) as forum:
        config = write_config(tmp_path, archive, discord, forum, at_least_once=at_least_once)
        db = Db(config)
        service = Service(config).start()
        try:
            wait_until(db.baseline_done, 30, "the first poll")
            hold = discord.hold_next("execute")
            post = archive.add_post(title="Ambiguous post", tags=["Iraq"])
            assert discord.wait_for(lambda: discord.pending_faults == 0 and discord.handled == len(discord.requests),
                                    30), service.tail()
            assert [m.embeds[0]["url"] for m in discord.messages] == [post.link(archive.site)]
            service.kill_now()
            assert service.wait(30) == -signal.SIGKILL
        finally:
            service.stop()
        hold.set()  # the answer the dead service never read

        again = Service(config).start()
        try:
            final = "sent" if at_least_once else "unknown"
            wait_until(lambda: [d[3] for d in db.deliveries()] == [final], 30, f"the delivery to become {final}")
            again.wait_event("recovered", 10)
            again.signal(signal.SIGTERM)
            assert again.wait(20) == 0, again.tail()
        finally:
            again.stop()
        posts = len(discord.seen("POST"))
        if at_least_once:
            assert len(discord.messages) == 2 and posts == 2  # resent: at least once, the price a duplicate
        else:
            assert len(discord.messages) == 1 and posts == 1  # never resent: at most once
            [row] = db.query("SELECT last_error FROM deliveries")
            assert "interrupted" in str(row[0])
        for event in again.events:
            text = json.dumps(event)
            assert discord.token not in text and discord.webhook_url not in text
