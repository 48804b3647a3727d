"""The one-line rule syntax (bot.rule_syntax): what the admin bot reads, what `subscriptions` shows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.rules import RuleParts
from bot.domain.tags import fold_words
from bot.errors import RuleError
from bot.rule_syntax import describe, duration, parse, tokens

CHANNELS = ["news-tg", "console"]


def test_the_issue_example() -> None:
    parsed = parse('Iraq -Opinion +MEK "title:Basra" news-tg', CHANNELS)
    assert (parsed.tag, parsed.channel, parsed.given) == ("Iraq", "news-tg", True)
    assert describe(parsed.rule) == '+MEK -Opinion "title:Basra"'


def test_every_kind_of_word() -> None:
    parsed = parse('Editor’s picks +Iraq -Opinion-pieces “Basra” „author:Jane Doe“ -«paid content» '
                   'title=^Breaking "content!=Live blog" age:1d12h source:archive console', CHANNELS)
    assert parsed.tag == "Editor’s picks" and parsed.channel == "console"
    rule = parsed.rule
    assert rule is not None
    assert [t.slug for t in rule.all_tags] == ["iraq"] and [t.slug for t in rule.none_tags] == ["opinion-pieces"]
    assert [str(k) for k in rule.include_keywords] == ["Basra", "author:Jane Doe"]
    assert [str(k) for k in rule.exclude_keywords] == ["paid content"]
    assert [str(p) for p in rule.patterns] == ["title=^Breaking", "content!=Live blog"]
    assert rule.max_age == 36 * 3600 and rule.sources == ("archive",)


def test_without_rule_words_nothing_is_given_and_rule_none_clears() -> None:
    assert parse("Editor’s picks news-tg", CHANNELS) == parse("Editor’s picks news-tg", CHANNELS)
    plain = parse("Editor’s picks news-tg", CHANNELS)
    assert (plain.tag, plain.channel, plain.rule, plain.given) == ("Editor’s picks", "news-tg", None, False)
    cleared = parse("Iraq rule:none news-tg", CHANNELS)
    assert (cleared.rule, cleared.given) == (None, True)
    with pytest.raises(RuleError, match="give no other rule word"):
        parse("Iraq rule:none -Opinion news-tg", CHANNELS)
    assert parse("Iraq", CHANNELS).channel is None  # the last word names no channel: all of it is the tag


@pytest.mark.parametrize(("text", "part"), [
    ("Iraq title=(a", "FIELD=RE"),
    ("Iraq age:soon", "age:soon"),
    ('Iraq "?!"', '"keyword"'),
    ('Iraq -"…"', '-"keyword"'),
    ("Iraq +’’", "+tag"),
])
def test_a_wrong_word_is_named(text: str, part: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse(text, CHANNELS)
    assert caught.value.part == part


def test_tokens_keep_quoted_runs_and_an_unclosed_quote_runs_to_the_end() -> None:
    assert tokens('a "b c" -"d e" “f”g "h') == [("a", False), ("b c", True), ("-d e", True), ("f", True),
                                               ("g", False), ("h", True)]


def test_durations_are_written_exactly() -> None:
    assert [duration(s) for s in (60, 90, 3600, 86400 * 2 + 60, 86400 + 1.5)] == ["1m", "1m30s", "1h", "2d1m",
                                                                                  "1d1.5s"]


_TAG = st.text(alphabet=st.sampled_from("abcdé’'إيران0"), min_size=1, max_size=8).filter(
    lambda w: bool(fold_words(w)))
_KEYWORD = st.text(alphabet=st.sampled_from("ab cé’إيران"), min_size=1, max_size=10).filter(
    lambda w: bool(fold_words(w)) and w.strip() == w)


@settings(max_examples=200, deadline=None)
@given(all_tags=st.lists(_TAG, max_size=2), none_tags=st.lists(_TAG, max_size=2),
       include=st.lists(_KEYWORD, max_size=2), exclude=st.lists(_KEYWORD, max_size=2),
       field=st.sampled_from(["", "title:", "author:"]),
       patterns=st.lists(st.sampled_from(["title=^A b", "content!=x$", "author=(?i)jane"]), max_size=2),
       age=st.none() | st.integers(60, 10**7).map(float), sources=st.lists(st.sampled_from(["a", "b"]), max_size=2))
def test_what_describe_writes_parse_reads_back(all_tags: list[str], none_tags: list[str], include: list[str],
                                               exclude: list[str], field: str, patterns: list[str],
                                               age: float | None, sources: list[str]) -> None:
    rule = RuleParts(all_tags=tuple(all_tags), none_tags=tuple(none_tags),
                     include_keywords=tuple(field + k for k in include), exclude_keywords=tuple(exclude),
                     patterns=tuple(patterns), max_age=age, sources=tuple(sources)).build()
    again = parse(f"Iraq {describe(rule)} news-tg", CHANNELS)
    assert (again.tag, again.channel) == ("Iraq", "news-tg")
    assert again.rule is not None if rule else again.rule is None
    if rule is not None and again.rule is not None:
        # tags come back by slug (a tag with spaces is written with dashes); everything else exactly
        assert [t.slug for t in again.rule.all_tags] == [t.slug for t in rule.all_tags]
        assert [t.slug for t in again.rule.none_tags] == [t.slug for t in rule.none_tags]
        assert (again.rule.include_keywords, again.rule.exclude_keywords, again.rule.patterns, again.rule.max_age,
                again.rule.sources) == (rule.include_keywords, rule.exclude_keywords, rule.patterns, rule.max_age,
                                        rule.sources)
