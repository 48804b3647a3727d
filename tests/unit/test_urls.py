"""The URL policy for what the network hands over (pure), and the bounded Retry-After parser."""

from __future__ import annotations

import math
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.schedule import source_retry_delay
from bot.domain.urls import FOLLOWED_SCHEMES, MAX_URL_LENGTH, url_refusal
from bot.sources.discover import discover_links, not_a_feed_reason
from bot.sources.http import MAX_RETRY_AFTER, parse_retry_after


@pytest.mark.parametrize("url", [
    "http://example.org/feed/",
    "https://EXAMPLE.org:8443/wp-json/?rest_route=/&x=1#top",
    "HTTPS://example.org/",
    "http://127.0.0.1:8080/feed",
    "http://[::1]:8080/feed",
    "https://bücher.example/feed?q=a b",
])
def test_http_and_https_urls_are_followed(url: str) -> None:
    assert url_refusal(url) is None


@pytest.mark.parametrize(("url", "named"), [
    ("file:///etc/passwd", "'file:'"),
    ("FILE:///etc/passwd", "'file:'"),
    ("file://localhost/etc/passwd", "'file:'"),
    ("data:application/rss+xml,<rss/>", "'data:'"),
    ("ftp://example.org/feed", "'ftp:'"),
    ("javascript:alert(1)", "'javascript:'"),
    ("ws://example.org/feed", "'ws:'"),
    ("wss://example.org/feed", "'wss:'"),
    ("gopher://example.org/", "'gopher:'"),
    ("jar:file:///x!/y", "'jar:'"),
    ("/feed/", "no scheme"),
    ("//example.org/feed/", "no scheme"),
    ("http:///feed/", "no host"),
    ("http://user:pw@example.org/feed/", "credentials"),
    ("http://user@example.org/feed/", "credentials"),
    ("http://example.org/a\nb", "control"),
    ("http://example.org/\x00", "control"),
    ("http://example.org/\u202egnp.exe", "control"),
    ("http://[::1/feed", "not a valid URL"),
    ("http://example.org:99999/", "not a valid URL"),
    ("http://example.org/" + "a" * MAX_URL_LENGTH, "characters"),
])
def test_everything_else_is_refused_and_named(url: str, named: str) -> None:
    reason = url_refusal(url)
    assert reason is not None and named in reason
    assert "passwd" not in reason and "alert" not in reason  # the scheme is named, never the rest


def test_credentials_of_the_trusted_url_itself_are_kept() -> None:
    page = "https://reader:pw@example.org/news/"
    assert url_refusal("https://reader:pw@example.org/feed/", trusted=page) is None
    assert url_refusal("https://reader:pw@example.org:444/feed/", trusted=page) is not None
    assert url_refusal("https://reader:pw@evil.example/feed/", trusted=page) is not None
    assert url_refusal("https://other:pw@example.org/feed/", trusted=page) is not None


@given(st.text(max_size=300))
def test_the_policy_never_raises_and_accepts_only_safe_http(url: str) -> None:
    reason = url_refusal(url)
    if reason is None:
        assert url.split(":", 1)[0].lower() in FOLLOWED_SCHEMES
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in url)
    else:
        assert len(reason) <= 200


@given(st.from_regex(r"[a-zA-Z][a-zA-Z0-9+.\-]{0,15}", fullmatch=True)
       .filter(lambda s: s.lower() not in FOLLOWED_SCHEMES))
def test_any_other_scheme_is_refused_by_name(scheme: str) -> None:
    reason = url_refusal(f"{scheme}://127.0.0.1/feed")
    assert reason is not None and f"'{scheme.lower()}:'" in reason


# --- discovery drops what it may not follow -------------------------------------------


def test_discovery_keeps_only_followable_links_and_names_the_refused_schemes() -> None:
    page = b"""<html><head>
<link rel="https://api.w.org/" href="file:///var/www/wp-json/" />
<link rel="alternate" type="application/rss+xml" href="file:///etc/passwd" />
<link rel="alternate" type="application/atom+xml" href="javascript:alert(1)" />
<link rel="alternate" type="application/feed+json" href="/feed/json" />
</head><body></body></html>"""
    found = discover_links(page, "https://site.example/", {"Link": '<data:,x>; rel="https://api.w.org/"'})
    assert found.rest_api is None
    assert [f.url for f in found.feeds] == ["https://site.example/feed/json"]
    assert found.best() == ("jsonfeed", "https://site.example/feed/json")
    assert sorted(reason.split("'")[1] for reason in found.refused) == ["data:", "file:", "file:", "javascript:"]


def test_a_file_page_cannot_lead_to_local_files_either() -> None:
    """An operator's local HTML page: its relative links resolve to file: URLs, which are refused."""
    page = b'<html><head><link rel="alternate" type="application/rss+xml" href="feed.xml"></head></html>'
    found = discover_links(page, "file:///srv/site/index.html")
    assert found.feeds == () and len(found.refused) == 1 and "'file:'" in found.refused[0]


# --- the body snippet -----------------------------------------------------------------


@given(st.binary(max_size=5000))
def test_the_body_snippet_is_bounded_and_free_of_control_characters(body: bytes) -> None:
    reason = not_a_feed_reason("unknown", body, expected="a feed")
    assert len(reason) <= 200
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in reason)


# --- Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [
    ("30", 30.0), (" 1.5 ", 1.5), ("0", 0.0), ("-5", None), ("soon", None), ("", None), (None, None),
    ("nan", None), ("inf", None), ("1e400", None), ("0x20", None), ("1_000", None), ("٣٠", None),
    ("99999999999", MAX_RETRY_AFTER), ("9" * 5000, MAX_RETRY_AFTER),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
    ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
    ("Wed, 21 Oct 2015 07:28:00 -0000", None),  # not an HTTP-date (those are GMT)
])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=1445412480 - 60) == seconds


@given(st.text(max_size=400))
def test_parse_retry_after_is_always_bounded(value: str) -> None:
    seconds = parse_retry_after(value, now=0)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER)


@given(backoff=st.floats(1, 10**5), retry_after=st.none() | st.floats(allow_nan=True, allow_infinity=True),
       cap=st.floats(1, 10**6))
def test_a_source_waits_at_least_its_retry_after_and_at_most_the_cap(backoff: float, retry_after: float | None,
                                                                   cap: float) -> None:
    wait = source_retry_delay(backoff, retry_after, cap)
    assert math.isfinite(wait) and wait >= backoff
    if retry_after is not None and math.isfinite(retry_after) and retry_after > backoff:
        assert wait == max(backoff, min(retry_after, cap))
    else:
        assert wait == backoff
