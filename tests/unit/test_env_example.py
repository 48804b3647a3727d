""".env.example lists exactly the environment variables tagrelay (and its compose files and tests) read.

The variables are found three ways, so that a new one cannot slip in unlisted:

* the source of ``bot/``: ``os.environ[...]``, ``os.environ.get(...)``, ``os.getenv(...)``, ``"X" in os.environ``,
  any ``"TAGRELAY_*"`` string constant, and every ``<something>_env`` default or
  example (``token_env = "TG_BOT_TOKEN"``, ``Field(default="X_CONSUMER_KEY")``,
  ``add_argument("--consumer-key-env", default=...)``);
* introspection: ``EnvSettings`` fields (with its prefix) and the string defaults
  of every ``*_env`` field of every validated model in ``bot`` (channel options, [admin]);
* ``${VAR}`` references in the compose files and ``os.environ`` reads in ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import bot
from bot.settings import EnvSettings
from bot.validation import Model

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"

OS_VARIABLES = {
    "USER": "set by the OS; `tagrelay` records it as the actor of CLI changes",
    "USERNAME": "the same on Windows",
}
"""Read by the code but not the operator's to set: deliberately not in .env.example."""

_NAME = r"[A-Z][A-Z0-9_]*"
_ASSIGNMENT = re.compile(rf"^#?\s*({_NAME})=(.*)$")
_CODE_PATTERNS = [
    re.compile(rf"os\.environ\[\s*[\"']({_NAME})[\"']\s*\]"),
    re.compile(rf"os\.environ\.get\(\s*[\"']({_NAME})[\"']"),
    re.compile(rf"os\.getenv\(\s*[\"']({_NAME})[\"']"),
    re.compile(rf"[\"']({_NAME})[\"']\s+(?:not\s+)?in\s+os\.environ\b"),
    re.compile(r"[\"'](TAGRELAY_[A-Z0-9_]+)[\"']"),
    re.compile(rf"\w+_env\b\s*(?::[^=\n]*)?=\s*(?:Field\(\s*default=)?[\"']({_NAME})[\"']"),
    re.compile(rf"-env[\"']\s*,\s*default=[\"']({_NAME})[\"']"),
]
_COMPOSE_REF = re.compile(rf"\$\{{({_NAME})(?:[:?\-+][^}}]*)?\}}")
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.IGNORECASE)


def listed() -> dict[str, str]:
    """name → placeholder value, for every (commented or not) assignment in .env.example."""
    out: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if match:
            out[match[1]] = match[2].strip()
    return out


def read_in_source() -> dict[str, set[str]]:
    """variable → files that read or name it, scanning bot/, tests/conftest.py and the compose files."""
    found: dict[str, set[str]] = {}

    def add(name: str, where: Path) -> None:
        found.setdefault(name, set()).add(str(where.relative_to(ROOT)))

    for path in sorted((ROOT / "bot").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for pattern in _CODE_PATTERNS:
            for name in pattern.findall(text):
                add(name, path)
    conftest = ROOT / "tests" / "conftest.py"
    for pattern in _CODE_PATTERNS[:3]:
        for name in pattern.findall(conftest.read_text(encoding="utf-8")):
            add(name, conftest)
    for compose in sorted(ROOT.glob("compose*.yaml")):
        for name in _COMPOSE_REF.findall(compose.read_text(encoding="utf-8")):
            add(name, compose)
    return found


def read_by_models() -> dict[str, str]:
    """variable → model.field, from EnvSettings and every model's ``*_env`` string defaults."""
    prefix = EnvSettings.PREFIX
    found = {f"{prefix}{name}".upper(): f"EnvSettings.{name}" for name in EnvSettings.model_fields}
    for info in pkgutil.walk_packages(bot.__path__, "bot."):
        if info.name.endswith("__main__"):
            continue  # running it is the CLI
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not (issubclass(cls, Model) and cls.__module__ == module.__name__):
                continue
            for field_name, field in cls.model_fields.items():
                if field_name.endswith("_env") and isinstance(field.default, str) and field.default:
                    found.setdefault(field.default, f"{cls.__name__}.{field_name}")
    return found


def test_the_scanners_find_what_they_must() -> None:
    """Guards the guards: a broken pattern would let the main test pass on an empty set."""
    source = read_in_source()
    models = read_by_models()
    for name in ("TG_BOT_TOKEN", "MASTODON_TOKEN", "X_CONSUMER_KEY", "X_USER_TOKEN", "TAGRELAY_HEALTH_PORT",
                 "TAGRELAY_TEST_POSTGRES_URL", "USER"):
        assert name in source, name
    for name in ("TAGRELAY_CONFIG", "TAGRELAY_STORAGE_URL", "TAGRELAY_LOG_LEVEL", "TAGRELAY_LOG_FORMAT",
                 "TAGRELAY_ENV_FILE", "TG_BOT_TOKEN", "MASTODON_TOKEN", "X_ACCESS_TOKEN_SECRET"):
        assert name in models, name
    assert "POSTGRES_PASSWORD" in source, "compose.postgres.yaml must take the password from the environment"


def test_every_variable_the_code_reads_is_in_env_example() -> None:
    reads = {**{k: ", ".join(sorted(v)) for k, v in read_in_source().items()}, **read_by_models()}
    missing = {name: where for name, where in reads.items() if name not in listed() and name not in OS_VARIABLES}
    assert not missing, f"add these to .env.example (with a comment): {missing}"


def test_env_example_lists_nothing_the_code_no_longer_reads() -> None:
    reads = set(read_in_source()) | set(read_by_models())
    stale = sorted(set(listed()) - reads)
    assert not stale, f"nothing reads these any more; remove them from .env.example: {stale}"


def test_each_variable_has_a_comment_above_it() -> None:
    lines = [line.strip() for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()]
    for i, line in enumerate(lines):
        if _ASSIGNMENT.match(line):
            # walk up over sibling assignments (X_CONSUMER_KEY, X_CONSUMER_SECRET) to the describing comment
            j = i - 1
            while j >= 0 and _ASSIGNMENT.match(lines[j]):
                j -= 1
            assert j >= 0 and lines[j].startswith("#") and len(lines[j]) > 10, f"no comment above {line!r}"


@pytest.mark.parametrize("name", sorted(n for n in listed() if _SECRET_NAME.search(n)))
def test_secret_values_are_placeholders(name: str) -> None:
    value = listed()[name]
    assert value == "" or (value.startswith("<") and value.endswith(">")), f"{name}={value!r} looks real"


def test_every_assignment_is_commented_out() -> None:
    """Copying the file as is must not set anything: an empty or placeholder value would be used as real."""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        assert not re.match(rf"^{_NAME}=", line), f"uncommented assignment: {line!r}"
