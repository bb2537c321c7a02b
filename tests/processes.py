"""Processes a test started: what of them still runs (read from /proc, Linux only)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def children(pid: int) -> set[int]:
    """Children of ``pid`` from /proc/PID/task/*/children (empty once it is gone)."""
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.update(int(n) for n in (task / "children").read_text().split())
    except OSError:
        pass
    return found


def living(pid: int) -> str | None:
    """The command line of ``pid``, or None if it is gone or a zombie."""
    try:
        if (Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1]).startswith("Z"):
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()
    except (OSError, IndexError):
        return None


def descendants(root: int | None = None) -> dict[int, str]:
    """Living (not zombie) descendants of ``root`` (this process): pid -> command line.
    Zombies are walked through: a child read before it was reparented to us."""
    found: set[int] = set()
    frontier = {root or os.getpid()}
    while frontier:
        frontier = {c for pid in frontier for c in children(pid)} - found
        found |= frontier
    return {pid: command for pid in sorted(found) if (command := living(pid)) is not None}


def gone(pid: int, wait: float = 0.0) -> bool:
    """Whether ``pid`` is gone (or a zombie) within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while living(pid) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
