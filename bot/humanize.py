"""Human-friendly formatting shared by the CLI and the admin bot."""

from __future__ import annotations

from datetime import datetime


def ago(when: datetime | None, now: datetime) -> str:
    """Relative time such as "12s ago", "in 5m", "3.5h ago", "2d ago"; "never" for None."""
    if when is None:
        return "never"
    seconds = (now - when).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 90:
        text = f"{seconds:.0f}s"
    elif seconds < 5400:
        text = f"{seconds / 60:.0f}m"
    elif seconds < 172800:
        text = f"{seconds / 3600:.1f}h"
    else:
        text = f"{seconds / 86400:.0f}d"
    return f"in {text}" if future else f"{text} ago"
