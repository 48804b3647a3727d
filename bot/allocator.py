"""glibc's malloc: the service's threads share ``MALLOC_ARENAS`` arenas instead of one each.

glibc gives every thread that allocates an arena of its own (up to eight per core), and what a
thread frees stays in its arena for that thread to reuse. Since issue 15 a poll's parsing,
normalising and planning run in worker threads (asyncio's default executor: up to six on two
cores), and a SQLite store runs its transactions on a thread of its own: after 10,000 posts each
of those arenas held what its thread had last parsed, about 20 MiB in all (``make bench``, phase
4: 133 MiB, 113 MiB with two arenas). ``limit_malloc_arenas`` is glibc's ``MALLOC_ARENA_MAX`` set
by the service for itself (``mallopt``), before its threads start; an operator's own
``MALLOC_ARENA_MAX`` is left as it is, and another C library (musl, macOS) is left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

MALLOC_ARENAS = 2
"""Arenas for the whole process: the event loop's thread and the worker threads allocate in turn."""
_M_ARENA_MAX = -8
"""``M_ARENA_MAX`` in glibc's ``malloc.h``."""


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` (call it before threads start). True if it was set."""
    if "MALLOC_ARENA_MAX" in os.environ or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # no mallopt after all: the allocator's defaults stay
        return False
