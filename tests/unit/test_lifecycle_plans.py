"""A post's later life, the pure half: the content hash, when an edit reaches a channel, what an unpublishing
or a retraction removes, what a check of the site means, and the decision table of an edit or a deletion.
Every row of each table, and hypothesis for the promises (never touch what was not sent, never delete on a
doubt)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.amend import (
    Changed,
    Done,
    Gone,
    NoMessage,
    Refused,
    TooOld,
    Unchanged,
    Unsupported,
    decide_change,
    too_old,
)
from bot.domain.delivery import (
    Again,
    Ambiguous,
    Attempt,
    ChannelFacts,
    Decision,
    InternalError,
    Permanent,
    PlatformTraits,
    RateLimited,
    Rejected,
    RenderFailed,
    Retryable,
    SendAgain,
)
from bot.domain.detect import to_post
from bot.domain.lifecycle import (
    ChannelLifecycle,
    DeliveryFact,
    EditPlan,
    Why,
    content_hash,
    describe_policy,
    plan_edit,
    plan_retract,
    plan_unpublished,
)
from bot.domain.models import DeliveryKind, DeliveryStatus, ParsedPost
from bot.domain.plan import changed_posts
from bot.domain.schedule import RetryPolicy
from bot.domain.unpublish import (
    CONFIRM_GAP,
    MAX_PROBES,
    Probe,
    Watched,
    feed_holes,
    judge,
    newest_first,
    probe_of,
    to_probe,
    wordpress_id,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
S = DeliveryStatus
K = DeliveryKind
EDITS = ChannelLifecycle(on_edit=True, can_edit=True)
DELETES = ChannelLifecycle(on_delete=True, can_delete=True, can_edit=True)


def sent(channel: str = "tg", *, ago: timedelta = H, remote_id: str | None = "m1") -> DeliveryFact:
    return DeliveryFact(channel, K.POST, S.SENT, NOW - ago, remote_id)


def row(channel: str, kind: DeliveryKind, status: DeliveryStatus) -> DeliveryFact:
    return DeliveryFact(channel, kind, status)


# -- the content hash ----------------------------------------------------------------------------


def parsed(**changes: object) -> ParsedPost:
    base: dict[str, object] = {"title": "Headline", "url": "https://a.example/1/", "guid": "https://a.example/?p=1",
                               "summary_html": "<p>Short.</p>", "content_html": "<p>Long body.</p>",
                               "tags": ("MEK",), "published": NOW, "updated": NOW,
                               "image_url": "https://a.example/i.jpg", "author": "Staff"}
    base.update(changes)
    return ParsedPost(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("noise", [
    {"published": NOW + H}, {"updated": NOW + 2 * H}, {"guid": "https://a.example/?p=1&rev=2"},
    {"tags": ("MEK", "Iraq")}, {"title": "  Headline "}, {"content_html": "<p>Long body, comments: 12.</p>"},
])
def test_feed_noise_leaves_the_hash_alone(noise: dict[str, object]) -> None:
    assert to_post("s", parsed(**noise)).content_hash == to_post("s", parsed()).content_hash


@pytest.mark.parametrize("change", [
    {"title": "Headline, corrected"}, {"url": "https://a.example/1-fixed/"}, {"summary_html": "<p>Shorter.</p>"},
    {"image_url": "https://a.example/j.jpg"}, {"image_alt": "A crowd"}, {"author": "Editor"},
])
def test_what_a_message_can_show_changes_the_hash(change: dict[str, object]) -> None:
    assert to_post("s", parsed(**change)).content_hash != to_post("s", parsed()).content_hash


def test_the_content_counts_only_when_there_is_no_summary_to_excerpt() -> None:
    bare = {"summary_html": "<p> </p>"}
    assert (to_post("s", parsed(**bare, content_html="<p>One.</p>")).content_hash
            != to_post("s", parsed(**bare, content_html="<p>Two.</p>")).content_hash)
    assert content_hash(title="t", url=None, summary_html="", content_html="x", image_url=None, image_alt=None,
                        author=None) != content_hash(title="t", url=None, summary_html="x", content_html="",
                                                     image_url=None, image_alt=None, author=None)


# -- plan_edit, row by row -----------------------------------------------------------------------


@pytest.mark.parametrize(("facts", "policy", "expected"), [
    ([sent()], EDITS, EditPlan(("tg",))),  # sent within the window: updated
    ([DeliveryFact("tg", K.POST, S.SENDING)], EDITS, EditPlan(("tg",))),  # going out now: updated after it
    ([sent(ago=47 * H)], EDITS, EditPlan(("tg",))),
    ([sent(ago=49 * H)], EDITS, EditPlan()),  # outside edit_window (48 h)
    ([sent()], ChannelLifecycle(on_edit=False, can_edit=True), EditPlan()),  # on_edit = "ignore"
    ([sent()], ChannelLifecycle(on_edit=True, can_edit=False), EditPlan()),  # X: no edit
    ([sent(remote_id=None)], EDITS, EditPlan()),  # sent without an id ("duplicate content")
    ([row("tg", K.POST, S.QUEUED)], EDITS, EditPlan()),  # not gone out: it sends the new content itself
    ([row("tg", K.POST, S.FAILED)], EDITS, EditPlan()),
    ([row("tg", K.POST, S.HELD)], EDITS, EditPlan()),
    ([row("tg", K.POST, S.DEAD)], EDITS, EditPlan()),
    ([row("tg", K.POST, S.UNKNOWN)], EDITS, EditPlan()),
    ([row("tg", K.POST, S.DROPPED)], EDITS, EditPlan()),
    ([sent(), row("tg", K.EDIT, S.QUEUED)], EDITS, EditPlan()),  # queued already: sends the newest content
    ([sent(), row("tg", K.EDIT, S.FAILED)], EDITS, EditPlan()),
    ([sent(), row("tg", K.EDIT, S.SENDING)], EDITS, EditPlan(defer=True)),  # in flight: the next poll again
    ([sent(), row("tg", K.EDIT, S.SENT)], EDITS, EditPlan(("tg",))),  # an earlier edit is over: re-armed
    ([sent(), row("tg", K.EDIT, S.DEAD)], EDITS, EditPlan(("tg",))),
    ([sent(), row("tg", K.DELETE, S.QUEUED)], EDITS, EditPlan()),  # being deleted: not edited
    ([row("tg", K.EDIT, S.SENT)], EDITS, EditPlan()),  # no post delivery at all
])
def test_plan_edit(facts: list[DeliveryFact], policy: ChannelLifecycle, expected: EditPlan) -> None:
    assert plan_edit(facts, {"tg": policy}, NOW) == expected


def test_plan_edit_per_channel_and_an_unconfigured_channel_is_left() -> None:
    facts = [sent("tg"), sent("masto", remote_id="s1"), sent("x", remote_id="t1"), sent("gone", remote_id="g")]
    policies = {"tg": EDITS, "masto": ChannelLifecycle(edit_window=600, can_edit=True),
                "x": ChannelLifecycle(can_edit=False)}
    assert plan_edit(facts, policies, NOW) == EditPlan(("tg",))  # masto: sent an hour ago, window 10 min


# -- plan_unpublished / plan_retract, row by row --------------------------------------------------


@pytest.mark.parametrize(("facts", "policy", "delete", "cancel", "kept"), [
    ([sent()], DELETES, ("tg",), (), ()),
    ([DeliveryFact("tg", K.POST, S.SENDING)], DELETES, ("tg",), (), ()),  # deleted after it goes out
    ([sent()], ChannelLifecycle(on_delete=False, can_delete=True), (), (), (("tg", Why.IGNORED),)),
    ([sent()], ChannelLifecycle(on_delete=True, can_delete=False), (), (), (("tg", Why.CANNOT),)),
    ([sent(remote_id=None)], DELETES, (), (), (("tg", Why.NO_ID),)),
    ([sent(ago=49 * H)], DELETES, (), (), (("tg", Why.TOO_OLD),)),
    ([row("tg", K.POST, S.QUEUED)], DELETES, (), ("tg",), ()),  # not gone out: never sent
    ([row("tg", K.POST, S.HELD)], DELETES, (), ("tg",), ()),
    ([row("tg", K.POST, S.DEAD)], DELETES, (), (), (("tg", Why.NOT_SENT),)),
    ([sent(), row("tg", K.EDIT, S.QUEUED)], DELETES, ("tg",), ("tg",), ()),  # the waiting edit is cancelled
    ([sent(), row("tg", K.DELETE, S.QUEUED)], DELETES, (), (), (("tg", Why.DELETING),)),
    ([sent(), row("tg", K.DELETE, S.DEAD)], DELETES, (), (), (("tg", Why.DELETING),)),
])
def test_plan_unpublished(facts: list[DeliveryFact], policy: ChannelLifecycle, delete: tuple[str, ...],
                          cancel: tuple[str, ...], kept: tuple[tuple[str, Why], ...]) -> None:
    plan = plan_unpublished(facts, {"tg": policy}, NOW)
    assert (plan.delete, plan.cancel, plan.kept) == (delete, cancel, kept)


def test_a_retraction_ignores_the_options_and_windows_but_not_what_a_platform_can_do() -> None:
    facts = [sent("tg", ago=100 * H), sent("masto", remote_id="s1"), sent("x", remote_id=None),
             row("late", K.POST, S.QUEUED), sent("plain", remote_id="p1"), sent("again", remote_id="a1"),
             row("again", K.DELETE, S.DEAD)]
    policies = {"tg": ChannelLifecycle(on_delete=False, can_delete=True), "masto": DELETES,
                "x": ChannelLifecycle(can_delete=True), "late": DELETES,
                "plain": ChannelLifecycle(can_delete=False), "again": DELETES}
    plan = plan_retract(facts, policies, NOW)
    assert plan.delete == ("again", "masto", "tg")  # a dead deletion is tried again when an admin asks
    assert plan.cancel == ("late",)
    assert plan.kept == (("plain", Why.CANNOT), ("x", Why.NO_ID))
    only = plan_retract(facts, policies, NOW, channels=["masto", "late"])
    assert (only.delete, only.cancel, only.kept) == (("masto",), ("late",), ())


STATUSES = st.sampled_from(list(S))
FACTS = st.lists(st.builds(DeliveryFact, channel=st.sampled_from(["a", "b"]), kind=st.sampled_from(list(K)),
                           status=STATUSES, sent_at=st.none() | st.just(NOW - H) | st.just(NOW - 100 * H),
                           remote_id=st.none() | st.just("m")), max_size=6)
POLICIES = st.builds(ChannelLifecycle, on_edit=st.booleans(), can_edit=st.booleans(), on_delete=st.booleans(),
                     can_delete=st.booleans())


@given(FACTS, POLICIES, st.booleans())
def test_nothing_is_changed_that_was_not_sent_and_nothing_in_flight_is_cancelled(
        facts: list[DeliveryFact], policy: ChannelLifecycle, retract: bool) -> None:
    policies = {"a": policy, "b": policy}
    posts = {}
    for f in facts:
        if f.kind is K.POST:
            posts[f.channel] = f
    edited = plan_edit(facts, policies, NOW)
    removal = plan_retract(facts, policies, NOW) if retract else plan_unpublished(facts, policies, NOW)
    for channel in [*edited.queue, *removal.delete]:
        original = posts[channel]
        assert original.status is S.SENDING or (original.status is S.SENT and original.remote_id is not None)
    if edited.queue:
        assert policy.edits
    if removal.delete:
        assert policy.can_delete and (retract or policy.on_delete)
    for channel in removal.cancel:
        assert any(f.channel == channel and f.kind is not K.DELETE
                   and f.status in (S.QUEUED, S.FAILED, S.HELD) for f in facts)


# -- what a check of the site means ---------------------------------------------------------------


@pytest.mark.parametrize(("status", "probe"), [
    (200, Probe.PRESENT), (204, Probe.PRESENT), (404, Probe.MISSING), (410, Probe.MISSING), (None, Probe.UNSURE),
    (500, Probe.UNSURE), (502, Probe.UNSURE), (503, Probe.UNSURE), (401, Probe.UNSURE), (403, Probe.UNSURE),
    (429, Probe.UNSURE), (301, Probe.UNSURE), (400, Probe.UNSURE), (451, Probe.UNSURE),
])
def test_only_404_and_410_say_gone(status: int | None, probe: Probe) -> None:
    assert probe_of(status) is probe


def watched(n: int, *, published: datetime | None = NOW, missing_since: datetime | None = None) -> Watched:
    return Watched(n, f"https://a.example/?p={n}", f"https://a.example/{n}/", published, missing_since)


def test_a_feed_strike_needs_a_second_404_some_minutes_later() -> None:
    post = watched(1)
    first = judge(post, Probe.MISSING, NOW, strikes=2)
    assert (first.confirmed, first.missing_since) == (False, NOW)
    struck = watched(1, missing_since=NOW)
    early = judge(struck, Probe.MISSING, NOW + CONFIRM_GAP - timedelta(seconds=1), strikes=2)
    assert (early.confirmed, early.missing_since, early.changed) == (False, NOW, False)
    late = judge(struck, Probe.MISSING, NOW + CONFIRM_GAP, strikes=2)
    assert (late.confirmed, late.missing_since) == (True, NOW)
    assert judge(struck, Probe.PRESENT, NOW + H, strikes=2).missing_since is None  # back: the strike goes
    unsure = judge(struck, Probe.UNSURE, NOW + H, strikes=2)
    assert (unsure.confirmed, unsure.missing_since, unsure.changed) == (False, NOW, False)  # a 5xx says nothing
    assert judge(post, Probe.MISSING, NOW, strikes=1).confirmed  # after WordPress left it out of include=


@given(st.lists(st.sampled_from(list(Probe)), max_size=6), st.integers(1, 2))
def test_never_confirmed_without_404s_and_never_by_a_doubt(probes: list[Probe], strikes: int) -> None:
    post = watched(1)
    when = NOW
    for probe in probes:
        verdict = judge(post, probe, when, strikes=strikes)
        if verdict.confirmed:
            assert probe is Probe.MISSING
            if strikes == 2:
                assert post.missing_since is not None and when - post.missing_since >= CONFIRM_GAP
            return
        post = Watched(post.post_id, post.key, post.url, post.published, verdict.missing_since)
        when += CONFIRM_GAP


def test_a_post_that_aged_out_of_the_feed_is_not_a_hole() -> None:
    posts = [watched(1, published=NOW - 3 * H), watched(2, published=NOW - H), watched(3, published=None),
             watched(4, published=NOW)]
    in_feed = {posts[3].key}
    assert feed_holes(posts, in_feed, NOW - 2 * H) == [posts[1]]  # 1 is older than the feed's oldest: aged out
    assert feed_holes(posts, in_feed, None) == []  # an undated feed cannot tell


def test_what_is_probed_per_poll_is_bounded_and_due_strikes_come_first() -> None:
    due = [watched(n, missing_since=NOW - CONFIRM_GAP - timedelta(minutes=n)) for n in (1, 2)]
    waiting = watched(3, missing_since=NOW - timedelta(minutes=1))
    fresh = [watched(n) for n in range(10, 30)]
    chosen = to_probe(fresh, [*due, waiting], NOW)
    assert [w.post_id for w in chosen[:2]] == [2, 1]  # the oldest strike first
    assert 3 not in {w.post_id for w in chosen}  # not due yet
    assert len(chosen) == MAX_PROBES
    assert to_probe([Watched(9, "k", None, NOW)], [], NOW) == []  # no URL, nothing to ask


def test_wordpress_ids_come_from_the_guid() -> None:
    assert wordpress_id("https://site.example/?p=123") == 123
    assert wordpress_id("http://site.example/?page_id=4&p=77") == 77
    for key in ("https://site.example/2020/post/", "tag:site,2020:1", "https://s/?p=x", "https://s/?p=" + "9" * 30):
        assert wordpress_id(key) is None
    ordered = newest_first([watched(1, published=NOW - H), watched(2, published=None), watched(3)], 2)
    assert [w.post_id for w in ordered] == [3, 1]


# -- the decision table of an edit or a deletion ---------------------------------------------------

POLICY = RetryPolicy(base=30, cap=3600, max_attempts=3)
CHAN = ChannelFacts("tg", POLICY, at_least_once=False, can_move=True)
TRAITS = PlatformTraits(idempotent=False)


def decided(kind: DeliveryKind, outcome: object, attempt: Attempt | None = None) -> Decision | SendAgain:
    return decide_change(kind, outcome, attempt or Attempt(1), CHAN, TRAITS, now=NOW, jitter=0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "outcome", "status", "reason"), [
    (K.EDIT, Changed(), S.SENT, None),
    (K.DELETE, Changed(), S.SENT, None),
    (K.EDIT, Unchanged(), S.SENT, "unchanged"),
    (K.EDIT, Done("not modified"), S.SENT, "already"),
    (K.DELETE, Done("deleted: false"), S.SENT, "already"),
    (K.DELETE, Gone("not found"), S.SENT, "already"),
    (K.EDIT, Gone("not found"), S.DEAD, "gone"),
    (K.EDIT, Refused("can't be edited"), S.DEAD, "refused"),
    (K.DELETE, Refused("can't be deleted"), S.DEAD, "refused"),
    (K.DELETE, Rejected("bad request"), S.DEAD, "refused"),
    (K.EDIT, Unsupported("x"), S.DEAD, "unsupported"),
    (K.DELETE, NoMessage("never sent"), S.DEAD, "no_message"),
    (K.DELETE, TooOld(48 * 3600, 50 * 3600), S.DEAD, "too_old"),
    (K.EDIT, RateLimited("429", 60), S.QUEUED, "rate_limited"),
    (K.DELETE, Permanent("403"), S.QUEUED, "paused"),
    (K.EDIT, Retryable("503"), S.FAILED, "retry"),
    (K.DELETE, Ambiguous("read timeout"), S.FAILED, "retry"),  # a repeat is safe: retried, never unknown
    (K.EDIT, InternalError("tg", "Boom"), S.FAILED, "retry"),
    (K.EDIT, RenderFailed("bug"), S.DEAD, "render"),
])
def test_decide_change(kind: DeliveryKind, outcome: object, status: DeliveryStatus, reason: str | None) -> None:
    verdict = decided(kind, outcome)
    assert isinstance(verdict, Decision)
    assert (verdict.status, verdict.reason) == (status, reason)


def test_a_rejected_edit_is_tried_once_plain_then_dead() -> None:
    assert decided(K.EDIT, Rejected("can't parse entities")) == SendAgain(Again.PLAIN)
    last = decided(K.EDIT, Rejected("can't parse entities"), Attempt(1, plain_tried=True))
    assert isinstance(last, Decision) and (last.status, last.reason) == (S.DEAD, "rejected")


def test_too_old_tells_the_admins_to_delete_by_hand() -> None:
    assert too_old(NOW - 47 * H, 48 * 3600.0, NOW) is None
    assert too_old(NOW - 49 * H, None, NOW) is None
    late = too_old(NOW - 49 * H, 48 * 3600.0, NOW)
    assert late is not None
    verdict = decided(K.DELETE, late)
    assert isinstance(verdict, Decision) and verdict.notify is not None
    assert "only within 48 h" in (verdict.error or "") and "delete it by hand" in verdict.notify


def test_an_unsure_change_is_retried_until_the_last_attempt() -> None:
    final = decided(K.EDIT, Ambiguous("timeout"), Attempt(3))
    assert isinstance(final, Decision) and (final.status, final.reason) == (S.DEAD, "exhausted")


# -- which known posts a poll finds edited -------------------------------------------------------


def test_changed_posts_are_told_from_unhashed_churned_and_damaged_ones() -> None:
    before = to_post("s", parsed())
    stored = {before.key: before.content_hash, "old": None}
    edited = to_post("s", parsed(title="Headline, corrected"))
    unhashed = to_post("s", parsed(guid="old", title="Stored before 0011"))
    damaged = to_post("s", parsed(title="Head\ufffdline"))  # a bad byte in a damaged document: not an edit
    churned = to_post("s", parsed(guid="new-guid", title="Headline, corrected"))  # known by its link only
    assert changed_posts([before], stored) == ((), ())
    assert changed_posts([edited, unhashed, churned], stored) == ((edited,), (unhashed,))
    assert changed_posts([damaged], stored) == ((), ())


def test_what_explain_says_a_channel_does_with_edits_and_unpublishing() -> None:
    assert describe_policy(ChannelLifecycle(can_edit=True, can_delete=True), "telegram") == (
        "edits update it for 48 h; left if unpublished (on_delete = ignore)")
    assert describe_policy(ChannelLifecycle(on_edit=False, on_delete=True, can_delete=True,
                                            delete_window=5 * 86400), "mastodon") == (
        "edits ignored (on_edit = ignore); deleted if unpublished within 5 d")
    assert describe_policy(ChannelLifecycle(on_delete=True), "threads") == (
        "edits not sent (threads has no edit); left if unpublished (threads cannot delete)")
