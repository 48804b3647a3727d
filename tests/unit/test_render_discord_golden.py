"""Golden files for Discord: every tricky post of tests/data/render/ (and Discord's own cases in
tests/data/render/discord/) beside the Execute Webhook body it renders to.

For each case, ``tests/data/render/discord/<case>.expected.json`` holds the rendering in four shapes:
``embed`` (the default), ``content`` (``mode = "content"``), ``plain`` (the fallback after a
refusal) and ``forum`` (``forum = true``), each with the case's ``options.discord`` on top. To
regenerate after an intended change::

    TAGRELAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render_discord_golden.py

and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.render.discord import DiscordRenderOptions, escape_markdown, render_discord, unescape_markdown
from bot.render.message import RenderEnv
from bot.render.tghtml import utf16_length
from tests.fakes.discord_api import validate_message
from tests.unit.test_render_golden import DATA, UPDATE, as_record, post_from

OWN = DATA / "discord"
CASES = sorted([*DATA.glob("*.json"), *OWN.glob("*.json")])
CASES = [p for p in CASES if not p.name.endswith(".expected.json")]
SHAPES: dict[str, dict[str, Any]] = {"embed": {}, "content": {"mode": "content"}, "plain": {}, "forum": {"forum": True}}


def render_case(case: dict[str, Any]) -> dict[str, Any]:
    post = post_from(case["post"])
    own = case.get("options", {}).get("discord", {})
    result: dict[str, Any] = {}
    for shape, extra in SHAPES.items():
        options = DiscordRenderOptions(name="golden_dc", platform="discord", **{**own, **extra})
        result[shape] = as_record(render_discord(post, options, RenderEnv(), plain=shape == "plain"))
    return result


def check_invariants(case: dict[str, Any], rendered: dict[str, Any]) -> None:
    link = case["post"].get("url")
    for shape, record in rendered.items():
        body = record["extra"]["payload"]
        assert validate_message(body) == {}, shape  # what the fake Discord would refuse
        assert 0 < record["length"] <= record["limit"], shape
        forum = shape == "forum" or case.get("options", {}).get("discord", {}).get("forum", False)
        assert ("thread_name" in body) == forum, shape
        if "content" in body:
            assert utf16_length(body["content"]) == record["length"]
            if link:
                assert link in body["content"], f"{shape}: link missing or altered"
        else:
            [embed] = body["embeds"]
            assert embed.get("url") == link
            if "title" in embed:  # no markdown character of the title is left bare
                assert escape_markdown(unescape_markdown(embed["title"])) == embed["title"], shape


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    rendered = render_case(case)
    check_invariants(case, rendered)
    expected_path = OWN / f"{path.stem}.expected.json"
    if UPDATE:
        expected_path.write_text(json.dumps(rendered, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return
    assert expected_path.exists(), f"no {expected_path.name}; run with TAGRELAY_UPDATE_GOLDEN=1 and review"
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    for shape in sorted(set(expected) | set(rendered)):
        assert rendered.get(shape) == expected.get(shape), f"{path.stem}: {shape} differs from the golden file"


def test_every_shared_case_has_a_discord_rendering() -> None:
    assert len(CASES) >= 15
    assert {p.stem for p in CASES} == {p.name.removesuffix(".expected.json") for p in OWN.glob("*.expected.json")}
