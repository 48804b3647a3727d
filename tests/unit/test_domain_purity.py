"""domain/ is pure: importing it loads no I/O library (design rule 1)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_domain_loads_no_io_library() -> None:
    code = (
        "import sys\n"
        "import bot.domain.runtime\n"
        "import bot.domain.models, bot.domain.tags, bot.domain.identity, bot.domain.detect\n"
        "import bot.domain.routing, bot.domain.schedule, bot.domain.pacing, bot.domain.urls, bot.domain.delivery\n"
        "import bot.domain.state, bot.domain.plan, bot.domain.push\n"
        "bad = [m for m in ('httpx', 'sqlalchemy', 'aiosqlite', 'asyncpg', 'telegram', 'apscheduler', 'pydantic')"
        " if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == ""
