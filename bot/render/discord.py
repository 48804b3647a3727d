"""Discord rendering: one embed per post (or plain content), Discord markdown escaped, within Discord's limits.

``render_discord`` builds the JSON body of an *Execute Webhook* call (without
``allowed_mentions``, which the publisher always sets itself) and returns it in
``RenderedMessage.extra["payload"]``:

* ``mode = "embed"`` (the default): ``{"embeds": [embed]}`` with one embed — ``title``
  (the post title, linked by ``url`` to the post), ``description`` (the excerpt and
  hashtags, or the channel template), ``image`` (the featured image), ``timestamp``
  (the publication time) and ``footer`` (the source's name);
* ``mode = "content"``: ``{"content": text}``, the channel template (default: title,
  excerpt, link, hashtags) as a message that Discord unfurls;
* a forum channel (``forum = true``) adds ``thread_name``: each post opens a thread
  named after its title.

Limits (docs.discord.com, Message and Embed objects; platform-apis §5.2): content
2,000; embed title 256, description 4,096, footer 2,048, all embeds together 6,000;
a thread name 100. Discord does not say in which unit it counts "characters"; every
length here is in UTF-16 code units (``utf16_length``), which is never less than
the code points Discord's own API counts, so what fits here fits there.

The featured image is the embed's ``image`` (by URL: Discord fetches it); Discord embeds have no
alt text, so ``image_alt`` is not sent, and ``RenderedMessage.image_url`` stays None (nothing is sent
as a photo). Every value from the archive is hostile input: Discord markdown in it is escaped
(``escape_markdown``), so a title cannot turn into a masked link, a spoiler, a
heading or a mention; the link is left as it is. Discord takes a backslash before
any ASCII punctuation as "this character literally". The footer and the thread
name are not markdown and are sent as plain text.

``plain=True`` (the fallback after Discord refused the message): plain content with
the default template, half the excerpt, 5% under 2,000, no embed.

``text`` of the returned message is what a reader sees (the content; for an embed,
its title, description, link and footer, one paragraph each), for ``preview``;
``length``/``limit`` are Discord's measure of what is sent: the content and 2,000,
or the embed's characters and 6,000.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC
from typing import Any, Literal

from bot.channel_options import ChannelOptions
from bot.domain.models import Post
from bot.render.fit import Compose, Content, RenderError, fit, link_text, plain_budget, prepare
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.templates import (
    DEFAULT_TEMPLATE_PLAIN,
    TemplateError,
    TemplateVars,
    compile_template,
    render_template,
    tidy,
    validate_template,
)
from bot.render.text import clean_inline, longest_fitting, nfc, truncate
from bot.render.tghtml import utf16_length
from bot.validation import field_validator

CONTENT_LIMIT = 2000
"""``content`` of a message."""
TITLE_LIMIT = 256
"""``embed.title``."""
DESCRIPTION_LIMIT = 4096
"""``embed.description``."""
FOOTER_LIMIT = 2048
"""``embed.footer.text``."""
EMBEDS_TOTAL_LIMIT = 6000
"""Title, description, footer, author and fields of all embeds of one message together."""
THREAD_NAME_LIMIT = 100
"""``thread_name``: the name of the forum post (thread) a message opens."""
DEFAULT_EXCERPT_LENGTH = 600
"""Excerpt characters when the channel sets no ``excerpt_length`` (a teaser, not the article)."""
UNTITLED_THREAD = "New post"
"""A forum thread's name when the post has neither title nor source name."""

# Discord markdown (a simple-markdown dialect): these characters start formatting anywhere in a line
# (bold, italics, underline, strikethrough, code, spoilers, masked links, mentions and timestamps
# in <...>, quotes, headings); a backslash before one shows it literally.
_MARKDOWN_ANYWHERE = re.compile(r"[\\*_~`|\[\]<>#]")
# ... and these only at the start of a line: a list item ("- ", "1. ", "1) ") or subtext ("-# ").
_LIST_START = re.compile(r"^([ \t]*)(-|\+|\d{1,9}(?=[.)]))", re.MULTILINE)


