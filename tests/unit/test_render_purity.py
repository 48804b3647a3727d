"""render/ is pure: no I/O libraries, no storage, services or sources (design.md §5 rule 1), and no arrow
back up: render/ imports nothing from publishers/ (issue 16)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

RENDER = Path(__file__).resolve().parents[2] / "bot" / "render"
FORBIDDEN = ("httpx", "sqlalchemy", "aiosqlite", "asyncpg", "requests", "tweepy", "telegram", "apscheduler",
             "bot.storage", "bot.services", "bot.sources", "bot.app", "bot.bootstrap")


def test_render_modules_import_nothing_impure() -> None:
    for path in sorted(RENDER.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), \
                    f"{path.name} imports {name}"


def _imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(module, names) of every import statement in one file; names is () for ``import x``."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def test_render_imports_nothing_from_publishers() -> None:
    found = [(path.name, module, names) for path in sorted(RENDER.glob("*.py"))
             for module, names in _imports(path)
             if module == "bot.publishers" or module.startswith("bot.publishers.")]
    assert found == []


def test_the_plugin_api_re_exports_what_moved_below_it() -> None:
    import bot.publishers.api as api
    from bot.channel_options import ChannelOptions
    from bot.clock import Clock
    from bot.render.message import RenderedMessage, RenderEnv

    assert (api.RenderedMessage, api.RenderEnv, api.Clock) == (RenderedMessage, RenderEnv, Clock)
    assert api.ChannelOptions is ChannelOptions


def test_importing_render_loads_no_io_library() -> None:
    code = (
        "import sys\n"
        "import bot.render.text, bot.render.hashtags, bot.render.templates, bot.render.tghtml\n"
        "import bot.render.fit, bot.render.console\n"
        "core = sorted(m for m in ('httpx', 'sqlalchemy') if m in sys.modules)\n"
        "import bot.render.telegram, bot.render.x, bot.render.mastodon\n"
        "full = sorted(m for m in ('sqlalchemy',) if m in sys.modules)\n"
        "print(core, full)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=RENDER.parents[1])
    assert out.stdout.strip() == "[] []"
