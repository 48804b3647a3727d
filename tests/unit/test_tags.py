"""Tag slugs: WordPress-compatible for ASCII, apostrophe- and case-insensitive, Unicode-aware."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.tags import _SEPARATORS, _separator, make_tag, make_tags, slugify


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Editor's picks", "editors-picks"),
        ("Iraq protest against Iran's meddling", "iraq-protest-against-irans-meddling"),
        ("Mujahedin-e Khalq", "mujahedin-e-khalq"),
        ("Iraqis' Uprising", "iraqis-uprising"),
        ("MEK", "mek"),
        ("  Basra   protest ", "basra-protest"),
        ("Q&amp;A", "qa"),
        ("Café Crème", "cafe-creme"),
        ("Straße", "strasse"),
        ("snake_case tag", "snake_case-tag"),
        ("version 2.0", "version-2-0"),
        ("a -- b", "a-b"),
    ],
)
def test_wordpress_compatible_slugs(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize("variant", ["Iran’s", "Iran's", "IRAN’S", "iran‘s", "Iranʼs", "Iran`s"])
def test_apostrophe_and_case_variants_are_one_tag(variant: str) -> None:
    assert slugify(f"Iraq protest against {variant} meddling") == "iraq-protest-against-irans-meddling"


def test_non_latin_scripts_keep_their_letters() -> None:
    assert slugify("日本語 タグ") == "日本語-タグ"
    assert slugify("اعتراضات عراق") == "اعتراضات-عراق"
    # NFKC: full-width letters fold to ASCII
    assert slugify("ＭＥＫ") == "mek"


def test_make_tags_dedupes_keeping_first_display_name() -> None:
    tags = make_tags(["Editor’s picks", "Editor's Picks", "MEK", "", "!!!"])
    assert [(t.slug, t.name) for t in tags] == [("editors-picks", "Editor’s picks"), ("mek", "MEK")]


def test_punctuation_only_name_is_not_a_tag() -> None:
    assert make_tag("—!?") is None


@given(st.text(max_size=60))
def test_slug_is_idempotent_and_clean(name: str) -> None:
    slug = slugify(name)
    assert slugify(slug) == slug
    assert slug == slug.strip("-")
    assert "--" not in slug
    assert not any(ch.isspace() for ch in slug)
    assert "'" not in slug and "’" not in slug


_OLD_SPACES = re.compile(r"[\s_\-]*\s[\s_\-]*|-+")
"""The quadratic separator pattern issue 15 replaced (rescanned a run of ``_`` from each position)."""


@given(st.text(alphabet=" \t\u00a0\u2003_-a", max_size=40))
def test_linear_separator_handling_matches_the_old_pattern(text: str) -> None:
    old = _OLD_SPACES.sub(lambda m: "-" if "_" not in m.group(0) else m.group(0).strip(), text)
    assert _SEPARATORS.sub(lambda m: _separator(m.group(0)), text) == old
