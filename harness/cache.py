"""The harness's cache directory and small helpers to fill it safely."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import time
from pathlib import Path

from harness.errors import UsageError


def cache_dir() -> Path:
    """Root of everything the harness keeps between runs ($PTE_HARNESS_CACHE)."""
    root = os.environ.get("PTE_HARNESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pte-harness")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def subdir(name: str) -> Path:
    path = cache_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON so that a reader never sees a half-written file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sha256_file(path: Path, remember: bool = True) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so big tarballs hash once."""
    if not remember:
        return _sha256(path)
    st = path.stat()
    memo_path = subdir("hashes") / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32] + ".json")
    memo = read_json(memo_path)
    stamp = [st.st_size, st.st_mtime_ns]
    if memo and memo.get("stamp") == stamp:
        return memo["sha256"]
    digest = _sha256(path)
    write_json_atomic(memo_path, {"stamp": stamp, "sha256": digest})
    return digest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def runtime_dir() -> Path:
    """A directory of this user's own for locks (machine-wide, whatever cache is used):
    $XDG_RUNTIME_DIR/pte-harness, else /tmp/pte-harness-UID. Refused when it is a link, is
    not ours or others may write it, so nobody can plant a link where the harness writes."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        path = Path(base) / "pte-harness"
    else:  # not set, or set to a directory that is not there (a login's, long gone)
        path = Path(f"/tmp/pte-harness-{os.getuid()}")
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise UnsafePath(f"{path} is not a directory of this user's own that others cannot "
                         "write (a link, another user's, or group/world-writable): remove it")
    return path


class UnsafePath(OSError):
    """A path the harness would write through is not safely its own."""


def open_lock(path: Path) -> int:
    """Open (create) a lock file without following a link and without truncating it."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def try_lock(path: Path, what: str) -> tuple[int, bool]:
    """Open the lock file ``path`` (open_lock) and try to take it at once: (its descriptor,
    whether it was taken). A lock that cannot be opened is a UsageError naming ``what``."""
    try:
        fd = open_lock(path)
    except OSError as exc:
        raise UsageError(f"cannot open {what} {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return fd, False
    return fd, True


def new_results_dir(parent: Path, prefix: str = "") -> Path:
    """A new directory parent/PREFIX<time>, made here and by nobody else: two runs started in
    the same second get <time> and <time>-2."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = prefix + time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        path = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            path.mkdir()
            return path.resolve()
        except FileExistsError:
            continue
    raise FileExistsError(f"no free results directory name under {parent} for {stamp}")
