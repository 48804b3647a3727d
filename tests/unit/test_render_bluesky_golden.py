"""Golden files for Bluesky: every shared tricky post in tests/data/render/ (and the Bluesky-only ones in
tests/data/render/bluesky/) beside its expected record text, facets and card.

``<case>.expected.json`` in tests/data/render/bluesky/ holds four renderings: the default (a link card, the
URL not in the text), ``link_in_text``, ``no_card`` and ``plain`` (the fallback). Options come from the
case's ``options.bluesky``, else the common keys of its ``options.mastodon``. To regenerate after an
intended change::

    TAGRELAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render_bluesky_golden.py

and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bot.domain.models import Post
from bot.render.bluesky import MAX_BYTES, BlueskyRenderOptions, render_bluesky, utf8_length
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.text import grapheme_length
from tests.unit.test_render_bluesky import check_facets
from tests.unit.test_render_golden import post_from

DATA = Path(__file__).resolve().parents[1] / "data" / "render"
OUT = DATA / "bluesky"
UPDATE = os.environ.get("TAGRELAY_UPDATE_GOLDEN") == "1"
CASES = sorted([*(p for p in DATA.glob("*.json") if not p.name.endswith(".expected.json")),
                *(p for p in OUT.glob("*.json") if not p.name.endswith(".expected.json"))])
COMMON = ("template", "hashtags", "max_hashtags", "excerpt_length")


def options_for(case: dict[str, Any]) -> dict[str, Any]:
    given = case.get("options", {})
    if "bluesky" in given:
        return dict(given["bluesky"])
    return {k: v for k, v in given.get("mastodon", {}).items() if k in COMMON}


def as_record(message: RenderedMessage) -> dict[str, Any]:
    return {"text": message.text, "length": message.length, "bytes": utf8_length(message.text),
            "image_url": message.image_url, "image_alt": message.image_alt, "extra": dict(message.extra)}


def render_case(case: dict[str, Any]) -> dict[str, Any]:
    data = case["post"]
    post: Post = post_from(data)
    if data.get("image_alt"):
        post = Post(**{**{f: getattr(post, f) for f in Post.__dataclass_fields__}, "image_alt": data["image_alt"]})
    base = {"name": "golden_bsky", "platform": "bluesky", **options_for(case)}
    variants = {"bluesky": {}, "bluesky_link_in_text": {"link_in_text": True},
                "bluesky_no_card": {"link_card": False}}
    out = {name: as_record(render_bluesky(post, BlueskyRenderOptions.model_validate({**base, **extra}),
                                          RenderEnv()))
           for name, extra in variants.items()}
    out["bluesky_plain"] = as_record(render_bluesky(post, BlueskyRenderOptions.model_validate(base), RenderEnv(),
                                                    plain=True))
    return out


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    rendered = render_case(case)
    link = case["post"].get("url")
    for name, record in rendered.items():
        text = record["text"]
        assert record["length"] == grapheme_length(text) <= 300 and record["bytes"] <= MAX_BYTES, name
        check_facets(text, record["extra"]["facets"])
        card = record["extra"]["card"]
        if link and (card is None or name == "bluesky_link_in_text"):
            assert link in text, f"{name}: link missing"
    expected_path = OUT / f"{path.stem}.expected.json"
    if UPDATE:
        expected_path.write_text(json.dumps(rendered, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return
    assert expected_path.exists(), f"no {expected_path.name}; run with TAGRELAY_UPDATE_GOLDEN=1 and review"
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    for name in sorted(set(expected) | set(rendered)):
        assert rendered.get(name) == expected.get(name), f"{path.stem}: {name} differs from the golden file"


def test_golden_folder_is_not_empty() -> None:
    assert len(CASES) >= 15
