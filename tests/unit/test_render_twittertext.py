"""``bot.render.twittertext``: the per-token URL extractor equals twitter-text's on the whole text,
and the Mastodon/X counting paths do not import the ``twitter_text`` package (its emoji regex)."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.render.twittertext import extract_urls_with_indices, url_entities

_ALPHABET = st.one_of(
    st.characters(max_codepoint=0x24F),
    st.sampled_from(list("./:?#@$&=-_~%!'\"()[]<>,;。．｡日本語한국어😷\u00a0\u2000\u3000\u200b\u202f\r\n\t ")),
)
_PIECES = st.one_of(
    st.text(_ALPHABET, max_size=30),
    st.sampled_from([
        "https://archive.example.org/2020/02/16/a-post/?utm=x&b=1", "http://a.b", "example.org", "www.x.com/p",
        "t.co/abc", "https://t.co/abcdef123", "@someone.example.org", "$cash.tag", "#tag.org", "a.b.c.d",
        "xn--bcher-kva.example", "日本.jp", "example.org.", "(https://example.org/a_(b))", "http://",
        "foo@bar.com", "sub.domain.co.uk/path?q=1#frag", "https://example.org:8080/x", ".", "..", "a.",
    ]),
)
_SEPARATORS = st.sampled_from(["", " ", "\n", "\u3000", "\u00a0", ".", "/", "@", "$", "\u200b"])


def _joined(parts: list[tuple[str, str]]) -> str:
    return "".join(sep + piece for sep, piece in parts)


def _reference(text: str, without_protocol: bool) -> list[tuple[int, int, str]]:
    return [(e["indices"][0], e["indices"][1], e["url"]) for e in extract_urls_with_indices(text, without_protocol)]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(_SEPARATORS, _PIECES), max_size=10).map(_joined), st.booleans())
@example("see https://example.org/a and www.x.com/p.", True)
@example("@someone.example.org $cash.tag #tag.org", True)
@example("日本.jp\u3000example.org", True)
@example("x" * 400 + ".example.org " + "y.org", True)
def test_url_entities_equal_the_whole_text_extractor(text: str, without_protocol: bool) -> None:
    assert url_entities(text, without_protocol=without_protocol) == _reference(text, without_protocol)
    # the cache must not change the answer when the same tokens come again, shifted
    shifted = "lead " + text
    assert url_entities(shifted, without_protocol=without_protocol) == _reference(shifted, without_protocol)


def test_counting_without_emoji_does_not_import_the_twitter_text_package() -> None:
    code = (
        "import sys\n"
        "from bot.render.mastodon import mastodon_length\n"
        "from bot.render.x import x_weighted_length\n"
        "assert mastodon_length('a post https://archive.example.org/p/1 @me@example.social') > 0\n"
        "assert x_weighted_length('a post https://archive.example.org/p/1 “quoted” — 日本語') > 0\n"
        "print('twitter_text' in sys.modules, 'pkg_resources' in sys.modules)\n"
        "x_weighted_length('with an emoji 😷')\n"
        "print('twitter_text' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]
