"""``bot.render.twittertext``: the per-token URL extractor equals twitter-text's on the whole text,
twitter-text is reached through its public names only, and only once a message is measured."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import twitter_text
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twitter_text import extract_urls_with_indices, parse_tweet

from bot.render.twittertext import SPACES, X_WEIGHTING, url_entities

BOT = Path(__file__).resolve().parents[2] / "bot"

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


def test_twitter_text_is_imported_on_the_first_count_not_with_the_renderers() -> None:
    code = (
        "import sys\n"
        "from bot.render.mastodon import mastodon_length\n"
        "from bot.render.x import x_weighted_length\n"
        "import bot.publishers.mastodon, bot.publishers.x\n"
        "print('twitter_text' in sys.modules)\n"
        "assert mastodon_length('a post https://archive.example.org/p/1 @me@example.social') == 34\n"
        "assert x_weighted_length('a post https://archive.example.org/p/1 “quoted” — 日本語') == 48\n"
        "print('twitter_text' in sys.modules)\n"
        "print(sorted(m for m in sys.modules if 'twitter_text' in m and not m.startswith('twitter_text')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "[]"]


def _imports_of(path: Path, package: str) -> list[tuple[str, tuple[str, ...]]]:
    """(module, names) of each import of ``package`` or its modules in one file; names is () for ``import``."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names if alias.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def test_bot_uses_only_twitter_texts_public_names() -> None:
    found = [(path.relative_to(BOT).as_posix(), module, names)
             for path in sorted(BOT.rglob("*.py")) for module, names in _imports_of(path, "twitter_text")]
    assert found  # the walk really saw the import
    for where, module, names in found:
        assert module == "twitter_text", f"{where} imports {module}"
        assert names and set(names) <= set(twitter_text.__all__), f"{where} imports {names}"


def test_render_loads_no_module_by_hand() -> None:
    assert [(path.name, hit) for path in sorted((BOT / "render").glob("*.py"))
            for hit in _imports_of(path, "importlib")] == []


def test_the_weighting_is_parse_tweets_default() -> None:
    assert inspect.signature(parse_tweet).parameters["options"].default == X_WEIGHTING


_SPACE_CHARS = [chr(code) for code in range(0x110000) if re.fullmatch(f"[{SPACES}]", chr(code))]


def test_the_spaces_are_twitter_texts_26() -> None:
    assert len(_SPACE_CHARS) == 26 and "\u180e" in _SPACE_CHARS and "\u200b" not in _SPACE_CHARS


@pytest.mark.parametrize("space", _SPACE_CHARS)
def test_every_space_ends_a_url_and_may_precede_one(space: str) -> None:
    """What the per-token cut relies on, asked of twitter-text itself for each of its spaces."""
    text = f"a{space}https://example.org/p?q=1{space}b{space}www.example.org/x{space}"
    assert [e["url"] for e in extract_urls_with_indices(text)] == ["https://example.org/p?q=1", "www.example.org/x"]
