"""Subscription rules through the admin bot: the phone syntax, the "exclude a tag" button, /explain and
/preview verdicts, every change audited. The real python-telegram-bot ``Application`` inside the real
``App``, against the loopback Bot API fake (the harness of test_admin_bot)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.rule_syntax import describe
from tests.integration.test_admin_bot import ALICE, Harness, running


@pytest.fixture
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.chdir(tmp_path)
    for var in ("TAGRELAY_STORAGE_URL", "TAGRELAY_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    async with running(tmp_path) as harness:
        yield harness


async def rule_of(h: Harness, tag_slug: str, channel: str) -> str:
    [view] = await h.app.store.subscription_views(channel, tag_slug=tag_slug)
    return describe(view.subscription.rule)


async def test_subscribe_with_a_rule_typed_on_a_phone_then_change_it_and_see_it(h: Harness) -> None:
    reply = await h.say(ALICE, "/subscribe MEK -Opinion +Editor’s-picks “title:statement” age:1d news-tg")
    assert reply == ('✅ MEK → news-tg: subscribed [age:1d +Editor’s-picks -Opinion &quot;title:statement&quot;]')
    assert await rule_of(h, "mek", "news-tg") == 'age:1d +Editor’s-picks -Opinion "title:statement"'

    # the same words again: nothing to do; no rule words: the rule is kept
    assert "already subscribed with this rule" in await h.say(
        ALICE, '/subscribe MEK -Opinion +Editor’s-picks "title:statement" age:1d news-tg')
    assert await h.say(ALICE, "/subscribe MEK news-tg") == "• MEK → news-tg: already subscribed"
    # rule words replace the rule; rule:none removes it
    assert await h.say(ALICE, '/subscribe MEK -"sponsored" content!=^Live news-tg') == (
        "✅ MEK → news-tg: rule changed to [-&quot;sponsored&quot; content!=^Live]")
    listing = await h.say(ALICE, "/subscriptions news-tg")
    assert "• MEK <code>-&quot;sponsored&quot; content!=^Live</code> → <b>news-tg</b> <i>(telegram)</i>" in listing
    assert await h.say(ALICE, "/subscribe MEK rule:none news-tg") == "✅ MEK → news-tg: rule changed to [no rule]"
    assert await rule_of(h, "mek", "news-tg") == ""

    # a config subscription's rule lives in the file
    assert "comes from the config file" in await h.say(ALICE, "/subscribe MEK -Opinion console")

    actions = [(e.action, e.via, e.actor, e.detail) for e in reversed(await h.app.store.audit_entries())]
    assert actions == [
        ("subscribe", "telegram", "111 @alice", 'MEK → news-tg [age:1d +Editor’s-picks -Opinion "title:statement"]'),
        ("rule", "telegram", "111 @alice",
         'MEK → news-tg: [age:1d +Editor’s-picks -Opinion "title:statement"] → [-"sponsored" content!=^Live]'),
        ("rule", "telegram", "111 @alice", 'MEK → news-tg: [-"sponsored" content!=^Live] → [no rule]'),
    ]


@pytest.mark.parametrize(("words", "reason"), [
    ("MEK title=(a news-tg", "FIELD=RE: not a valid RE2 regular expression (missing ))"),
    ("MEK age:5s news-tg", "age:5s: must be from 1m to 365d (got 5s)"),
    ('MEK "!!" news-tg', "&quot;keyword&quot;: a keyword needs letters or digits"),
    ("MEK source:elsewhere news-tg", "unknown source &#x27;elsewhere&#x27;; sources: archive"),
])
async def test_a_rule_that_cannot_work_gets_a_clear_reply_and_changes_nothing(h: Harness, words: str,
                                                                              reason: str) -> None:
    reply = await h.say(ALICE, f"/subscribe {words}")
    assert reply.startswith("⚠️ ") and reason in reply and "Usage: <code>/subscribe" in reply
    assert await h.app.store.subscription_views("news-tg") == []
    assert await h.app.store.audit_entries() == []


async def test_the_exclude_a_tag_button_narrows_the_subscription_just_made(h: Harness) -> None:
    (reply,) = await h.ask(ALICE, "/subscribe Iraq protest against Iran's meddling news-tg")
    assert h.fake.labels(reply) == ["➖ Exclude a tag…"]
    await h.press(ALICE, reply, "➖ Exclude a tag…")
    assert reply.text is not None and reply.text.startswith("Keep which tag out of")
    labels = h.fake.labels(reply)
    assert "➖ MEK · 3" in labels and not any("meddling" in label for label in labels) and labels[-1] == "Cancel"
    await h.press(ALICE, reply, "➖ MEK · 3")
    assert reply.text == "✅ Iraq protest against Iran’s meddling → news-tg: rule changed to [-MEK]"
    assert await rule_of(h, "iraq-protest-against-irans-meddling", "news-tg") == "-MEK"
    (entry,) = await h.app.store.audit_entries(1)
    assert (entry.action, entry.via) == ("rule", "telegram")


async def test_explain_and_preview_say_why_each_channel_does_or_does_not_get_a_post(h: Harness) -> None:
    await h.say(ALICE, "/subscribe MEK -Opinion news-tg")
    post = h.archive.add_post(title="MEK opinion piece", tags=["MEK", "Opinion"])
    await h.app.run_once()
    link = post.link(h.archive.site)

    text = await h.say(ALICE, f"/explain {link}")
    assert "MEK opinion piece" in text
    assert "🚫 <b>news-tg</b>: filtered — kept out by subscription MEK&#x27;s none_tags: it is tagged Opinion" in text
    assert "<b>console</b>: sent — routed by subscription MEK; delivery" in text
    assert "no subscribed tag" in await h.say(ALICE, f"/explain {h.archive.posts[4].link(h.archive.site)} console")
    assert "unknown post" in await h.say(ALICE, "/explain https://nowhere.example/")

    # /preview: a channel that would not get it says why, without the message; one that would, shows it
    replies = await h.ask(ALICE, f"/preview {link}", replies=2)
    tg_head, console = replies
    assert "Preview for <b>news-tg</b>" in (tg_head.text or "")
    assert "🚫 not sent: subscription MEK, none_tags: it is tagged Opinion (if detected now)" in (tg_head.text or "")
    assert "Preview for <b>console</b>" in (console.text or "") and "✅ sent: subscription MEK" in (console.text or "")
    assert "<pre>" in (console.text or "")
