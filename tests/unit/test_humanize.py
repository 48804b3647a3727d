"""Text safe to show: control characters made visible, cuts that say so, admin-bot replies Telegram accepts."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from bot.admin.replies import MAX_MESSAGE, bounded_reply, fit, quote, utf16_len, visible_text
from bot.humanize import BIDI_CONTROLS, CUT_MARK, cut, json_visible_controls, visible_controls
from tests.fakes.telegram_api import visible_length

UNSAFE = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), "\u2028", "\u2029", *BIDI_CONTROLS}
# text an attacker would send: controls, bidi, astral characters, markup, entities
PIECES = [*sorted(UNSAFE), "a", "é", "😀", "<", ">", "&", "&amp;", "\\", "\u200f", "\u05d0"]
hostile = st.lists(st.sampled_from(PIECES)).map("".join)


def test_terminal_escapes_and_bidi_controls_are_shown_not_obeyed() -> None:
    assert visible_controls("\x1b[2J\x1b]0;pwned\x07") == "\\x1b[2J\\x1b]0;pwned\\x07"
    assert visible_controls("invoice\u202egnp.exe") == "invoice\\u202egnp.exe"
    assert visible_controls("\x9b31m\x7f\u2066x\u2069") == "\\x9b31m\\x7f\\u2066x\\u2069"
    assert visible_controls("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert visible_controls("a\nb\tc\rd", multiline=True) == "a\nb\tc\\rd"
    # kept: letters of any script, the directional marks, ZWNJ (Persian), backslashes
    persian = "نامه\u200cها \u200fتهران\u200e C:\\dir"
    assert visible_controls(persian) == persian


@given(hostile, st.booleans())
def test_nothing_unsafe_survives_and_safe_text_is_unchanged(text: str, multiline: bool) -> None:
    shown = visible_controls(text, multiline=multiline)
    allowed = {"\n", "\t"} if multiline else set()
    assert not (set(shown) & (UNSAFE - allowed))
    if not set(text) & UNSAFE:
        assert shown == text


@given(st.dictionaries(hostile, hostile | st.lists(hostile), max_size=4))
def test_json_output_parses_to_the_same_value_with_nothing_unsafe_raw(data: dict[str, object]) -> None:
    document = json_visible_controls(json.dumps(data, ensure_ascii=False, indent=2))
    assert json.loads(document) == data
    assert not set(document) & (UNSAFE - {"\n"})


@given(st.text(), st.integers(min_value=len(CUT_MARK), max_value=50), st.integers(min_value=0, max_value=60))
def test_a_cut_stays_within_its_limit_and_says_so(text: str, limit: int, tail: int) -> None:
    out = cut(text, limit, tail=tail)
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
    else:
        assert CUT_MARK in out and out.startswith(text[: max(0, limit - len(CUT_MARK) - tail)])


def telegram_accepts(reply: str) -> bool:
    length, problem = visible_length(reply, "HTML", utf16=True)
    return problem is None and 0 < length <= MAX_MESSAGE


@given(hostile, st.integers(min_value=1, max_value=3000))
def test_any_reply_built_from_quotes_is_valid_html_within_4096_utf16_units(text: str, copies: int) -> None:
    reply = bounded_reply("\n".join([f"<b>{quote(text)}</b> — <i>{quote(text * 3, 10_000)}</i>"] * copies))
    assert telegram_accepts(reply)
    assert not set(reply) & BIDI_CONTROLS


def test_a_reply_too_long_for_telegram_is_cut_by_utf16_units_and_says_so() -> None:
    emoji = "😀" * 3000  # 3,000 characters, 6,000 UTF-16 units
    reply = bounded_reply(f"<b>{emoji}</b>")
    assert telegram_accepts(reply) and reply.endswith(CUT_MARK) and "<b>" not in reply
    assert MAX_MESSAGE - 1 <= utf16_len(visible_text(reply)) <= MAX_MESSAGE  # an emoji is never split
    short = "<b>fine</b> &amp; <i>dandy</i>"
    assert bounded_reply(short) == short
    lines = [f"<b>{i}</b> {'😀' * 100}" for i in range(100)]
    joined = fit(lines)
    assert telegram_accepts(joined) and joined.endswith("more line(s)</i>")
