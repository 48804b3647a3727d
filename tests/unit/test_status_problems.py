"""The problem line ``status`` (and the admin bot's /status) shows for a channel's dead and unknown deliveries
names a command that lists them: ``deliveries --status`` takes one status, so each kind gets its own."""

from __future__ import annotations

import re

import pytest

from bot.services.reports import deliveries_problem


@pytest.mark.parametrize(("dead", "unknown", "statuses"), [
    (2, 0, ["dead"]),
    (0, 1, ["unknown"]),  # was "--status dead", which lists none of them
    (3, 4, ["dead", "unknown"]),
])
def test_the_hint_lists_every_kind_that_needs_a_look(dead: int, unknown: int, statuses: list[str]) -> None:
    line = deliveries_problem(dead, unknown)
    assert line.startswith(f"{dead} dead, {unknown} unknown deliveries need a look (")
    assert re.findall(r"tagrelay deliveries --status (\w+)", line) == statuses
