"""The harness's cache directory and small helpers to fill it safely."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


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
