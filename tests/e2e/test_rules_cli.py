"""Subscription rules end to end through the real CLI, on the shipped sample archive.

Three channels with different rules: ``run --once`` first records a baseline (the archive's oldest
post only), then the whole archive arrives and each channel gets exactly the posts its rules select;
``explain`` gives the right reason for every (post, channel) pair, and ``subscriptions`` shows each rule
in one line. The CLI runs in this process (``bot.cli.main``), as in test_cli.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.cli import main

ROOT = Path(__file__).resolve().parents[2]
SITE = "https://archive.example.org"
POSTS = {  # short name → link, in the sample archive
    "students": "2020/02/16/iraqi-students-keep-marching/",
    "crackdown": "2020/02/09/crackdown-deepens-as-protests-spread/",
    "soleimani": "2020/01/28/after-soleimani-the-rally-that-wasnt/",
    "mek-way": "2020/01/24/mek-iraqs-way-out/",
    "karbala": "2020/01/22/karbala-crowd-storms-consulate/",
    "tehran": "2020/01/20/tehrans-strategic-depth-is-crumbling/",
    "khamenei": "2020/01/15/khamenei-ends-his-silence/",
    "najaf": "2020/01/09/najaf-renames-its-main-street/",
    "rights": "2020/01/03/rights-monitors-count-the-cost/",  # the oldest: in the baseline
}

CONFIG = """
[storage]
url = "sqlite+aiosqlite:///{db}"

[health]
enabled = false

[delivery]
pacing = false

[[sources]]
name = "archive"
url = "archive.xml"
interval = "30s"

[[channels]]
name = "iraq-news"
platform = "console"
stream = "stderr"

[[channels]]
name = "mek-desk"
platform = "console"
stream = "stderr"

[[channels]]
name = "editors"
platform = "console"
stream = "stderr"
exclude_tags = ["PMOI"]                      # never, whichever subscription matches

# everything about Iraq's protests against Iran, except what is about the MEK
[[subscriptions]]
tag = "Iraq protest against Iran’s meddling"
channels = ["iraq-news"]
none_tags = ["MEK"]

# MEK posts that are about Iraq too, but nothing about Soleimani ...
[[subscriptions]]
tag = "MEK"
channels = ["mek-desk"]
all_tags = ["Iraq"]
exclude_keywords = ["Soleimani"]

# ... and the uprising, still without Soleimani: one delivery per post however many match
[[subscriptions]]
tag = "Iraqis' Uprising"
channels = ["mek-desk"]
exclude_keywords = ["soleimani"]

