"""Golden files: every tricky post in tests/data/render/ beside its expected rendering per platform.

Each ``<case>.json`` holds a post, per-platform channel options and optional
per-platform ``RenderEnv`` values; ``<case>.expected.json`` holds what
``render_telegram``/``render_x``/``render_mastodon`` (normal and ``plain``) and
``render_console`` produce. To regenerate after an intended change, run::

    TAGRELAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render_golden.py

and review the diff of the ``.expected.json`` files.
"""

from __future__ import annotations

import html
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.domain.models import Post, Tag
from bot.render.console import render_console
from bot.render.mastodon import mastodon_length, render_mastodon
from bot.render.message import RenderedMessage, RenderEnv
from bot.render.options import MastodonRenderOptions, TelegramRenderOptions, XRenderOptions
from bot.render.telegram import render_telegram, telegram_html_problems, telegram_visible_text
from bot.render.x import render_x, x_weighted_length

DATA = Path(__file__).resolve().parents[1] / "data" / "render"
UPDATE = os.environ.get("TAGRELAY_UPDATE_GOLDEN") == "1"
CASES = sorted(p for p in DATA.glob("*.json") if not p.name.endswith(".expected.json"))


def post_from(data: dict[str, Any]) -> Post:
    published = data.get("published")
    return Post(
        key=data.get("key", "golden"),
        source=data.get("source", "example-archive"),
        title=data["title"],
        url=data.get("url"),
        summary_html=data.get("summary_html", ""),
        content_html=data.get("content_html", ""),
        tags=tuple(Tag(slug=name.casefold(), name=name) for name in data.get("tags", [])),
        published=datetime.fromisoformat(published) if published else None,
        image_url=data.get("image_url"),
        author=data.get("author"),
    )


def as_record(message: RenderedMessage) -> dict[str, Any]:
    return {
        "text": message.text,
        "format": message.format,
        "length": message.length,
        "limit": message.limit,
        "link": message.link,
        "image_url": message.image_url,
        "extra": dict(message.extra),
    }


def render_case(case: dict[str, Any]) -> dict[str, Any]:
    post = post_from(case["post"])
    options = case.get("options", {})
    envs = case.get("env", {})
    telegram = TelegramRenderOptions(name="golden_tg", platform="telegram", **options.get("telegram", {}))
    x = XRenderOptions(name="golden_x", platform="x", **options.get("x", {}))
    mastodon = MastodonRenderOptions(name="golden_md", platform="mastodon", **options.get("mastodon", {}))
    result: dict[str, Any] = {}
    for plain in (False, True):
        suffix = "_plain" if plain else ""
        result[f"telegram{suffix}"] = as_record(
            render_telegram(post, telegram, RenderEnv(**envs.get("telegram", {})), plain=plain))
        result[f"x{suffix}"] = as_record(render_x(post, x, RenderEnv(**envs.get("x", {})), plain=plain))
        result[f"mastodon{suffix}"] = as_record(
            render_mastodon(post, mastodon, RenderEnv(**envs.get("mastodon", {})), plain=plain))
    result["console"] = render_console(post, hashtags=options.get("console", {}).get("hashtags", False))
    return result


def check_invariants(case: dict[str, Any], rendered: dict[str, Any]) -> None:
    """What must hold whatever the expected text says."""
    link = case["post"].get("url")
    mastodon_env = case.get("env", {}).get("mastodon", {})
    for name, record in rendered.items():
        if name == "console":
            continue
        text = record["text"]
        assert record["length"] <= record["limit"], name
        visible = telegram_visible_text(text) if record["format"] == "html" else text
        if link:
            in_href = record["format"] == "html" and f'href="{html.escape(link, quote=True)}"' in text
            assert link in visible or in_href, f"{name}: link missing or altered"
        if record["format"] == "html":
            assert telegram_html_problems(text) == [], name
        if name.startswith("x"):
            assert x_weighted_length(text) == record["length"]
        if name.startswith("mastodon"):
            spoiler = record["extra"]["spoiler_text"] or ""
            assert mastodon_length(text, spoiler, url_length=mastodon_env.get("url_length", 23)) \
                == record["length"]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    rendered = render_case(case)
    check_invariants(case, rendered)
    expected_path = path.with_name(f"{path.stem}.expected.json")
    if UPDATE:
        expected_path.write_text(json.dumps(rendered, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return
    assert expected_path.exists(), f"no {expected_path.name}; run with TAGRELAY_UPDATE_GOLDEN=1 and review"
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    for name in sorted(set(expected) | set(rendered)):
        assert rendered.get(name) == expected.get(name), f"{path.stem}: {name} differs from the golden file"


def test_golden_folder_is_not_empty() -> None:
    assert len(CASES) >= 10
