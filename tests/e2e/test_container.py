"""The container image and compose files, checked without a Docker engine.

* The Dockerfile is parsed (dockerfile_parse) and its promises asserted: two
  stages, the runtime installs only wheels, a non-root user, /data as a volume,
  a HEALTHCHECK on /readyz (whose command is also *run* here against a loopback
  server), ``tagrelay run`` as entrypoint, no secret in ENV/ARG.
* The install path the runtime stage takes is replayed: build the wheel, install
  it with ``--no-deps --no-index`` into a fresh virtualenv (dependencies come
  from this checkout's .venv, appended after the wheel so they cannot shadow it),
  then ``tagrelay --help`` and ``tagrelay run --once`` on the sample archive; the
  migrations must be found inside the installed package.
* compose.yaml / compose.postgres.yaml are checked as text, and validated with
  ``docker-compose config`` / ``docker compose config`` when one is installed
  (neither needs a running engine).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from bot.log import redact_text, redact_url
from tests.fakes.http import LoopbackServer, Request, Response

ROOT = Path(__file__).resolve().parents[2]
HEALTH_PORT = "9464"


# -- the Dockerfile --------------------------------------------------------------------------------


@dataclass
class Instruction:
    name: str
    value: str


def stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions, grouped by stage (comments dropped)."""
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    out: list[list[Instruction]] = []
    for item in parser.structure:
        name = item["instruction"]
        if name == "COMMENT":
            continue
        if name == "FROM":
            out.append([])
        if out:
            out[-1].append(Instruction(name, item["value"]))
    return out


def final() -> list[Instruction]:
    return stages()[-1]


def values(stage: list[Instruction], name: str) -> list[str]:
    return [i.value for i in stage if i.name == name]


def healthcheck_command() -> list[str]:
    (check,) = values(final(), "HEALTHCHECK")
    _, _, exec_form = check.partition("CMD ")
    command = json.loads(exec_form)
    assert isinstance(command, list)
    return [str(c) for c in command]


def test_two_stages_and_the_runtime_is_python_311_slim() -> None:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    assert parser.is_multistage
    assert len(stages()) >= 2
    assert parser.parent_images[-1] == "python:3.11-slim"
    assert values(final(), "FROM")[0].endswith("AS runtime")


def test_the_builder_builds_a_wheel_and_the_runtime_installs_only_wheels() -> None:
    builder, runtime = stages()[0], final()
    assert any("python -m build --wheel" in run for run in values(builder, "RUN"))
    # the runtime stage never sees the source tree
    assert values(runtime, "COPY") == [] and values(runtime, "ADD") == []
    install = next(run for run in values(runtime, "RUN") if " install " in run)
    assert "--mount=type=bind,from=builder" in install
    assert "--no-index" in install and "--find-links=/wheels" in install
    assert re.search(r"install\b.*\btagrelay\b", install)


def test_runs_as_a_fixed_non_root_user() -> None:
    users = values(final(), "USER")
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit() and int(user) >= 1000  # numeric, so runAsNonRoot can check it
    assert any(f"--uid {user}" in run for run in values(final(), "RUN"))


def test_the_database_lives_on_the_data_volume() -> None:
    (volume,) = values(final(), "VOLUME")
    assert json.loads(volume) == ["/data"]
    env = DockerfileParser(path=str(ROOT / "Dockerfile")).envs
    assert env["TAGRELAY_STORAGE_URL"] == "sqlite+aiosqlite:////data/tagrelay.db"
    assert env["TAGRELAY_CONFIG"] == "/config/tagrelay.toml"


def test_the_healthcheck_asks_readyz_on_the_exposed_health_port() -> None:
    env = DockerfileParser(path=str(ROOT / "Dockerfile")).envs
    assert env["TAGRELAY_HEALTH_HOST"] == "0.0.0.0"  # noqa: S104 - reachable from outside the container
    assert env["TAGRELAY_HEALTH_PORT"] == HEALTH_PORT
    assert values(final(), "EXPOSE") == [HEALTH_PORT]
    (check,) = values(final(), "HEALTHCHECK")
    assert "--start-period=" in check and "--timeout=" in check
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]  # the slim image has no curl
    assert "/readyz" in command[2] and "127.0.0.1" in command[2] and "TAGRELAY_HEALTH_PORT" in command[2]


