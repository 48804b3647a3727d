"""Six platforms at once, end to end (issue 17, "Done when"): one channel each of Telegram, X, Mastodon, Bluesky,
Threads and Discord, every one pointed at its loopback fake, and the real ``tagrelay`` processes.

* ``tagrelay run`` (the service, as ``make run`` starts it, stopped with SIGTERM once the fakes hold what is
  expected): each post tagged for a channel arrives on it exactly once, in the platform's own shape — Telegram
  HTML, X within 280 weighted characters, Mastodon with an ``Idempotency-Key`` and the featured image described
  by its alt text, Bluesky with link and tag facets whose UTF-8 byte ranges cover what they claim and a link
  card (the image as its thumbnail), Threads as a container then its publication (an IMAGE post with its
  ``alt_text`` when the post has an image), Discord as an embed (with the image). ``channels test`` for each
  channel sends nothing and says whom it posts as; ``preview`` shows the six renderings, which are what was sent.
* SIGKILL while all six platforms hold the answer to the post they just made, then a restart: nothing is posted
  twice anywhere; Mastodon, X, Bluesky and Threads resolve the doubt themselves (``sent``), Telegram and Discord
  mark the delivery ``unknown``, and ``tagrelay status`` shows those two.

Secrets come from ``.env`` in the working directory, as in production, and none of them reaches a command's
output, a log line or the database.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from twitter_text import parse_tweet

from tests.e2e.service import Db, Service, run_cli, service_env, wait_until
from tests.fakes.archive import ArchiveServer
from tests.fakes.bluesky_api import (
    APP_PASSWORD,
    CREATE_RECORD,
    CREATE_SESSION,
    GET_RECORD,
    HANDLE,
    UPLOAD_BLOB,
    FakeBluesky,
)
from tests.fakes.discord_api import GUILD_ID, FakeDiscord
from tests.fakes.images import ImageServer, image_response, jpeg
from tests.fakes.mastodon_api import DEFAULT_TOKEN as MASTODON_TOKEN
from tests.fakes.mastodon_api import STATUSES, FakeMastodon
from tests.fakes.telegram_api import DEFAULT_CHANNEL_ID, FakeBotApi, Fault, ScriptedServer
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN
from tests.fakes.threads_api import CONTAINERS, PUBLISH, USERNAME, FakeThreads
from tests.fakes.threads_api import DEFAULT_TOKEN as THREADS_TOKEN
from tests.fakes.x_api import ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_SECRET, TWEETS, FakeX

PLATFORMS = {"tg": "telegram", "x": "x", "masto": "mastodon", "bsky": "bluesky", "threads": "threads",
             "dc": "discord"}
CHANNELS = tuple(PLATFORMS)
SUBSCRIPTIONS = {"MEK": CHANNELS, "Iraq": ("masto", "bsky", "threads"), "Editor’s picks": ("tg", "x", "dc")}
"""Tag → subscribed channels: one tag for all six, two for a subset each. A post tagged "Other" goes nowhere."""
POSTING = {"tg": "sendMessage", "x": TWEETS, "masto": STATUSES, "bsky": CREATE_RECORD, "threads": PUBLISH,
           "dc": "execute"}
"""The fault match key of each platform's request that makes the post."""
TITLE = "Protest in 🇮🇶 Baghdad: مرحبا & <Ashraf> café, live at https://example.org/live"
"""Emoji, Arabic, characters HTML escapes, a URL (a link facet on Bluesky, whose byte offsets the others shift)."""
ALT = "Protesters outside the embassy in Baghdad, seen from a rooftop"
SLUG = re.compile(r"/post-(\d{4})/")


