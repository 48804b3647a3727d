"""feed2toot 0.17 and feediverse 0.4.1, each from PyPI in its own virtualenv under bench/ (reused when present).

Configured as perf-baselines §6 describes, against the same loopback fake:
feediverse with a YAML config whose ``updated`` predates every entry,
feed2toot with an INI file, a URI list and Mastodon.py credential files, and a
cache big enough to remember all 1,000 entries.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import BENCH, WORK, FakeServer, progress

PEERS = {"feed2toot": "feed2toot==0.17", "feediverse": "feediverse==0.4.1"}


def venv_dir(peer: str) -> Path:
    return BENCH / f"venv-{peer}"


def ensure_installed(peer: str) -> Path:
    """The peer's console script, installing it into ``bench/venv-<peer>`` on first use."""
    venv = venv_dir(peer)
    script = venv / "bin" / peer
    marker = venv / ".bench-installed"
    if script.exists() and marker.exists():
        return script
    progress(f"installing {PEERS[peer]} into {venv.relative_to(BENCH.parent)} (once; reused afterwards)")
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", PEERS[peer]],
                   check=True)
    marker.write_text(PEERS[peer] + "\n")
    return script


def installed_version(peer: str) -> str:
    out = subprocess.run([str(venv_dir(peer) / "bin" / "pip"), "show", peer], capture_output=True, text=True,
                         check=False).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Version:")), "?")


@dataclass
class PeerRun:
    seconds: float
    statuses: int


class Peer:
    def __init__(self, name: str, server: FakeServer, feeds: int) -> None:
        self.name = name
        self.server = server
        self.feeds = feeds
        self.script = ensure_installed(name)
        self.dir = WORK / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)

    def reset(self) -> None:
        """Forget everything posted: the next run sees every entry as new."""
        base = self.server.url
        urls = [f"{base}/feeds/f{i}.xml" for i in range(self.feeds)]
        if self.name == "feediverse":
            lines = [f"url: {base}", "client_id: fakeclientid", "client_secret: fakesecret",
                     "access_token: faketoken", "updated: '2020-01-01T00:00:00+00:00'", "feeds:"]
            for url in urls:
                lines += [f"- url: {url}", "  template: '{title} {url} {hashtags}'"]
            (self.dir / "feediverse.yml").write_text("\n".join(lines) + "\n")
        else:
            (self.dir / "clientcred.secret").write_text(f"fakeclientid\nfakesecret\n{base}\n")
            (self.dir / "usercred.secret").write_text(f"faketoken\n{base}\n")
            (self.dir / "feeds.txt").write_text("\n".join(urls) + "\n")
            (self.dir / "feed2toot.ini").write_text(f"""[mastodon]
instance_url={base}
user_credentials=usercred.secret
client_credentials=clientcred.secret
toot_visibility=public
[cache]
cachefile=feed2toot.db
cache_limit=100000
[lock]
lock_file=feed2toot.lock
lock_timeout=3600
[rss]
uri_list=feeds.txt
toot={{title}} {{link}}
[feedparser]
accept_bozo_exceptions=true
""")
            for leftover in ("feed2toot.db", "feed2toot.lock"):
                (self.dir / leftover).unlink(missing_ok=True)

    def run(self) -> PeerRun:
        """One run of the tool; returns its wall time and the statuses the fake received."""
        before = self.server.ctl("stats")["statuses"]
        args = ["-c", "feediverse.yml"] if self.name == "feediverse" else ["-c", "feed2toot.ini"]
        started = time.perf_counter()
        done = subprocess.run([str(self.script), *args], cwd=self.dir, capture_output=True, text=True,
                              timeout=600, check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{self.name} failed ({done.returncode}): {done.stderr[-2000:]}")
        after = self.server.ctl("stats")["statuses"]
        return PeerRun(seconds, after - before)
