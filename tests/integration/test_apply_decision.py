"""``Store.apply_decision`` on real SQLite and real PostgreSQL: a delivery decision (``bot.domain.delivery``)
recorded with its channel's hold or pause in one store call, and on an unpaced channel with the claim of
the channel's next delivery."""

from __future__ import annotations

from datetime import timedelta

from bot.clock import FakeClock
from bot.domain.delivery import Decision
from bot.domain.models import DeliveryStatus
from bot.storage.store import Store
from tests.integration.test_store import delivery_rows, parsed, poll, setup

S = DeliveryStatus


async def three_queued(store: Store, clock: FakeClock) -> None:
    """Posts 3, 4, 5 queued for tg and masto."""
    await setup(store, clock, [("MEK", "tg", 0), ("MEK", "masto", 0)])
    await poll(store, clock, [])
    await poll(store, clock, [parsed(5, "MEK"), parsed(3, "MEK"), parsed(4, "MEK")])


async def test_a_sent_decision_claims_the_next_delivery_of_that_channel(store: Store, clock: FakeClock) -> None:
    await three_queued(store, clock)
    first = await store.claim_next("tg", clock.now(), "me")
    assert first is not None and first.post.title == "Post 3"
    decision = Decision(S.SENT, remote_id="42", remote_url="https://t.me/x/42")
    second = await store.apply_decision(first.id, decision, clock.now(), channel="tg", claim_for="me")
    assert second is not None and (second.channel, second.post.title, second.attempts) == ("tg", "Post 4", 1)
    rows = await delivery_rows(store)
    assert rows[("tg", "Post 3")] == ("sent", 1, None, "42")
    assert rows[("tg", "Post 4")] == ("sending", 1, "me", None)
    assert rows[("masto", "Post 3")] == ("queued", 0, None, None)
    # without claim_for: the outcome alone
    assert await store.apply_decision(second.id, Decision(S.DEAD, reason="render", error="cannot render: x"),
                                      clock.now(), channel="tg") is None
    assert (await delivery_rows(store))[("tg", "Post 5")] == ("queued", 0, None, None)
    dead = await store.deliveries(status="dead")
    assert [(d.post_title, d.last_error, d.attempts) for d in dead] == [("Post 4", "cannot render: x", 1)]


async def test_a_hold_is_written_with_the_outcome_and_nothing_is_claimed_behind_it(store: Store,
                                                                                  clock: FakeClock) -> None:
    await three_queued(store, clock)
    first = await store.claim_next("tg", clock.now(), "me")
    assert first is not None
    until = clock.now() + timedelta(seconds=42)
    decision = Decision(S.QUEUED, reason="rate_limited", error="rate limited", next_attempt_at=until,
                        attempts_delta=-1, hold_until=until)
    assert await store.apply_decision(first.id, decision, clock.now(), channel="tg", claim_for="me") is None
    assert (await store.channel("tg")).hold_until == until
    assert (await store.channel("masto")).hold_until is None  # only that channel
    rows = await delivery_rows(store)
    assert rows[("tg", "Post 3")] == ("queued", 0, None, None)  # a rate limit is not a counted attempt
    assert await store.due_channels(clock.now()) == ["masto"]
    clock.advance(42)
    again = await store.claim_next("tg", clock.now(), "me")
    assert again is not None and again.id == first.id and again.attempts == 1


async def test_a_pause_is_written_with_the_outcome_and_the_queue_is_kept(store: Store, clock: FakeClock) -> None:
    await three_queued(store, clock)
    first = await store.claim_next("tg", clock.now(), "me")
    assert first is not None
    paused_at = clock.now()
    decision = Decision(S.QUEUED, reason="paused", error="bot was kicked", next_attempt_at=paused_at,
                        attempts_delta=-1, pause="bot was kicked", notify="told")
    assert await store.apply_decision(first.id, decision, paused_at, channel="tg", claim_for="me") is None
    chan = await store.channel("tg")
    assert (chan.paused, chan.paused_reason, chan.paused_at) == (True, "bot was kicked", paused_at)
    assert {title: row[:2] for (name, title), row in (await delivery_rows(store)).items() if name == "tg"} == {
        "Post 3": ("queued", 0), "Post 4": ("queued", 0), "Post 5": ("queued", 0)}
    assert not (await store.channel("masto")).paused

    # the same pause again (a send already in flight when it came) keeps the time it began
    await store.set_paused("tg", False, None, paused_at)
    await store.set_paused("tg", True, "bot was kicked", paused_at)
    clock.advance(60)
    second = await store.claim_next("masto", clock.now(), "me")
    assert second is not None
    await store.apply_decision(second.id, decision, clock.now(), channel="tg")
    assert (await store.channel("tg")).paused_at == paused_at
    await store.apply_decision(second.id, Decision(S.QUEUED, reason="paused", error="token revoked",
                                                   next_attempt_at=clock.now(), attempts_delta=-1,
                                                   pause="token revoked"), clock.now(), channel="tg")
    chan = await store.channel("tg")
    assert (chan.paused_reason, chan.paused_at) == ("token revoked", clock.now())  # a new reason: a new pause


async def test_an_unsure_failure_keeps_the_first_unsure_time(store: Store, clock: FakeClock) -> None:
    await three_queued(store, clock)
    first = await store.claim_next("tg", clock.now(), "me")
    assert first is not None
    unsure_at = clock.now()
    retry_at = unsure_at + timedelta(seconds=10)
    decision = Decision(S.FAILED, reason="retry", error="read timeout", next_attempt_at=retry_at, uncertain=True,
                        hold_until=retry_at)
    await store.apply_decision(first.id, decision, unsure_at, channel="tg")
    clock.advance(10)
    again = await store.claim_next("tg", clock.now(), "me")
    assert again is not None and again.id == first.id and again.uncertain_since == unsure_at
    await store.apply_decision(again.id, decision, clock.now(), channel="tg")
    clock.advance(10)
    third = await store.claim_next("tg", clock.now(), "me")
    assert third is not None and third.uncertain_since == unsure_at and third.attempts == 3