@dataclass
class Six:
    """The archive, an image server and the six platform fakes, running in this process."""

    archive: ArchiveServer
    images: ImageServer
    telegram: FakeBotApi
    x: FakeX
    mastodon: FakeMastodon
    bluesky: FakeBluesky
    threads: FakeThreads
    discord: FakeDiscord

    @property
    def fakes(self) -> dict[str, ScriptedServer]:
        return {"tg": self.telegram, "x": self.x, "masto": self.mastodon, "bsky": self.bluesky,
                "threads": self.threads, "dc": self.discord}

    def secrets(self) -> list[str]:
        """Everything that must never leak, the tokens the fakes issued since included."""
        return [TELEGRAM_TOKEN, TELEGRAM_TOKEN.split(":", 1)[1], MASTODON_TOKEN, CONSUMER_SECRET, ACCESS_TOKEN,
                ACCESS_TOKEN_SECRET, *self.bluesky.live_secrets(), THREADS_TOKEN, *self.threads.refreshes,
                self.discord.webhook_url, self.discord.token]

    def made(self) -> dict[str, list[int]]:
        """Per channel, the number of the post each message the platform holds is about, in creation order."""
        def number(*texts: str | None) -> int:
            found = {int(m[1]) for text in texts if text for m in SLUG.finditer(text)}
            assert len(found) == 1, f"a message about {sorted(found) or 'no post'}: {texts}"
            return found.pop()

        with ExitStack() as locks:
            for fake in self.fakes.values():
                locks.enter_context(fake.lock)
            return {
                "tg": [number(m.text, m.caption) for m in self.telegram.messages if m.chat_id == DEFAULT_CHANNEL_ID],
                "x": [number(t.text) for t in self.x.tweets],
                "masto": [number(s.text) for s in self.mastodon.statuses],
                "bsky": [number(c.record["embed"]["external"]["uri"]) for c in self.bluesky.created],
                "threads": [number(p.link_attachment, p.text) for p in self.threads.posts],
                "dc": [number(m.embeds[0]["url"]) for m in self.discord.messages],
            }


@pytest.fixture
def six() -> Iterator[Six]:
    with ExitStack() as stack:
        yield Six(archive=stack.enter_context(ArchiveServer()), images=stack.enter_context(ImageServer()),
                  telegram=stack.enter_context(FakeBotApi()), x=stack.enter_context(FakeX()),
                  mastodon=stack.enter_context(FakeMastodon()), bluesky=stack.enter_context(FakeBluesky()),
                  threads=stack.enter_context(FakeThreads()), discord=stack.enter_context(FakeDiscord()))


def write_config(folder: Path, six: Six, *, timeout: float = 10.0) -> Path:
    """One channel per platform on its fake, pacing off, six channels delivering at once, no health server.
    The secrets the service environment does not carry (``service_env``: Telegram, Mastodon, X) go to ``.env``."""
    (folder / ".env").write_text(f"BLUESKY_APP_PASSWORD={APP_PASSWORD}\nTHREADS_ACCESS_TOKEN={THREADS_TOKEN}\n"
                                 f"DISCORD_WEBHOOK_URL={six.discord.webhook_url}\n", encoding="utf-8")
    subs = "\n".join(f'[[subscriptions]]\ntag = "{tag}"\nchannels = {json.dumps(list(chans))}\n'
                     for tag, chans in SUBSCRIPTIONS.items())
    path = folder / "tagrelay.toml"
    path.write_text(f"""
[storage]
url = "sqlite+aiosqlite:///{folder / 'tagrelay.db'}"

[http]
timeout = {timeout}

[service]
jitter = 0
burst_limit = 0
shutdown_timeout = 2

[delivery]
pacing = false
concurrency = 6
retry_base = 0.2
retry_cap = 1
max_attempts = 50

[health]
enabled = false

[[sources]]
name = "archive"
url = "{six.archive.url}/feed/"
kind = "rss"
interval = 1

[[channels]]
name = "tg"
platform = "telegram"
chat_id = "@tagrelay_test"
api_base = "{six.telegram.url}"
hashtags = true

[[channels]]
name = "x"
platform = "x"
api_base = "{six.x.url}"
hashtags = true
send_image = true

[[channels]]
name = "masto"
platform = "mastodon"
instance = "{six.mastodon.url}"
hashtags = true
language = "en"

[[channels]]
name = "bsky"
platform = "bluesky"
handle = "{HANDLE}"
service = "{six.bluesky.url}"
hashtags = true
langs = ["en"]

[[channels]]
name = "threads"
platform = "threads"
api_base = "{six.threads.url}"
send_image = true

[[channels]]
name = "dc"
platform = "discord"
api_base = "{six.discord.api_base}"
hashtags = true

{subs}
""", encoding="utf-8")
    return path


