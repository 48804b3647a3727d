"""Golden files for Threads: every shared case of tests/data/render/ and the Threads-only cases of
tests/data/render/threads/cases/, rendered normally and ``plain``.

Expected renderings live beside them in tests/data/render/threads/ (``<case>.expected.json`` for a
shared case, ``cases/<case>.expected.json`` for a Threads-only one). A shared case's Threads options are
its ``options.threads`` table, else the keys of its Mastodon table that a Threads channel has too.
Regenerate after an intended change with::

    TAGRELAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render_threads_golden.py

and review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.domain.models import Post, Tag
from bot.render.message import RenderEnv
from bot.render.options import ThreadsRenderOptions
from bot.render.threads import ALT_TEXT_LIMIT, LIMIT, MAX_LINKS, render_threads, threads_length, threads_links

DATA = Path(__file__).resolve().parents[1] / "data" / "render"
OWN = DATA / "threads"
UPDATE = os.environ.get("TAGRELAY_UPDATE_GOLDEN") == "1"
SHARED = sorted(p for p in DATA.glob("*.json") if not p.name.endswith(".expected.json"))
CASES = sorted(p for p in (OWN / "cases").glob("*.json") if not p.name.endswith(".expected.json"))
THREADS_KEYS = set(ThreadsRenderOptions.model_fields) - {"name", "platform"}


def post_from(data: dict[str, Any]) -> Post:
    published = data.get("published")
    return Post(
        key=data.get("key", "golden"), source=data.get("source", "example-archive"), title=data["title"],
        url=data.get("url"), summary_html=data.get("summary_html", ""), content_html=data.get("content_html", ""),
        tags=tuple(Tag(slug=name.casefold(), name=name) for name in data.get("tags", [])),
        published=datetime.fromisoformat(published) if published else None,
        image_url=data.get("image_url"), author=data.get("author"), image_alt=data.get("image_alt"))


def options_of(case: dict[str, Any]) -> ThreadsRenderOptions:
    tables = case.get("options", {})
    table = tables.get("threads")
    if table is None:
        table = {k: v for k, v in tables.get("mastodon", {}).items() if k in THREADS_KEYS}
    return ThreadsRenderOptions(name="golden_threads", platform="threads", **table)


def render_case(case: dict[str, Any]) -> dict[str, Any]:
    post = post_from(case["post"])
    options = options_of(case)
    out: dict[str, Any] = {}
    for plain in (False, True):
        message = render_threads(post, options, RenderEnv(), plain=plain)
        out["threads_plain" if plain else "threads"] = {
            "text": message.text, "length": message.length, "limit": message.limit, "link": message.link,
            "image_url": message.image_url, "image_alt": message.image_alt, "extra": dict(message.extra)}
    return out


def check_invariants(case: dict[str, Any], rendered: dict[str, Any]) -> None:
    link = case["post"].get("url")
    for name, record in rendered.items():
        text = record["text"]
        assert threads_length(text) == record["length"] <= LIMIT, name
        assert len(threads_links(text, record["extra"]["link_attachment"])) <= MAX_LINKS, name
        if link:
            assert link in text, f"{name}: link missing or altered"
        if record["image_alt"] is not None:
            assert len(record["image_alt"]) <= ALT_TEXT_LIMIT
        assert (record["extra"]["media_type"] == "IMAGE") == (record["image_url"] is not None)
        if record["extra"]["media_type"] == "IMAGE":
            assert record["extra"]["link_attachment"] is None  # link attachments are for text posts only


def check(path: Path, expected_path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    rendered = render_case(case)
    check_invariants(case, rendered)
    if UPDATE:
        expected_path.write_text(json.dumps(rendered, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return
    assert expected_path.exists(), f"no {expected_path}; run with TAGRELAY_UPDATE_GOLDEN=1 and review"
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    for name in sorted(set(expected) | set(rendered)):
        assert rendered.get(name) == expected.get(name), f"{path.stem}: {name} differs from the golden file"


@pytest.mark.parametrize("path", SHARED, ids=[p.stem for p in SHARED])
def test_shared_case(path: Path) -> None:
    check(path, OWN / f"{path.stem}.expected.json")


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_threads_case(path: Path) -> None:
    check(path, path.with_name(f"{path.stem}.expected.json"))


def test_the_cases_are_there() -> None:
    assert len(SHARED) >= 10 and len(CASES) >= 4
