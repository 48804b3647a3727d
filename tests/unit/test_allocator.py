"""The service caps glibc's malloc arenas (``bot.allocator``): its worker threads no longer keep an arena
each (about 20 MiB after 10,000 posts, ``make bench`` phase 4)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from bot.allocator import MALLOC_ARENAS, limit_malloc_arenas

ROOT = Path(__file__).resolve().parents[2]
glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="glibc's malloc only")

# six threads alive at once, each allocating (100 KB blocks: malloc, below mmap's threshold), then the number
# of arenas from glibc's own report (malloc_info: one <heap nr=…> per arena)
COUNT_ARENAS = """
import ctypes, sys, threading
from bot.allocator import limit_malloc_arenas
if sys.argv[1] == "limit":
    assert limit_malloc_arenas()
barrier = threading.Barrier(7)
def work():
    blocks = [bytearray(100_000) for _ in range(20)]
    barrier.wait()
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads:
    t.start()
barrier.wait()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
stream = ctypes.c_void_p(libc.fopen(sys.argv[2].encode(), b"w"))
libc.malloc_info(0, stream)
libc.fclose(stream)
barrier.wait()
for t in threads:
    t.join()
print(open(sys.argv[2]).read().count("<heap nr="))
"""


def arenas(tmp_path: Path, mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", COUNT_ARENAS, mode, str(tmp_path / f"{mode}.xml")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    return int(done.stdout)


@glibc
def test_threads_share_the_capped_arenas(tmp_path: Path) -> None:
    assert arenas(tmp_path, "default") > MALLOC_ARENAS  # one per allocating thread, without the cap
    assert arenas(tmp_path, "limit") <= MALLOC_ARENAS


def test_an_operators_own_malloc_arena_max_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert limit_malloc_arenas() is False