# terrorism pieces by two authors, but no headline that starts with "Tehran"
[[subscriptions]]
tag = "Iran Terrorism"
channels = ["editors"]
include_keywords = ["author:Laila Farahani", "author:Omid R"]
patterns = ["title!=^Tehran"]
"""

MEDDLING_NONE = "kept out by subscription Iraq protest against Iran’s meddling's none_tags"
EXPECTED = {  # (post, channel) → (outcome, the reason's start)
    ("students", "iraq-news"): ("sent", "routed by subscription Iraq protest against Iran’s meddling"),
    ("karbala", "iraq-news"): ("sent", "routed by subscription Iraq protest against Iran’s meddling"),
    ("najaf", "iraq-news"): ("sent", "routed by subscription Iraq protest against Iran’s meddling"),
    ("crackdown", "iraq-news"): ("filtered", "kept out by subscription Iraq protest against Iran’s meddling's "
                                             "none_tags: it is tagged MEK"),
    ("soleimani", "iraq-news"): ("filtered", MEDDLING_NONE),
    ("mek-way", "iraq-news"): ("filtered", MEDDLING_NONE),
    ("tehran", "iraq-news"): ("filtered", MEDDLING_NONE),
    ("khamenei", "iraq-news"): ("filtered", MEDDLING_NONE),
    ("rights", "iraq-news"): ("no subscribed tag",
                              "none of its tags (Human Rights & Justice, Iraq, Iraq protest, MEK)"),

    ("crackdown", "mek-desk"): ("sent", "routed by subscription MEK"),
    ("tehran", "mek-desk"): ("sent", "routed by subscription Iraqis' Uprising, MEK"),
    ("khamenei", "mek-desk"): ("sent", "routed by subscription Iraqis' Uprising, MEK"),
    ("najaf", "mek-desk"): ("sent", "routed by subscription Iraqis' Uprising"),
    ("soleimani", "mek-desk"): ("filtered", "kept out by subscription Iraqis' Uprising's exclude_keywords: its title "
                                            "contains 'soleimani'; subscription MEK: exclude_keywords"),
    ("mek-way", "mek-desk"): ("filtered", "kept out by subscription MEK's all_tags: it is not tagged Iraq"),
    ("students", "mek-desk"): ("no subscribed tag", "none of its tags"),
    ("karbala", "mek-desk"): ("no subscribed tag", "none of its tags"),
    ("rights", "mek-desk"): ("not routed", "the post was recorded by its source's first poll"),

    ("crackdown", "editors"): ("sent", "routed by subscription Iran Terrorism"),
    ("mek-way", "editors"): ("filtered", "kept out by subscription Iran Terrorism's include_keywords: none of "
                                         "'author:Laila Farahani', 'author:Omid R' is in it"),
    ("tehran", "editors"): ("filtered",
                            "kept out by subscription Iran Terrorism's patterns: its title matches ^Tehran"),
    ("khamenei", "editors"): ("filtered", "kept out by the channel's own exclude_tags: it is tagged PMOI"),
    ("students", "editors"): ("no subscribed tag", "none of its tags"),
    ("soleimani", "editors"): ("no subscribed tag", "none of its tags"),
    ("karbala", "editors"): ("no subscribed tag", "none of its tags"),
    ("najaf", "editors"): ("no subscribed tag", "none of its tags"),
    ("rights", "editors"): ("no subscribed tag", "none of its tags"),
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("TAGRELAY_CONFIG", "TAGRELAY_LOG_FORMAT", "TAGRELAY_STORAGE_URL"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "tagrelay.toml").write_text(CONFIG.format(db=tmp_path / "tagrelay.db"), encoding="utf-8")
    return tmp_path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--config", "tagrelay.toml", *args])
    out, err = capsys.readouterr()
    return code, out, err


def write_archive(folder: Path, *, only_oldest: bool) -> None:
    text = (ROOT / "config" / "sample-archive.xml").read_text(encoding="utf-8")
    if only_oldest:
        items = re.findall(r"\t<item>.*?</item>\n", text, flags=re.DOTALL)
        assert len(items) == len(POSTS)
        for item in items[:-1]:
            text = text.replace(item, "")
    (folder / "archive.xml").write_text(text, encoding="utf-8")


def test_three_channels_get_exactly_what_their_rules_select_and_explain_says_why(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_archive(workdir, only_oldest=True)
    code, _, err = cli(capsys, "run", "--once")
    assert code == 0, err
    assert "outcome=baseline" in err
    write_archive(workdir, only_oldest=False)
    code, _, err = cli(capsys, "run", "--once")
    assert code == 0, err
    assert "outcome=new" in err and "filtered=10" in err

    code, out, _ = cli(capsys, "deliveries", "--json", "--limit", "100")
    got = {(d["post_url"], d["channel"]) for d in json.loads(out)}
    sent = {(SITE + "/" + POSTS[post], channel) for (post, channel), (outcome, _) in EXPECTED.items()
            if outcome == "sent"}
    assert got == sent
    assert {d["status"] for d in json.loads(out)} == {"sent"}

    for (post, channel), (outcome, reason) in EXPECTED.items():
        code, out, err = cli(capsys, "explain", SITE + "/" + POSTS[post], "--channel", channel, "--json")
        assert code == 0, err
        (answer,) = json.loads(out)["channels"]
        assert (answer["outcome"], answer["reason"][:len(reason)]) == (outcome, reason), (post, channel)

    # the table: every configured channel, one line each
    code, out, _ = cli(capsys, "explain", SITE + "/" + POSTS["khamenei"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Khamenei Ends His Silence on the Region’s Unrest"
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in
            ("iraq-news", "mek-desk", "editors")}
    assert "filtered" in rows["iraq-news"] and "sent" in rows["mek-desk"] and "filtered" in rows["editors"]


def test_subscriptions_show_each_rule_on_one_line_and_in_full_as_json(workdir: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    write_archive(workdir, only_oldest=False)
    assert cli(capsys, "run", "--once")[0] == 0  # applies the config's subscriptions
    code, out, err = cli(capsys, "subscriptions")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["TAG", "CHANNEL", "RULE", "FROM"]
    assert [re.split(r"\s{2,}", line) for line in out.splitlines()[1:]] == [
        ["Iran Terrorism", "editors", '"author:Laila Farahani" "author:Omid R" title!=^Tehran', "config"],
        ["Iraq protest against Iran’s meddling", "iraq-news", "-MEK", "config"],
        ["Iraqis' Uprising", "mek-desk", '-"soleimani"', "config"],
        ["MEK", "mek-desk", '+Iraq -"Soleimani"', "config"],
    ]
    code, out, _ = cli(capsys, "subscriptions", "--json", "--channel", "editors")
    (sub,) = json.loads(out)
    assert sub["rule"] == {"all_tags": [], "none_tags": [],
                           "include_keywords": ["author:Laila Farahani", "author:Omid R"], "exclude_keywords": [],
                           "patterns": ["title!=^Tehran"], "max_age": None, "sources": []}

    # a rule given on the command line: validated like the file's, audited, shown the same way
    code, out, err = cli(capsys, "subscribe", "Editor’s picks", "editors", "--exclude-tags", "Opinion",
                         "--include-keywords", "title:Iraq’s", "--max-age", "2d", "--source", "archive")
    assert code == 0, err
    assert out == "Editor’s picks → editors: subscribed [source:archive age:2d -Opinion \"title:Iraq’s\"]\n"
    code, _, err = cli(capsys, "subscribe", "Editor’s picks", "editors", "--pattern", "title=(a+")
    assert code == 2 and err == "tagrelay: --pattern: not a valid RE2 regular expression (missing ))\n"
    code, _, err = cli(capsys, "subscribe", "Editor’s picks", "editors", "--source", "elsewhere")
    assert code == 2 and "unknown source 'elsewhere'" in err
    code, _, err = cli(capsys, "subscribe", "Editor’s picks", "editors", "--max-age", "forever")
    assert code == 2 and err.startswith("tagrelay: --max-age: ")
    code, out, _ = cli(capsys, "audit", "--json")
    assert [(e["action"], e["detail"]) for e in json.loads(out)] == [
        ("subscribe", "Editor’s picks → editors [source:archive age:2d -Opinion \"title:Iraq’s\"]")]


def test_a_pattern_that_does_not_compile_is_a_config_error_naming_the_key(workdir: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    write_archive(workdir, only_oldest=False)
    config = workdir / "tagrelay.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('"title!=^Tehran"', '"title!=(?<=x)Tehran"'),
                      encoding="utf-8")
    code, _, err = cli(capsys, "config", "check")
    assert code == 2
    assert err == ("tagrelay: config error: subscriptions[3].patterns[0]: not a valid RE2 regular expression "
                   "(invalid perl operator)\n")
    assert not (workdir / "tagrelay.db").exists()


def test_the_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["subscribe", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--exclude-tags T [T ...]" in out and "--pattern FIELD=RE" in out and "examples:" in out
    assert "tagrelay subscribe Iraq news-tg --exclude-tags Opinion" in out
