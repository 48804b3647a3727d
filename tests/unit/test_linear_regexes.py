"""Every regex that runs over feed or platform text costs time linear in the text.

Each case runs one public function on a 1 MB adversarial input in a child
process with a generous deadline. A backtracking regex that rescans the text
from every position (the shape of issue 15's ``_URL_PASSWORD``) needs minutes
to hours on such an input; a linear one needs well under a second. The child
is killed at the deadline, so a regression fails the test instead of hanging it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

DEADLINE_S = 20.0
"""Generous: the linear code needs < 1 s per case even on a loaded machine; the old code needs minutes."""

MB = 1_000_000

CASES = [
    pytest.param("from bot.log import redact_text as f", f"'ab1.' * {MB // 4}", id="log-url-password-scheme-run"),
    pytest.param("from bot.log import redact_url as f", f"'ab1.' * {MB // 4}", id="log-redact-url"),
    pytest.param("from bot.log import redact_text as f", f"'a://' + 'b:' * {MB // 2}", id="log-url-password-userinfo"),
    pytest.param("from bot.log import redact_text as f", f"'1' * {MB} + 'a'", id="log-bot-token-digits"),
    pytest.param("from bot.log import redact_text as f", f"'bearer ' * {MB // 7}", id="log-bearer"),
    pytest.param("from bot.log import redact_text as f", f"'oauth_token=' * {MB // 12}", id="log-oauth1"),
    pytest.param("from bot.log import redact_text as f", f"'?token=&' * {MB // 8}", id="log-query-secret"),
    pytest.param("from bot.domain.tags import slugify as f", f"'_' * {MB}", id="tags-spaces-underscores"),
    pytest.param("from bot.domain.tags import slugify as f", f"'-_' * {MB // 2}", id="tags-spaces-mixed"),
    pytest.param("from bot.render.text import break_points as f", f"'a-' * {MB // 2}", id="text-url-scheme-run"),
    pytest.param("from bot.render.text import break_points as f", f"'a.' * {MB // 2}", id="text-url-dots"),
    pytest.param("from bot.render.text import strip_trailers as f", f"'x' + ' ' * {MB} + 'x'",
                 id="text-trailers-spaces"),
    pytest.param("from bot.render.text import strip_trailers as f", f"'x' + '\\n' * {MB} + 'x'",
                 id="text-trailers-newlines"),
    pytest.param("from bot.render.text import strip_trailers as f", f"'x' + ' [ …' * {MB // 4}",
                 id="text-trailers-truncation-mark"),
    pytest.param("from bot.render.text import excerpt_of as f", f"'<p>x' + ' …' * {MB // 2}",
                 id="excerpt-chain-of-marks"),
    pytest.param("from bot.render.text import excerpt_of as f", f"'x' + ' read more …' * {MB // 12}",
                 id="excerpt-chain-of-trailers"),
    pytest.param("from bot.render.text import excerpt_of as f", f"'<' * {MB}", id="excerpt-html-lt"),
    pytest.param("from bot.render.text import excerpt_of as f", f"'<!--' * {MB // 4}", id="excerpt-html-comments"),
    pytest.param("from bot.render.text import excerpt_of as f", f"'&' * {MB}", id="excerpt-html-amp"),
    pytest.param("from bot.render.text import excerpt_of as f", f"'</' * {MB // 2}", id="excerpt-html-end-tags"),
    pytest.param("from bot.render.text import excerpt_of as f", f"'<a ' * {MB // 3}", id="excerpt-html-open-tags"),
    pytest.param("from bot.sources.rss import first_image as f", f"'<img ' * {MB // 5}", id="rss-img-src"),
    pytest.param("from bot.sources.rss import first_image as f", f"'<img src' * {MB // 8}", id="rss-img-src-attr"),
    pytest.param("from bot.sources.markup import html_alt\nf = lambda v: html_alt(v, 'https://s/x', first=True)",
                 f"'<img src=x alt=\"' * {MB // 14}", id="markup-img-alt-unclosed"),
    pytest.param("from bot.sources.markup import html_alt\nf = lambda v: html_alt(v, 'https://s/x')",
                 f"'<img src=y ' * {MB // 11}", id="markup-img-alt-by-src"),
    pytest.param("from bot.sources.markup import html_alt\nf = lambda v: html_alt(v, 'https://s/x', first=True)",
                 f"'<img src=x' + ' a=b' * {MB // 4}", id="markup-img-alt-many-attributes"),
    pytest.param("from bot.sources.discover import discover_links\n"
                 "f = lambda v: discover_links(b'', 'https://example.org/', {'Link': v})",
                 f"'<' * {MB}", id="discover-link-header"),
    pytest.param("from bot.sources.hubs import xml_links\nf = lambda v: xml_links(v.encode())",
                 f"'<link ' + 'a' * {MB}", id="hubs-attribute-name-run"),
    pytest.param("from bot.sources.hubs import xml_links\nf = lambda v: xml_links(v.encode())",
                 f"'<link a=\"' + 'b=\"' * {MB // 3}", id="hubs-attribute-unclosed-values"),
    pytest.param("from bot.sources.hubs import xml_links\nf = lambda v: xml_links(v.encode())",
                 f"'<' + 'a.' * {MB // 2}", id="hubs-prefix-run"),
    pytest.param("from bot.sources.hubs import xml_links\nf = lambda v: xml_links(v.encode())",
                 f"'<link' * {MB // 5}", id="hubs-unclosed-links"),
    pytest.param("from bot.render.mastodon import mastodon_length as f", f"'@a@' + '.' * {MB}",
                 id="mastodon-mention"),
    pytest.param("from bot.render.tghtml import telegram_html_problems as f", f"'<a ' * {MB // 3}", id="tghtml-token"),
    pytest.param("from bot.domain.rules import compiled\nf = compiled('(a+)+$').search", f"'a' * {MB} + '!'",
                 id="rules-catastrophic-pattern"),
    pytest.param("from bot.domain.rules import html_text as f", f"'<' * {MB}", id="rules-html-text-lt"),
    pytest.param("from bot.domain.tags import fold_words as f", f"'a\u0301\u064b ' * {MB // 4}",
                 id="rules-fold-marks"),
]


@pytest.mark.parametrize(("setup", "text"), CASES)
def test_regex_work_is_linear_on_a_megabyte_of_hostile_text(setup: str, text: str) -> None:
    code = f"{setup}\ntext = {text}\nf(text)\nprint('done')\n"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=DEADLINE_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{setup!r} on {text} did not finish within {DEADLINE_S:.0f} s: super-linear regex")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
