"""Threads rendering: Meta's count (emoji as UTF-8 bytes), the 5-link rule, the post's shape; plus property
tests over hostile posts (the strategies of test_render_properties)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.models import Post
from bot.render.fit import RenderError, plain_budget
from bot.render.message import RenderEnv
from bot.render.options import ThreadsRenderOptions
from bot.render.threads import LIMIT, MAX_LINKS, render_threads, threads_length, threads_links
from bot.testing import sample_post
from tests.unit.test_render_properties import PROPERTY_SETTINGS, piece, posts, render_or_nothing, urls


def options(**kw: object) -> ThreadsRenderOptions:
    return ThreadsRenderOptions.model_validate({"name": "th", "platform": "threads", **kw})


def test_emoji_count_their_utf8_bytes_and_other_characters_their_code_points() -> None:
    assert threads_length("plain ascii text") == 16
    assert threads_length("😀") == 4
    assert threads_length("👨\u200d👩\u200d👧\u200d👦") == 25  # one grapheme, 25 bytes
    assert threads_length("🇯🇵") == 8
    assert threads_length("❤\ufe0f") == 6  # emoji presentation selector included
    assert threads_length("#\ufe0f\u20e3") == 7  # keycap: ASCII base, still an emoji
    assert threads_length("東京") == 2  # CJK: one each
    assert threads_length("cafe\u0301") == 5  # combining mark: its own code point (conservative)
    assert threads_length("مَرْحَبًا") == 9


def test_links_are_counted_once_each_with_or_without_a_scheme() -> None:
    text = "see www.example.org and https://www.Example.org/ and http://a.example/x, example.com."
    assert threads_links(text) == {"www.example.org", "a.example/x", "example.com"}
    assert threads_links(text, "https://a.example/x") == threads_links(text)  # the same link: counted once
    assert len(threads_links(text, "https://other.example/")) == 4


def test_a_text_post_carries_the_link_as_its_attachment() -> None:
    post = sample_post()
    message = render_threads(post, options(), RenderEnv())
    assert message.extra == {"media_type": "TEXT", "link_attachment": post.url}
    assert post.url and post.url in message.text
    assert (message.limit, message.length) == (LIMIT, threads_length(message.text))
    assert message.image_url is None and message.image_alt is None


def test_an_image_post_has_no_attachment_and_the_plain_fallback_no_image() -> None:
    post = Post(key="k", source="s", title="Harbour", url="https://e.example/h", summary_html="<p>Boats</p>",
                content_html="", tags=(), published=None, image_url="https://e.example/h.jpg", image_alt="Boats " * 300)
    message = render_threads(post, options(send_image=True), RenderEnv())
    assert message.extra == {"media_type": "IMAGE", "link_attachment": None}
    assert message.image_url == "https://e.example/h.jpg"
    assert message.image_alt is not None and len(message.image_alt) <= 1000 and message.image_alt.endswith("…")
    plain = render_threads(post, options(send_image=True), RenderEnv(), plain=True)
    assert plain.image_url is None and plain.extra["media_type"] == "TEXT"
    without = render_threads(post, options(), RenderEnv())  # send_image off: a text post, image unused
    assert without.image_url is None


def test_more_than_five_links_are_cut_away_never_the_post_link() -> None:
    many = " ".join(f"https://site{i}.example/page" for i in range(12))
    post = Post(key="k", source="s", title="Links", url="https://e.example/post", summary_html=f"<p>{many}</p>",
                content_html="", tags=(), published=None)
    message = render_threads(post, options(excerpt_length=2000), RenderEnv())
    assert len(threads_links(message.text, post.url)) <= MAX_LINKS
    assert "https://e.example/post" in message.text
    title = Post(key="k", source="s", title=many, url="https://e.example/post", summary_html="", content_html="",
                 tags=(), published=None)
    message = render_threads(title, options(), RenderEnv())  # even a title of links is cut
    assert len(threads_links(message.text, title.url)) <= MAX_LINKS and title.url in message.text


# -- properties -------------------------------------------------------------------------------------

threads_options = st.builds(
    ThreadsRenderOptions, name=st.just("th"), platform=st.just("threads"), send_image=st.booleans(),
    hashtags=st.booleans(), max_hashtags=st.integers(min_value=0, max_value=30),
    excerpt_length=st.one_of(st.none(), st.sampled_from([0, 10, 100, 1000, 5000])),
    template=st.sampled_from([None, "{{ title|upper }} — {{ excerpt }} {{ link }} {{ hashtags }} {{ source }}"]),
)
linky = st.lists(st.one_of(urls, piece, st.sampled_from(["www.a.example", "b.example.org/x", "😀" * 40])),
                 max_size=40).map(" ".join)


@PROPERTY_SETTINGS
@given(post=posts(), opts=threads_options, plain=st.booleans(), extra_links=linky)
def test_every_rendering_fits_500_with_at_most_5_links_and_keeps_the_link(
        post: Post, opts: ThreadsRenderOptions, plain: bool, extra_links: str) -> None:
    post = Post(**{**{f: getattr(post, f) for f in post.__dataclass_fields__},
                   "summary_html": post.summary_html + " " + extra_links})
    budget = plain_budget(LIMIT) if plain else LIMIT
    message = render_or_nothing(lambda: render_threads(post, opts, RenderEnv(), plain=plain), post,
                                lambda link: threads_length(link) <= budget)
    if message is None:
        return
    assert threads_length(message.text) == message.length <= budget
    assert len(threads_links(message.text, message.extra["link_attachment"])) <= MAX_LINKS
    if post.url:
        assert post.url in message.text
    image = bool(opts.send_image and post.image_url and not plain)
    assert (message.image_url is not None) == image
    assert message.extra["link_attachment"] == (None if image else post.url)


@PROPERTY_SETTINGS
@given(text=st.text(max_size=200))
def test_the_count_is_never_below_the_grapheme_count(text: str) -> None:
    import grapheme

    assert threads_length(text) >= grapheme.length(text)


def test_a_post_whose_link_alone_is_too_long_does_not_render() -> None:
    post = Post(key="k", source="s", title="t", url="https://e.example/" + "a" * 600, summary_html="",
                content_html="", tags=(), published=None)
    with pytest.raises(RenderError):
        render_threads(post, options(), RenderEnv())