class _Readyz(LoopbackServer):
    status = 200

    def handle(self, request: Request) -> Response:
        if request.path != "/readyz":
            return Response.text("not found", 404)
        return Response.json({"status": "ready" if self.status == 200 else "unavailable"}, self.status)


@pytest.fixture
def readyz() -> Iterator[_Readyz]:
    server = _Readyz().start()
    assert isinstance(server, _Readyz)
    try:
        yield server
    finally:
        server.stop()


def run_healthcheck(port: int) -> int:
    env = {**os.environ, "TAGRELAY_HEALTH_PORT": str(port)}
    command = healthcheck_command()
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30,
                          check=False).returncode


def test_the_healthcheck_command_passes_on_200_and_fails_on_503_or_silence(readyz: _Readyz) -> None:
    assert run_healthcheck(readyz.port) == 0
    assert readyz.seen("GET", "/readyz")
    readyz.status = 503
    assert run_healthcheck(readyz.port) != 0
    readyz.stop()
    assert run_healthcheck(readyz.port) != 0


def test_entrypoint_is_tagrelay_run_and_sigterm_stops_it() -> None:
    assert [json.loads(v) for v in values(final(), "ENTRYPOINT")] == [["tagrelay"]]
    assert [json.loads(v) for v in values(final(), "CMD")] == [["run"]]
    assert values(final(), "STOPSIGNAL") == ["SIGTERM"]


def test_labels_describe_the_image() -> None:
    labels = DockerfileParser(path=str(ROOT / "Dockerfile")).labels
    assert labels["org.opencontainers.image.title"] == "tagrelay"
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.source"].startswith("https://")


_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH", re.IGNORECASE)


def _assignments(value: str) -> list[tuple[str, str]]:
    """``A=1 B="x y"`` (ENV/ARG) → [(A, 1), (B, x y)]."""
    return [(m[1], m[2] if m[2] is not None else (m[3] or "")) for m in
            re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)(?:=(?:\"([^\"]*)\"|(\S*)))?", value)]


def test_no_env_or_arg_carries_a_secret() -> None:
    for stage in stages():
        for inst in stage:
            if inst.name not in ("ENV", "ARG"):
                continue
            for name, value in _assignments(inst.value):
                assert not (_SECRET_NAME.search(name) and value), f"{inst.name} {name} has a value baked in"
                assert redact_url(value) == value and redact_text(value) == value, f"{name}={value!r}"


def test_dockerignore_keeps_secrets_out_and_the_build_inputs_in() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch(path, pat) or fnmatch(path.split("/")[0], pat):
                verdict = not negate
        return verdict

    for secret in (".env", ".env.production", ".venv", ".git", "data", "data/tagrelay.db", "x.db-wal"):
        assert ignored(secret), secret
    assert not ignored(".env.example")
    copied = [src for run in values(stages()[0], "COPY") for src in run.split()[:-1]]
    assert set(copied) == {"pyproject.toml", "README.md", "bot", "migrations"}
    for src in copied:
        assert not ignored(src), f"{src} is COPY'd but excluded from the build context"


# -- the wheel the runtime stage installs ----------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend (hatchling) comes from .venv, no download
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (built,) = out.glob("tagrelay-*.whl")
    return built


