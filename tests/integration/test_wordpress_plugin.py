"""The WordPress must-use plugin (contrib/wordpress/tagrelay-push.php): ``php -l`` passes, and the requests it
hands to ``wp_remote_post()`` on ``transition_post_status`` are accepted by the running service's hook and
poll the source. php-cli runs the plugin itself, with stand-ins for the few WordPress functions it calls
(tests/data/wordpress/harness.php), so the request format tested here is the plugin's own.

Without ``php`` on the PATH these tests are SKIPPED, loudly (install it: ``apt-get install -y php-cli``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Secrets
from tests.fakes.archive import ArchiveServer
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeBotApi
from tests.push_support import Running, eventually, make_config, serving

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "contrib" / "wordpress" / "tagrelay-push.php"
HARNESS = ROOT / "tests" / "data" / "wordpress" / "harness.php"
SECRET = "wordpress-push-secret-0123456789"
SECRETS = Secrets(environ={"ARCHIVE_PUSH_SECRET": SECRET, "TG_BOT_TOKEN": DEFAULT_TOKEN})


def php() -> str:
    found = shutil.which("php")
    if found is None:
        # the reason is in every run's summary (addopts: -ra), and .ci/run prints a banner of its own
        pytest.skip("!!! PHP IS NOT INSTALLED: contrib/wordpress/tagrelay-push.php IS NOT LINTED OR RUN "
                    "(apt-get install -y php-cli) !!!")
    return found


def run_plugin(transitions: list[dict[str, Any]], *, url: str | None, secret: str | None = SECRET) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGRELAY_PUSH_")}
    if url is not None:
        env["TAGRELAY_PUSH_URL"] = url
    if secret is not None:
        env["TAGRELAY_PUSH_SECRET"] = secret
    done = subprocess.run([php(), str(HARNESS)], input=json.dumps(transitions), capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0 and not done.stderr, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def post(post_id: int, *, post_type: str = "post", **flags: Any) -> dict[str, Any]:
    return {"ID": post_id, "post_type": post_type, "permalink": f"https://site.example/?p={post_id}", **flags}


def test_the_plugin_passes_php_lint() -> None:
    done = subprocess.run([php(), "-l", str(PLUGIN)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No syntax errors detected" in done.stdout


def test_the_plugin_pushes_publish_update_and_unpublish_once_each_and_nothing_else() -> None:
    transitions = [
        {"new": "publish", "old": "draft", "post": post(1)},        # first publication
        {"new": "publish", "old": "draft", "post": post(1)},        # the block editor's second save: once
        {"new": "publish", "old": "publish", "post": post(2)},      # an update of a published post
        {"new": "trash", "old": "publish", "post": post(3)},        # unpublished
        {"new": "private", "old": "publish", "post": post(4)},      # unpublished too
        {"new": "draft", "old": "draft", "post": post(5)},          # never public: nothing
        {"new": "publish", "old": "future", "post": post(6)},       # a scheduled post goes out
        {"new": "publish", "old": "draft", "post": post(7, post_type="page")},       # not a chosen type
        {"new": "publish", "old": "publish", "post": post(8, revision=True)},       # a revision
        {"new": "publish", "old": "publish", "post": post(9, autosave=True)},       # an autosave
    ]
    result = run_plugin(transitions, url="https://relay.example.org/hooks/archive")
    assert result["actions"] == [{"priority": 10, "accepted_args": 3}]
    sent = [(s["url"], json.loads(s["args"]["body"])) for s in result["sent"]]
    assert [(body["post_id"], body["event"]) for _, body in sent] == [
        (1, "publish"), (2, "update"), (3, "unpublish"), (4, "unpublish"), (6, "publish")]
    assert {url for url, _ in sent} == {"https://relay.example.org/hooks/archive"}
    for item in result["sent"]:
        args = item["args"]
        assert args["method"] == "POST" and args["blocking"] is False  # never makes the editor wait
        assert 0 < args["timeout"] <= 5 and args["redirection"] == 0
        assert set(args["headers"]) == {"Content-Type", "X-Tagrelay-Timestamp", "X-Tagrelay-Signature"}
        assert SECRET not in json.dumps(item)


def test_without_its_constants_the_plugin_does_nothing() -> None:
    transitions = [{"new": "publish", "old": "draft", "post": post(1)}]
    assert run_plugin(transitions, url=None)["sent"] == []
    assert run_plugin(transitions, url="https://relay.example.org/hooks/archive", secret=None)["sent"] == []


# -- against the running service --------------------------------------------------------------------------


@pytest.fixture
def archive() -> Iterator[ArchiveServer]:
    with ArchiveServer() as server:
        server.add_post(title="Old MEK", tags=["MEK"])
        yield server


@pytest.fixture
async def service(tmp_path: Path, archive: ArchiveServer) -> AsyncIterator[tuple[Running, FakeBotApi]]:
    php()
    with FakeBotApi() as telegram:
        raw = {
            "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'tagrelay.db'}"},
            "service": {"jitter": 0},
            "delivery": {"pacing": False},
            "health": {"host": "127.0.0.1", "port": 0},
            "push": {"min_gap": "0.2s"},
            "sources": [{"name": "archive", "url": archive.url + "/feed/", "kind": "rss", "interval": "1h",
                         "push_secret_env": "ARCHIVE_PUSH_SECRET"}],
            "channels": [{"name": "tg", "platform": "telegram", "chat_id": "@tagrelay_test",
                          "api_base": telegram.url, "token_env": "TG_BOT_TOKEN"}],
            "subscriptions": [{"tag": "MEK", "channels": ["tg"]}],
        }
        async with serving(make_config(raw, SECRETS), SECRETS) as running:
            async def baselined() -> bool:
                return (await running.app.store.source("archive")).baseline_done

            await eventually(baselined, "the first poll")
            yield running, telegram


async def test_the_plugins_requests_are_accepted_and_deliver_the_post(
        service: tuple[Running, FakeBotApi], archive: ArchiveServer) -> None:
    running, telegram = service
    new = archive.add_post(title="Published in WordPress", tags=["MEK"])
    result = run_plugin([
        {"new": "publish", "old": "draft", "post": post(new.id) | {"permalink": new.link(archive.url)}},
        {"new": "publish", "old": "publish", "post": post(new.id)},
        {"new": "trash", "old": "publish", "post": post(99)},
    ], url=f"{running.url}/hooks/archive")
    assert len(result["sent"]) == 3
    for item in result["sent"]:  # exactly what wp_remote_post() would send
        args = item["args"]
        answer = await running.client.post(item["url"], content=args["body"].encode(), headers=args["headers"])
        assert answer.status_code == 202, answer.text
    await eventually(lambda: any("Published in WordPress" in (m.text or "") for m in telegram.messages),
                     "the post the plugin pushed")
    # the same request again is a replay; a changed body is refused
    first = result["sent"][0]
    again = await running.client.post(first["url"], content=first["args"]["body"].encode(),
                                      headers=first["args"]["headers"])
    assert again.status_code == 409
    forged = await running.client.post(first["url"], content=first["args"]["body"].replace("publish", "update"),
                                       headers=first["args"]["headers"])
    assert forged.status_code == 401
    # two saves of one post in two PHP requests within one second are two calls, not a replay (the nonce)
    twice = [run_plugin([{"new": "publish", "old": "publish", "post": post(new.id)}],
                        url=f"{running.url}/hooks/archive")["sent"][0] for _ in range(2)]
    assert json.loads(twice[0]["args"]["body"])["nonce"] != json.loads(twice[1]["args"]["body"])["nonce"]
    for item in twice:
        answer = await running.client.post(item["url"], content=item["args"]["body"].encode(),
                                           headers=item["args"]["headers"])
        assert answer.status_code == 202, answer.text
    wrong = run_plugin([{"new": "publish", "old": "draft", "post": post(5)}], url=f"{running.url}/hooks/archive",
                       secret="not-the-configured-secret-0123")["sent"][0]
    refused = await running.client.post(wrong["url"], content=wrong["args"]["body"].encode(),
                                        headers=wrong["args"]["headers"])
    assert refused.status_code == 401
