"""No arrow back up (issue 16): the services never import the runtime shell that drives them."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "bot" / "services"
SHELL = ("bot.app", "bot.bootstrap", "bot.cli", "bot.sidecars")
"""The composition root and the process shell: they build the services, never the other way round."""


def _imported(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module == "bot":  # ``from bot import app``
                names.extend(f"bot.{alias.name}" for alias in node.names)
    return names


def test_services_import_nothing_from_the_shell() -> None:
    paths = sorted(SERVICES.glob("*.py"))
    assert len(paths) >= 3  # the walk really found the services
    found = [(path.name, name) for path in paths for name in _imported(path)
             if any(name == shell or name.startswith(shell + ".") for shell in SHELL)]
    assert found == []