class DiscordRenderOptions(ChannelOptions):
    """The keys of a Discord channel that shape its messages."""

    mode: Literal["embed", "content"] = "embed"
    """``embed``: one embed per post (the template, if any, is its description); ``content``: a plain
    message from the template (default: title, excerpt, link, hashtags)."""
    forum: bool = False
    """The webhook posts into a forum (or media) channel: each post opens a thread named after its title."""

    @field_validator("template")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            validate_template(value, platform="discord")
        except TemplateError as exc:
            raise ValueError(exc.reason) from None
        return value


def escape_markdown(text: str) -> str:
    """``text`` shown literally by Discord: a backslash before every markdown character, and before
    the marker of a list item or subtext at the start of a line. Linear in ``len(text)``."""
    text = _MARKDOWN_ANYWHERE.sub(r"\\\g<0>", text)
    return _LIST_START.sub(lambda m: _escape_list_marker(m[1], m[2]), text)


def _escape_list_marker(indent: str, marker: str) -> str:
    if marker.isdigit():  # "1." / "1)": the punctuation after the number is the marker
        return f"{indent}{marker}\\"
    return f"{indent}\\{marker}"


def unescape_markdown(text: str) -> str:
    """What Discord shows for ``text``'s escapes: a backslash before ASCII punctuation is dropped."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def _cut(text: str, limit: int, measure: Any = utf16_length) -> str:
    """``text`` within ``limit`` (by ``measure``): at a word with "…", else at a grapheme."""
    cut = truncate(text, limit, measure)
    if not cut and text:
        cut = longest_fitting(text, lambda candidate: measure(candidate) <= limit, words=False)
    return cut


def _escaped_vars(content: Content, title: str, excerpt: str, hashtags: Sequence[str]) -> TemplateVars:
    """The template's variables with every archive value escaped; the link as it is."""
    return TemplateVars(title=escape_markdown(title), excerpt=escape_markdown(excerpt), link=content.link,
                        tags=tuple(escape_markdown(tag) for tag in content.tags),
                        hashtags=escape_markdown(" ".join(hashtags)), date=content.date,
                        source=escape_markdown(content.source), author=escape_markdown(content.author))


def _composer(content: Content, template_text: str | None, *, key: str, default: str | None) -> Compose:
    """(title, excerpt, hashtags) → text: the template (or ``default``; None: the excerpt and
    hashtags, one paragraph each) over escaped values, with the link appended if it went missing."""
    source = template_text or default
    template = compile_template(source, html=False, key=key) if source else None
    link = content.link

    def compose(title: str, excerpt: str, hashtags: Sequence[str]) -> str:
        variables = _escaped_vars(content, title, excerpt, hashtags)
        if template is None:
            return tidy(f"{variables.excerpt}\n\n{variables.hashtags}")
        text = render_template(template, variables, key=key)
        if link and link not in text:
            text = f"{text}\n\n{link}" if text else link
        return text

    return compose


def thread_name(post: Post) -> str:
    """The forum thread's name: the post title (else the source's name), plain text, ≤ 100."""
    name = nfc(clean_inline(post.title)) or nfc(clean_inline(post.source)) or UNTITLED_THREAD
    return _cut(name, THREAD_NAME_LIMIT) or UNTITLED_THREAD


def render_discord(post: Post, options: DiscordRenderOptions, env: RenderEnv, *,
                   plain: bool = False) -> RenderedMessage:
    """The Execute Webhook body for one Discord channel. Pure; ``env`` is not used by Discord."""
    if plain or options.mode == "content":
        message = _content_message(post, options, plain=plain)
    else:
        message = _embed_message(post, options)
    if options.forum:
        payload = {**message.extra["payload"], "thread_name": thread_name(post)}
        message = RenderedMessage(text=message.text, link=message.link, format=message.format,
                                  length=message.length, limit=message.limit, extra={"payload": payload})
    return message


