"""Issue 15 defect 2: reports over a database holding megabyte titles and tag names stay fast and bounded.

Databases written before the size bounds (domain/limits.py) may hold any size. Each command runs
in a child process with a generous deadline: the old quadratic redaction of the report took
minutes on a 1 MB title; the human table also cuts long cells.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import MAX_CELL_CHARS

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0
HOSTILE = "ab1." * 250_000  # 1 MB; the shape that made the old URL-password pattern quadratic


@pytest.fixture
def huge_db(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    db = tmp_path / "data" / "tagrelay.db"
    env = {**os.environ, "TAGRELAY_STORAGE_URL": f"sqlite+aiosqlite:///{db}", "TAGRELAY_HEALTH_PORT": "0"}
    env.pop("TAGRELAY_CONFIG", None)
    run = subprocess.run([sys.executable, "-m", "bot", "--config", "config/tagrelay.example.toml", "run", "--once"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=DEADLINE_S, check=False)
    assert run.returncode == 0, run.stderr
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE posts SET title = ?", (HOSTILE,))
        conn.execute("UPDATE tags SET name = ? WHERE id = (SELECT min(id) FROM tags)", (HOSTILE,))
    return tmp_path, env


@pytest.mark.parametrize("args", [["deliveries"], ["deliveries", "--json"], ["tags"], ["tags", "--json"],
                                  ["status"]])
def test_reports_over_megabyte_titles_finish_and_cut_table_cells(huge_db: tuple[Path, dict[str, str]],
                                                                 args: list[str]) -> None:
    workdir, env = huge_db
    try:
        result = subprocess.run([sys.executable, "-m", "bot", "--config", "config/tagrelay.example.toml", *args],
                                cwd=workdir, env=env, capture_output=True, text=True, timeout=DEADLINE_S,
                                check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tagrelay {' '.join(args)} did not finish within {DEADLINE_S:.0f} s")
    assert result.returncode == 0, result.stderr
    if "--json" in args:
        data = json.loads(result.stdout)  # JSON keeps the exact stored text
        assert HOSTILE in {row.get("post_title") or row.get("name") for row in data}
        return
    longest = max(len(line) for line in result.stdout.splitlines())
    assert longest < 12 * MAX_CELL_CHARS
    if args == ["tags"]:
        assert HOSTILE[: MAX_CELL_CHARS - 1] + "…" in result.stdout
