"""bot.render.templates: sandboxed channel templates, escaping per platform, early validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.domain.models import Post, Tag
from bot.errors import ConfigError
from bot.publishers.api import ChannelOptions
from bot.render.mastodon import render_mastodon
from bot.render.message import RenderEnv
from bot.render.options import MastodonRenderOptions, TelegramRenderOptions, XRenderOptions
from bot.render.telegram import render_telegram
from bot.render.templates import (
    DEFAULT_TEMPLATE_HTML,
    DEFAULT_TEMPLATE_PLAIN,
    TemplateError,
    TemplateVars,
    compile_template,
    render_template,
    tidy,
    validate_template,
)
from bot.render.x import render_x
from bot.validation import ValidationError

POST = Post(key="k", source="Example <Archive>", title='Q&A: <script> in "quotes"',
            url="https://example.com/q?a=1&b=2", summary_html="<p>Fish &amp; chips &lt;3</p>",
            content_html="", tags=(Tag("editors-picks", "Editor’s picks"), Tag("news", "News")),
            published=datetime(2024, 5, 1, 12, 0, tzinfo=UTC), author="Jane <Doe>")

MALICIOUS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ title.__class__.__base__.__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ tags.__class__ }}",
    "{{ title.__init__.__globals__ }}",
    "{{ range.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ lipsum.__globals__.os.popen('id').read() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ config }}",
    "{{ request }}",
    "{{ title|attr('__class__') }}",
    "{{ '{0.__class__}'.format(title) }}",
    "{{ tags.append('x') }}",
    "{{ tags.pop() }}",
    "{{ 'a' * 1000000000 }}",
    "{{ 9 ** 99999999 }}",
    "{{ '%999999999s' % title }}",
    "{{ title.center(1000000000) }}",
    "{{ title.ljust(1000000000) }}",
    "{{ '{0:>999999999}'.format(title) }}",
    "{{ title|indent(1000000000) }}",
    "{{ title|center(1000000000) }}",
    "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% for i in range(100000) %}{{ link }}{% endfor %}",
    "{{ range(100000)|join(',') }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{{ link }}{% endfor %}{% endfor %}",
    "{{ (range(9000)|join(','))|replace(',', title * 500) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
]


@pytest.mark.parametrize("body", MALICIOUS)
def test_malicious_template_raises_instead_of_leaking(body: str) -> None:
    template = body + " {{ link }}"
    with pytest.raises(TemplateError) as info:
        validate_template(template, platform="x", key="channels.evil.template")
    message = str(info.value)
    assert message.startswith("channels.evil.template: ")
    # the reason may name the refused attribute, never show what it would have revealed
    for leak in ("<class", "<module", "<function", "<built-in", "uid=", "0x", "{'"):
        assert leak not in message


@pytest.mark.parametrize("body", MALICIOUS[:12])
def test_malicious_template_raises_at_render_time_too(body: str) -> None:
    # options built directly, skipping validation, still cannot leak at render time
    options = XRenderOptions.model_construct(name="evil", platform="x", template=body + " {{ link }}")
    with pytest.raises(TemplateError) as info:
        render_x(POST, options, RenderEnv())
    assert info.value.key == "channels.evil.template"


@pytest.mark.parametrize(
    ("model", "platform", "template", "reason"),
    [
        (TelegramRenderOptions, "telegram", "<p>{{ title }}</p>{{ link }}", "unsupported tag <p>"),
        (XRenderOptions, "x", "{{ title }}", "must contain {{ link }}"),
        (MastodonRenderOptions, "mastodon", "{{ ''.__class__ }}{{ link }}", "not allowed in a template"),
    ],
)
def test_channel_options_validate_the_template_at_config_load(
        model: type[ChannelOptions], platform: str, template: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({"name": "c", "platform": platform, "template": template})
    error = info.value.errors()[0]
    assert error["loc"] == ("template",)
    assert reason in error["msg"]


def test_template_error_is_a_config_error_with_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        validate_template("{{ title", key="channels.news.template")
    assert info.value.key == "channels.news.template"
    assert "syntax error on line 1" in info.value.reason


def test_unknown_variable() -> None:
    with pytest.raises(TemplateError, match="unknown variable titel; available: title, excerpt"):
        validate_template("{{ titel }} {{ link }}")


def test_link_is_required() -> None:
    with pytest.raises(TemplateError, match="must contain"):
        validate_template("{{ title }}")


def test_template_size_is_capped() -> None:
    with pytest.raises(TemplateError, match="longer than"):
        validate_template("{{ link }}" + "x" * 5000)


@pytest.mark.parametrize("text", [DEFAULT_TEMPLATE_HTML, DEFAULT_TEMPLATE_PLAIN])
def test_defaults_are_valid(text: str) -> None:
    validate_template(text, platform="telegram")
    validate_template(text, platform="mastodon")


def test_telegram_templates_must_use_supported_html() -> None:
    with pytest.raises(TemplateError, match="unsupported tag <p>"):
        validate_template("<p>{{ title }}</p>{{ link }}", platform="telegram")
    with pytest.raises(TemplateError, match="unclosed <b>"):
        validate_template("<b>{{ title }} {{ link }}", platform="telegram")
    validate_template("<p>{{ title }}</p>{{ link }}", platform="x")  # plain: no markup rules


def test_every_variable() -> None:
    template = compile_template("{{ title }}|{{ excerpt }}|{{ link }}|{{ tags|join(',') }}|{{ hashtags }}|"
                                "{{ date }}|{{ source }}|{{ author }}", html=False)
    variables = TemplateVars(title="T", excerpt="E", link="L", tags=("a", "b"), hashtags="#A #B",
                             date="2024-05-01", source="S", author="Au")
    assert render_template(template, variables) == "T|E|L|a,b|#A #B|2024-05-01|S|Au"


def test_html_escapes_every_value_even_through_filters() -> None:
    template = compile_template("<b>{{ title }}</b> {{ title|upper }} {{ tags|join(' & ') }} {{ link }}",
                                html=True)
    variables = TemplateVars(title='<i>&"', excerpt="", link="https://e.com/?a=1&b=2", tags=("<x>", "y"))
    assert render_template(template, variables) == (
        "<b>&lt;i&gt;&amp;&quot;</b> &lt;I&gt;&amp;&quot; &lt;x&gt; &amp; y https://e.com/?a=1&amp;b=2")


def test_safe_filter_does_not_exist() -> None:
    with pytest.raises(TemplateError, match="safe"):
        validate_template("{{ title|safe }} {{ link }}", platform="telegram")


def test_plain_templates_do_not_escape() -> None:
    template = compile_template("{{ title }} {{ link }}", html=False)
    assert render_template(template, TemplateVars(title="<b>&", excerpt="", link="L")) == "<b>& L"


def test_custom_template_on_each_platform() -> None:
    telegram = TelegramRenderOptions(
        name="tg", platform="telegram", hashtags=True,
        template='<b><a href="{{ link }}">{{ title }}</a></b>\n<i>{{ source }}, {{ date }}, {{ author }}</i>\n\n'
                 "{{ excerpt }}\n\n{{ hashtags }}")
    message = render_telegram(POST, telegram, RenderEnv())
    assert message.text == (
        '<b><a href="https://example.com/q?a=1&amp;b=2">Q&amp;A: &lt;script&gt; in &quot;quotes&quot;</a></b>\n'
        "<i>Example &lt;Archive&gt;, 2024-05-01, Jane &lt;Doe&gt;</i>\n\nFish &amp; chips &lt;3\n\n"
        "#EditorsPicks #News")
    mastodon = MastodonRenderOptions(name="md", platform="mastodon",
                                     template="{{ title }} — {{ author }}\n{{ link }}")
    assert render_mastodon(POST, mastodon, RenderEnv()).text == (
        'Q&A: <script> in "quotes" — Jane <Doe>\nhttps://example.com/q?a=1&b=2')


def test_plain_fallback_ignores_the_custom_template() -> None:
    options = TelegramRenderOptions(name="tg", platform="telegram", template="<i>{{ title }}</i> {{ link }}")
    message = render_telegram(POST, options, RenderEnv(), plain=True)
    assert message.text.startswith('Q&A: <script> in "quotes"\n\n')


def test_link_hidden_by_a_template_is_appended() -> None:
    options = XRenderOptions(name="x", platform="x", template="{{ title }}{% if false %}{{ link }}{% endif %}")
    assert render_x(POST, options, RenderEnv()).text.endswith("\n\nhttps://example.com/q?a=1&b=2")


def test_post_data_that_breaks_telegram_html_falls_back_to_the_default() -> None:
    options = TelegramRenderOptions(name="tg", platform="telegram",
                                    template='<a href="{{ link }}">{{ title }}</a>')
    no_link = Post(key="k", source="s", title="T", url=None, summary_html="", content_html="", tags=(),
                   published=None)
    message = render_telegram(no_link, options, RenderEnv())
    assert message.text == "<b>T</b>"
    assert "without href" in message.extra["template_fallback"]


def test_tidy() -> None:
    assert tidy("\n\nA  \n\n\n\nB\t\n\n") == "A\n\nB"