def assert_clean(six: Six, *texts: str) -> None:
    for text in texts:
        leaked = [s[:6] + "…" for s in six.secrets() if s in text]
        assert not leaked, f"secrets {leaked} in: {text[-2000:]}"


def cli(six: Six, config: Path, *args: str) -> str:
    done = run_cli(config, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_clean(six, done.stdout, done.stderr)
    return done.stdout


def spawn(config: Path, commands: list[tuple[str, ...]]) -> list[subprocess.Popen[str]]:
    """Start several short commands side by side, each a process of its own (``outputs`` collects them)."""
    return [subprocess.Popen([sys.executable, "-m", "bot", "--config", str(config), *args], cwd=config.parent,
                             env=service_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for args in commands]


def outputs(six: Six, procs: list[subprocess.Popen[str]]) -> list[str]:
    """Each command's output, in order, once it exited 0 with no secret in what it wrote."""
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{proc.args!r}: {err[-3000:]}"
        assert_clean(six, out, err)
        outs.append(out)
    return outs


def expected(posts: dict[int, tuple[str, ...]]) -> dict[str, list[int]]:
    """Per channel, the posts (by number, oldest first) its subscriptions route to it: each exactly once.
    (A tag matches by its slug: ``Editor's`` is ``Editor’s``.)"""
    def routed(chan: str, tags: tuple[str, ...]) -> bool:
        return any(chan in SUBSCRIPTIONS.get(tag.replace("'", "’"), ()) for tag in tags)

    return {chan: [n for n, tags in sorted(posts.items()) if routed(chan, tags)] for chan in CHANNELS}


def settle(predicate: Callable[[], bool], timeout: float, what: str, six: Six, db: Db, service: Service) -> None:
    """``wait_until``, and on a timeout what the platforms and the database hold, and the service's last words."""
    try:
        wait_until(predicate, timeout, what)
    except AssertionError as exc:
        rows = db.query("SELECT c.name, d.status, d.last_error FROM deliveries d "
                        "JOIN channels c ON c.id = d.channel_id")
        raise AssertionError(f"{exc}\nmade: {six.made()}\ndeliveries: {rows}\n{service.tail(40)}") from None


def posting(six: Six, chan: str) -> int:
    """How many requests to make a post reached the channel's platform."""
    fake = six.fakes[chan]
    with fake.lock:
        return sum(1 for r in fake.requests if fake.route_key(r) == POSTING[chan] and r.method == "POST")


def byte_slice(text: str, index: dict[str, int]) -> str:
    return text.encode("utf-8")[index["byteStart"]:index["byteEnd"]].decode("utf-8")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_service_delivers_each_post_once_on_six_platforms_in_each_ones_shape(tmp_path: Path, six: Six) -> None:
    archive = six.archive
    archive.add_post(title="Before the first poll", tags=["MEK"], slug="post-0000")  # the baseline: never sent
    config = write_config(tmp_path, six)

    # the service starts; side by side, channels test: a read-only call per platform, nothing sent
    db = Db(config)
    service = Service(config).start()
    try:
        tests = spawn(config, [("channels", "test", chan) for chan in CHANNELS])
        tested = dict(zip(CHANNELS, outputs(six, tests), strict=True))
        wait_until(db.baseline_done, 30, "the first poll (the baseline)")
        assert {chan: out.split(":", 1)[0] for chan, out in tested.items()} == \
            {chan: f"{chan} ({platform})" for chan, platform in PLATFORMS.items()}
        assert all(": OK, posts as " in out for out in tested.values()), tested
        assert f"@{HANDLE}" in tested["bsky"] and f"@{USERNAME}" in tested["threads"] and "tagrelay" in tested["dc"]
        assert "@tagrelay_test" in tested["tg"] and "@tagrelay_test" in tested["x"]
        assert {chan: posts for chan, posts in six.made().items() if posts} == {}
        writes = {(chan, fake.route_key(r)) for chan, fake in six.fakes.items() for r in fake.requests
                  if r.method != "GET"}
        assert writes <= {("tg", "getMe"), ("tg", "getChat"), ("bsky", CREATE_SESSION)}, writes  # reads, a login
        assert not (six.mastodon.media or six.x.media or six.bluesky.blobs or six.threads.containers)
        assert not six.threads.refreshes

        picture = six.images.serve("/uploads/embassy.jpg", image_response(jpeg(800, 600)))
        posts = {
            1: ("MEK", "Iraq"),  # all six, once each however many of its tags match
            2: ("Editor's picks",),  # a straight apostrophe matches the subscription's curly one
            3: ("Iraq",),
            4: ("Other",),  # nowhere
            5: ("MEK",),
        }
        archive.add_post(title=TITLE, tags=list(posts[1]), slug="post-0001",
                         image=picture, image_alt=ALT,
                         excerpt_html="<p>Thousands marched; live updates at https://example.org/live today.</p>")
        archive.add_post(title="A very long headline about the residents of Camp Ashraf " * 5, tags=list(posts[2]),
                         slug="post-0002", excerpt_html="<p>" + "Word " * 200 + "</p>")
        archive.add_post(title="Iraq only", tags=list(posts[3]), slug="post-0003")
        archive.add_post(title="Nothing subscribes to this", tags=list(posts[4]), slug="post-0004")
        archive.add_post(title="The latest #MEK post", tags=list(posts[5]), slug="post-0005")
        want = expected(posts)
        settle(lambda: six.made() == want and set(db.statuses()) == {"sent"}, 45,
               "every post on every subscribed channel, recorded sent", six, db, service)
        service.signal(signal.SIGTERM)
        assert service.wait(20) == 0, service.tail()
    finally:
        service.stop()
    for event in service.events:
        assert_clean(six, json.dumps(event))
    # no image skipped, no retry, no plain fallback, no error: everything went through the first time
    assert not [e for e in service.events if e.get("level") in ("error", "critical", "warning")], service.tail()

    # exactly once each, and nothing for "Other"
    made = six.made()
    assert made == want and all(count == 1 for chan in CHANNELS for count in Counter(made[chan]).values())
    link = {n: p.link(archive.site) for n, p in zip(range(6), archive.posts, strict=True)}

    # Telegram: HTML, the title in bold with the archive's characters escaped; the first try was accepted
    tg = six.telegram.messages
    assert [m.method for m in tg] == ["sendMessage"] * 3 and {m.parse_mode for m in tg} == {"HTML"}
    assert tg[0].text is not None and tg[0].text.startswith(
        "<b>Protest in 🇮🇶 Baghdad: مرحبا &amp; &lt;Ashraf&gt; café, live at https://example.org/live</b>")
    assert all(link[n] in (m.text or "") for n, m in zip(want["tg"], tg, strict=True))
    assert "#MEK" in (tg[0].text or "") and posting(six, "tg") == 3  # none refused, none sent plain

    # X: within 280 weighted characters (the long post cut to fit), the link whole
    for n, tweet in zip(want["x"], six.x.tweets, strict=True):
        parsed = parse_tweet(tweet.text)
        assert parsed.valid and parsed.weightedLength <= 280, (n, parsed.weightedLength)
        assert link[n] in tweet.text
    assert "…" in six.x.tweets[1].text and parse_tweet(six.x.tweets[1].text).weightedLength > 250
    assert six.x.auth_failures == [] and [len(t.media_ids) for t in six.x.tweets] == [1, 0, 0]
    assert six.x.media[six.x.tweets[0].media_ids[0]].alt_text == ALT

    # Mastodon: an Idempotency-Key on each status (one per delivery), the image described by its alt text
    statuses = six.mastodon.statuses
    keys = [s.idempotency_key for s in statuses]
    assert all(keys) and len(set(keys)) == 3
    assert [len(s.media_ids) for s in statuses] == [1, 0, 0]
    assert six.mastodon.media[statuses[0].media_ids[0]].description == ALT
    assert {s.language for s in statuses} == {"en"} and all(link[n] in s.text
                                                            for n, s in zip(want["masto"], statuses, strict=True))

    # Bluesky: facets whose byte ranges hold what they say, a link card, the image as its thumbnail
    records = [c.record for c in six.bluesky.created]
    for n, record in zip(want["bsky"], records, strict=True):
        card = record["embed"]["external"]
        assert record["embed"]["$type"] == "app.bsky.embed.external" and card["uri"] == link[n]
        assert card["title"] == archive.posts[n].title and record["langs"] == ["en"]
        for facet in record.get("facets", []):
            (feature,) = facet["features"]
            covered = byte_slice(record["text"], facet["index"])
            if feature["$type"] == "app.bsky.richtext.facet#tag":
                assert covered == "#" + feature["tag"], (covered, feature)
            else:
                assert feature["$type"] == "app.bsky.richtext.facet#link" and covered == feature["uri"], feature
    first, third, fifth = records
    tags = {f["features"][0].get("tag") for f in first["facets"]}
    assert {"MEK", "Iraq"} <= tags  # the hashtags are live
    assert any(f["features"][0].get("uri") == "https://example.org/live" for f in first["facets"])
    thumb = first["embed"]["external"]["thumb"]
    assert thumb["mimeType"] == "image/jpeg" and thumb["ref"]["$link"] in six.bluesky.blobs
    assert "thumb" not in third["embed"]["external"] and "thumb" not in fifth["embed"]["external"]
    assert first["text"].startswith(TITLE)
    title_tag = fifth["facets"][0]  # "#MEK" in the title is a tag too, not only the appended hashtags
    assert title_tag["index"]["byteStart"] == fifth["text"].encode().index(b"#MEK") and \
        title_tag["features"][0]["tag"] == "MEK"

    # Threads: every post a container, then its publication; an IMAGE post with its alt text, else TEXT + link
    assert [r.path for r in six.threads.seen("POST")] == [CONTAINERS, PUBLISH] * 3
    for n, post, container in zip(want["threads"], six.threads.posts, six.threads.containers, strict=True):
        assert post.container_id == container.id
        if n == 1:
            assert (post.media_type, post.image_url, post.alt_text) == ("IMAGE", picture, ALT)
            assert link[n] in post.text
        else:
            assert (post.media_type, post.link_attachment) == ("TEXT", link[n])

    # Discord: one embed, the title linked to the post, the image in it; wait=true, so the id is recorded
    for n, message in zip(want["dc"], six.discord.messages, strict=True):
        (embed,) = message.embeds
        assert embed["url"] == link[n] and embed["footer"] == {"text": "archive"} and message.pinged == []
        assert ("image" in embed) == (n == 1)
    assert six.discord.messages[0].embeds[0]["image"] == {"url": picture}
    assert all(r.arg("wait") == "true" for r in six.discord.seen("POST"))
    remote = {r[0]: r[1] for r in db.query("SELECT c.name, d.remote_url FROM deliveries d "
                                           "JOIN channels c ON c.id = d.channel_id WHERE d.status = 'sent'")}
    assert remote["dc"].startswith(f"https://discord.com/channels/{GUILD_ID}/")
    assert set(remote) == set(CHANNELS)

    # preview: the six renderings of the tag's latest post, each what its platform received
    shown = cli(six, config, "preview", "MEK")
    headers = re.findall(r"^── (\S+) \((\w+), (\w+)\) — (\d+)/(\d+) characters, (fits|TOO LONG)$", shown, re.M)
    assert sorted((chan, platform) for chan, platform, *_ in headers) == sorted(PLATFORMS.items()), shown
    assert all(verdict == "fits" and int(length) <= int(limit) for *_, length, limit, verdict in headers), shown
    for text in (six.telegram.messages[-1].text or "", six.x.tweets[-1].text, six.mastodon.statuses[-1].text,
                 six.bluesky.created[-1].record["text"], six.threads.posts[-1].text):
        assert text in shown, (text, shown)
    assert six.discord.messages[-1].embeds[0]["title"] in shown and link[5] in shown
    bluesky = shown.split("── bsky (bluesky,", 1)[1].split("\n── ", 1)[0]  # its text leaves the link to the card
    assert f"link: {link[5]} (on the link card, not in the text)" in bluesky, bluesky

    for path in tmp_path.iterdir():  # the database (and its WAL): no secret
        if path.name.startswith("tagrelay.db"):
            data = path.read_bytes()
            assert not [s[:6] for s in six.secrets() if s.encode() in data], path.name


def held(fake: ScriptedServer, fault: Fault) -> bool:
    """The fake made the post and holds its answer, and nothing else to it is in flight."""
    return fault.times == 0 and fake.handled == len(fake.requests)


GROUPED = ("masto", "x", "bsky")
"""The channels whose platform deduplicates: they claim their posts in groups."""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_sigkill_while_all_six_hold_their_answer_posts_nothing_twice(tmp_path: Path, six: Six) -> None:
    archive = six.archive
    config = write_config(tmp_path, six, timeout=30)  # longer than the kill takes: no answer times out first
    db = Db(config)
    picture = six.images.serve("/uploads/embassy.jpg", image_response(jpeg(800, 600)))
    service = Service(config).start()
    faults = {chan: Fault(hold=threading.Event(), process=True, match=POSTING[chan]) for chan in CHANNELS}
    try:
        wait_until(db.baseline_done, 30, "the first poll (the baseline)")
        for chan, fault in faults.items():
            six.fakes[chan].add_fault(fault)  # the post is made; its answer waits
        archive.add_post(title="Posted once", tags=["MEK"], slug="post-0001", image=picture, image_alt=ALT)
        archive.add_post(title="Posted after the restart", tags=["MEK"], slug="post-0002")
        wait_until(lambda: all(held(six.fakes[c], f) for c, f in faults.items()), 45,
                   "all six platforms to make the first post and hold their answers")
        assert six.made() == {chan: [1] for chan in CHANNELS}
        service.kill_now()
        assert service.wait(30) == -signal.SIGKILL, service.tail()
    finally:
        for fault in faults.values():
            assert fault.hold is not None
            fault.hold.set()  # the answers the dead service never read
        service.stop()
    # Mastodon, X and Bluesky deduplicate: each claimed both posts in one group (docs/delivery.md, "Claimed
    # groups"); the other three commit one claim before each send
    assert Counter((c, s) for _, c, _, s, _ in db.deliveries()) == \
        Counter({**{(c, "sending"): 2 for c in GROUPED}, **{(c, "sending"): 1 for c in CHANNELS if c not in GROUPED},
                 **{(c, "queued"): 1 for c in CHANNELS if c not in GROUPED}})

    final = {"tg": "unknown", "dc": "unknown", "x": "sent", "masto": "sent", "bsky": "sent", "threads": "sent"}
    again = Service(config).start()
    try:
        def settled() -> bool:
            rows = db.deliveries()
            return sorted((c, s) for _, c, url, s, _ in rows if "/post-0001/" in url) == sorted(final.items()) \
                and {s for _, _, url, s, _ in rows if "/post-0002/" in url} == {"sent"} and len(rows) == 12
        settle(settled, 45, "the restart to settle every delivery", six, db, again)
        again.wait_event("recovered", 10, requeued=7, unknown=2)  # tg and dc in doubt; the others ask
        again.signal(signal.SIGTERM)
        assert again.wait(20) == 0, again.tail()
    finally:
        again.stop()
    for event in again.events:
        assert_clean(six, json.dumps(event))

    # each platform holds each post once: the first one made before the kill, the second after the restart
    assert six.made() == {chan: [1, 2] for chan in CHANNELS}
    # how each one knew: Mastodon's key returned the first status, X refused the duplicate, Bluesky read the
    # record back, Threads asked its staged container; Telegram and Discord were not asked again at all
    assert six.mastodon.idempotent_replays == 1 and len(six.mastodon.seen("POST", STATUSES)) == 3
    assert len(six.x.seen("POST", TWEETS)) == 3 and len(six.x.tweets) == 2
    assert len(six.bluesky.seen("POST", CREATE_RECORD)) == 2 and len(six.bluesky.seen("GET", GET_RECORD)) == 3
    assert len(six.threads.containers) == 2 and len(six.threads.seen("POST", PUBLISH)) == 2
    assert posting(six, "tg") == 2 and posting(six, "dc") == 2
    reasons = dict(db.query("SELECT c.name, d.last_error FROM deliveries d JOIN channels c ON c.id = d.channel_id "
                            "WHERE d.status = 'unknown'"))
    assert sorted(reasons) == ["dc", "tg"] and all("interrupted" in str(r) for r in reasons.values()), reasons
    # the first post kept its image where the platform takes one, and a second upload left nothing behind
    masto_first = six.mastodon.statuses[0]
    assert [six.mastodon.media[m].description for m in masto_first.media_ids] == [ALT]
    assert [m.id for m in six.mastodon.media.values() if not m.deleted and m.status_id is None] == []
    assert six.threads.posts[0].alt_text == ALT and "thumb" in six.bluesky.created[0].record["embed"]["external"]
    assert six.x.media[six.x.tweets[0].media_ids[0]].alt_text == ALT  # X's second upload is left to expire
    uploads = list(six.mastodon.media.values())  # the restart uploaded again; the key returned the first status
    assert len(uploads) == 2 and uploads[1].deleted and uploads[0].status_id == masto_first.id
    assert len(six.bluesky.seen("POST", UPLOAD_BLOB)) == 1  # read back before anything was uploaded again
    assert six.bluesky.logins == 2  # one session per process, none per post

    # status: the two in doubt, by channel, for an admin to check (and its hint finds them)
    text, listing = outputs(six, spawn(config, [("status",), ("deliveries", "--status", "unknown", "--json")]))
    table = text.split("\nCHANNELS\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert table[0].split()[8] == "UNKNOWN", text
    assert {row.split()[0]: row.split()[8] for row in table[1:]} == {"tg": "1", "x": "0", "masto": "0", "bsky": "0",
                                                                    "threads": "0", "dc": "1"}, text
    problems = [line for line in text.split("\nPROBLEMS\n", 1)[1].splitlines() if line.startswith("  ! ")]
    assert sorted(p[4:].split(":", 1)[0] for p in problems) == ["channel dc", "channel tg"], text
    assert "2 PROBLEMS" in text and all("0 dead, 1 unknown deliveries need a look" in p for p in problems), text
    assert all(p.endswith("(tagrelay deliveries --status unknown)") for p in problems), problems
    assert sorted(d["channel"] for d in json.loads(listing)) == ["dc", "tg"]  # what that hint lists