def test_the_wheel_carries_the_migrations_and_the_plugins(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "bot/migrations/env.py" in names and "bot/migrations/script.py.mako" in names
    versions = sorted(n for n in names if n.startswith("bot/migrations/versions/") and n.endswith(".py"))
    shipped = (ROOT / "migrations" / "versions").glob("*.py")
    assert versions == sorted(f"bot/migrations/versions/{p.name}" for p in shipped)
    assert not [n for n in names if n.startswith(("tests/", "migrations/")) or "__pycache__" in n]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "tagrelay = bot.cli:main" in text
    for platform in ("console", "telegram", "mastodon", "x"):
        assert f"{platform} = bot.publishers.{platform}:plugin" in text


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the wheel installed, like the image's /opt/tagrelay."""
    venv = tmp_path_factory.mktemp("venv") / "tagrelay"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    # Third-party dependencies from this checkout's environment, *after* the venv's own site-packages
    # (a .pth line appends; unlike PYTHONPATH it cannot shadow the installed package).
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz_tagrelay_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def tagrelay(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAGRELAY_", "PYTHON"))}
    return subprocess.run([str(venv / "bin" / "tagrelay"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    probe = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import bot, bot.storage.migrate as m; print(bot.__file__); print(m.migrations_dir())"],
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    module, migrations = probe.stdout.split()
    assert Path(module).is_relative_to(installed)
    assert Path(migrations) == Path(module).parent / "migrations"


def test_the_installed_cli_runs_once_and_migrates(installed: Path, tmp_path: Path) -> None:
    assert "run the service" in tagrelay(installed, "--help", cwd=tmp_path).stdout
    shutil.copytree(ROOT / "config", tmp_path / "config")
    config = tmp_path / "config" / "tagrelay.toml"
    db = tmp_path / "state" / "tagrelay.db"
    text = (tmp_path / "config" / "tagrelay.example.toml").read_text(encoding="utf-8")
    config.write_text(text.replace('url = "sqlite+aiosqlite:///data/tagrelay.db"', f'url = "sqlite+aiosqlite:///{db}"'),
                      encoding="utf-8")

    result = tagrelay(installed, "--config", str(config), "run", "--once", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "db.migrated" in result.stderr and "outcome=baseline" in result.stderr
    assert "── console ─ delivery" in result.stdout
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"sources", "posts", "deliveries", "channels", "alembic_version"} <= tables
    current = tagrelay(installed, "--config", str(config), "db", "current", cwd=tmp_path)
    assert current.returncode == 0
    assert f"database revision: {revision}; this version expects: {revision}" in current.stdout


# -- compose files ---------------------------------------------------------------------------------


def compose_text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def test_compose_runs_the_image_with_its_volume_config_env_file_and_grace_period() -> None:
    text = compose_text("compose.yaml")
    assert re.search(r"^\s+- tagrelay-data:/data$", text, re.M)
    assert re.search(r"^volumes:\n  tagrelay-data:", text, re.M)
    assert re.search(r"^\s+- \./config/tagrelay\.example\.toml:/config/tagrelay\.toml:ro$", text, re.M)
    assert re.search(r"^\s+env_file: \.env$", text, re.M)
    grace = re.search(r"^\s+stop_grace_period: (\d+)s$", text, re.M)
    assert grace and int(grace[1]) > 20  # more than the default [service] shutdown_timeout
    assert re.search(r"^\s+TAGRELAY_STORAGE_URL: sqlite\+aiosqlite:////data/tagrelay\.db$", text, re.M)
    assert '"127.0.0.1:9464:9464"' in text  # metrics for this host only


def test_compose_healthcheck_is_the_image_healthcheck() -> None:
    match = re.search(r"^\s+test: (\[.*\])$", compose_text("compose.yaml"), re.M)
    assert match
    assert json.loads(match[1]) == ["CMD", *healthcheck_command()]


def test_compose_postgres_takes_the_password_only_from_the_environment() -> None:
    text = compose_text("compose.postgres.yaml")
    assert re.search(r"^\s+image: postgres:16$", text, re.M)
    required = r"\$\{POSTGRES_PASSWORD:\?[^}]+\}"
    assert re.search(rf"^\s+POSTGRES_PASSWORD: {required}$", text, re.M)
    assert re.search(rf"^\s+TAGRELAY_STORAGE_URL: postgresql\+asyncpg://tagrelay:{required}@postgres:5432/tagrelay$",
                     text, re.M)
    assert "condition: service_healthy" in text and "pg_isready" in text
    for line in text.splitlines():  # nothing that looks like a literal password
        if re.search(r"password", line, re.I) and ":" in line and not line.lstrip().startswith("#"):
            assert "${POSTGRES_PASSWORD:?" in line, line


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.postgres.yaml"]])
def test_compose_files_validate(files: list[str], tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    for name in (*files, "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=0123456789abcdef\n")
    args = [a for f in files for a in ("-f", f)]
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    ok = subprocess.run([*cli, *args, "config", "-q"], cwd=tmp_path, env=env, capture_output=True, text=True,
                        timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    if len(files) == 2:
        (tmp_path / ".env").write_text("")
        missing = subprocess.run([*cli, *args, "config", "-q"], cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=60, check=False)
        assert missing.returncode != 0 and "set POSTGRES_PASSWORD in .env" in missing.stderr