def _content_message(post: Post, options: DiscordRenderOptions, *, plain: bool) -> RenderedMessage:
    key = f"channels.{options.name}.template"
    cap = options.excerpt_length if options.excerpt_length is not None else DEFAULT_EXCERPT_LENGTH
    content = prepare(post, excerpt_length=cap, plain=plain, hashtags=options.hashtags,
                      max_hashtags=options.max_hashtags)
    compose = _composer(content, None if plain else options.template, key=key, default=DEFAULT_TEMPLATE_PLAIN)
    budget = plain_budget(CONTENT_LIMIT) if plain else CONTENT_LIMIT
    text, length = fit(content, compose, utf16_length, budget, link_only=link_text(content.link, html_mode=False))
    return RenderedMessage(text=text, link=post.url, format="markdown", length=length, limit=CONTENT_LIMIT,
                           extra={"payload": {"content": text}})


def _embed_message(post: Post, options: DiscordRenderOptions) -> RenderedMessage:
    key = f"channels.{options.name}.template"
    cap = options.excerpt_length if options.excerpt_length is not None else DEFAULT_EXCERPT_LENGTH
    content = prepare(post, excerpt_length=cap, hashtags=options.hashtags, max_hashtags=options.max_hashtags)
    link = content.link
    title = escape_markdown(_cut(content.title, TITLE_LIMIT, lambda t: utf16_length(escape_markdown(t))))
    footer = _cut(content.source, FOOTER_LIMIT)
    embed: dict[str, Any] = {}
    if title:
        embed["title"] = title
    if link:
        embed["url"] = link
    # without a title nothing in the embed is clickable: the description carries the link then
    compose = _composer(content, options.template, key=key, default=None)
    untitled_compose = compose
    if not title and link:
        def untitled_compose(t: str, excerpt: str, hashtags: Sequence[str]) -> str:
            text = compose(t, excerpt, hashtags)
            return text if link in text else tidy(f"{text}\n\n{link}")
    budget = min(DESCRIPTION_LIMIT, EMBEDS_TOTAL_LIMIT - utf16_length(title) - utf16_length(footer))
    description = _description(content, untitled_compose, budget)
    if description:
        embed["description"] = description
    if post.image_url:
        embed["image"] = {"url": post.image_url}
    if post.published is not None:
        embed["timestamp"] = post.published.astimezone(UTC).isoformat()
    if footer:
        embed["footer"] = {"text": footer}
    if not (title or description):
        raise RenderError("nothing to publish: the post has no title, excerpt or link")
    length = utf16_length(title) + utf16_length(description) + utf16_length(footer)
    shown = "\n\n".join(part for part in (title, description, link if link not in description else "", footer)
                        if part)
    # the image travels inside the embed (by URL); ``image_url`` stays None: nothing is sent as a photo
    return RenderedMessage(text=shown, link=post.url, format="markdown", length=length, limit=EMBEDS_TOTAL_LIMIT,
                           extra={"payload": {"embeds": [embed]}})


def _description(content: Content, compose: Compose, budget: int) -> str:
    """The embed's description within ``budget``: shortened by ``fit`` (excerpt first, then hashtags);
    "" when there is nothing to say."""
    if not compose(content.title, content.excerpt, content.hashtags).strip():
        return ""
    try:
        text, _ = fit(content, compose, utf16_length, budget, link_only="")
    except RenderError:
        return ""
    return text


__all__ = [
    "CONTENT_LIMIT",
    "DESCRIPTION_LIMIT",
    "EMBEDS_TOTAL_LIMIT",
    "FOOTER_LIMIT",
    "THREAD_NAME_LIMIT",
    "TITLE_LIMIT",
    "DiscordRenderOptions",
    "escape_markdown",
    "render_discord",
    "thread_name",
    "unescape_markdown",
]
