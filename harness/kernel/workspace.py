"""Stage 3 (before config): where kernels are compiled, shared by every tree and series.

Each kernel release (6.12, 6.1, ...) has one source directory and, beside it, one object
directory (``make O=``) per configuration. Whatever tree a build starts from (Debian's
tarball, a git worktree, a user's checkout, with or without a series applied), its files are
synced into the release's source directory by content: a file whose bytes differ from the copy
there is replaced by a new file with a fresh modification time; a file with the same bytes is
left alone, with its old time. So the paths make and the compiler see never change, and an
object directory built from any earlier state of the source directory is brought up to date by
make's own dependency tracking: every file that changed since that directory's last build is
newer than anything the build wrote, and nothing else is.

Callers hold the build lock (build.build_lock) around sync and make.
Known limit: a symlink whose target changes is replaced, but make judges it by its target's
time; kernel trees hold a few symlinks, none in what an x86 build compiles.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.cache import sha256_text, subdir, write_json_atomic
from harness.progress import Stage

SKIP_TOP = {".git", ".harness-complete"}  # never part of what is compiled
TMP_SUFFIX = ".pte-harness-tmp"
MANIFEST = "sync-manifest.json"
Signature = tuple[int, int, int, int, int]  # dev, inode, size, mtime_ns, mode


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def src(self) -> Path:
        return self.root / "src"

    def objdir(self, config_key: str) -> Path:
        return self.root / f"obj-{config_key[:16]}"


@dataclass(frozen=True)
class SyncStats:
    files: int
    replaced: int
    removed: int
    created: bool  # the source directory was made anew (every object directory was wiped)

    def describe(self) -> str:
        if self.created:
            return f"new source directory, {self.files} files"
        return f"{self.replaced} files changed, {self.removed} removed, {self.files} in the tree"


def for_release(version: str) -> Workspace:
    """The workspace of the release of ``version`` (6.12.117 -> work/6.12)."""
    release = ".".join(version.split(".")[:2])
    return Workspace(subdir("work") / release)


def config_key(*parts: str) -> str:
    return sha256_text("config", *parts)


def signature(st: os.stat_result) -> Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))


def scan(root: Path, ours: bool = False) -> dict[str, os.stat_result]:
    """Regular files and symlinks below ``root`` by relative path (lstat), without .git.
    In a source directory of ours, files left by an interrupted sync are deleted."""
    entries: dict[str, os.stat_result] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as it:
            for entry in it:
                path = f"{rel}/{entry.name}" if rel else entry.name
                if not rel and entry.name in SKIP_TOP:
                    continue
                if ours and entry.name.endswith(TMP_SUFFIX):
                    os.unlink(entry.path)
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
                elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    entries[path] = st
    return entries


def same_content(a: Path, sa: os.stat_result, b: Path, sb: os.stat_result) -> bool:
    if stat.S_ISLNK(sa.st_mode) or stat.S_ISLNK(sb.st_mode):
        return (stat.S_ISLNK(sa.st_mode) and stat.S_ISLNK(sb.st_mode)
                and os.readlink(a) == os.readlink(b))
    if stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
        return False
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if sa.st_size != sb.st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            block = fa.read(1 << 20)
            if block != fb.read(1 << 20):
                return False
            if not block:
                return True


def _fresh_time(floor_ns: int) -> int:
    """Now, but never at or before ``floor_ns`` (the end of the last build here)."""
    return max(time.time_ns(), floor_ns + 1_000_000)


def replace(source: Path, st: os.stat_result, target: Path, mtime_ns: int) -> None:
    """Put a copy of ``source`` at ``target`` with modification time ``mtime_ns``."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + TMP_SUFFIX)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), tmp)
    else:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, target)


def _remove(root: Path, rel: str) -> None:
    """Delete ``root/rel`` and the directories it leaves empty (never ``root`` itself)."""
    target = root / rel
    target.unlink(missing_ok=True)
    parent = target.parent
    while parent != root and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def sync(tree: Path, workspace: Workspace, floor_ns: int = 0) -> SyncStats:
    """Make ``workspace.src`` hold exactly the files of ``tree`` (see the module docstring).

    A manifest remembers, for each path, the signatures of the tree's file and of our copy
    when they were last found equal, so an unchanged file is not read again; a file hard-linked
    to our copy (a scratch copy of the same tarball) is not read either.
    """
    src = workspace.src
    manifest_path = workspace.root / MANIFEST
    with Stage(f"sync {src}", unit="files") as stage:
        if not src.is_dir():
            stats = _create(tree, workspace)
        else:
            stats = _update(tree, src, manifest_path, floor_ns, stage)
        stage.done(stats.describe())
    return stats


def _create(tree: Path, workspace: Workspace) -> SyncStats:
    """A new source directory: hard links to a tree the harness owns, a copy of any other.
    Object directories built from a source directory that no longer exists are wiped."""
    workspace.root.mkdir(parents=True, exist_ok=True)
    for old in workspace.root.glob("obj-*"):
        shutil.rmtree(old, ignore_errors=True)
    partial = workspace.src.with_name("src.partial")
    shutil.rmtree(partial, ignore_errors=True)
    owned = tree.resolve().is_relative_to(subdir("").resolve())
    result = subprocess.run(["cp", "-al" if owned else "-a", str(tree), str(partial)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise OSError(f"cannot copy {tree} to {partial}: {result.stderr.strip()}")
    for name in SKIP_TOP:
        target = partial / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    entries = scan(partial)
    os.replace(partial, workspace.src)
    _write_manifest(workspace.root / MANIFEST, tree, {
        rel: (signature(st), signature(os.lstat(workspace.src / rel)))
        for rel, st in scan(tree).items() if rel in entries})
    return SyncStats(len(entries), 0, 0, True)


def _update(tree: Path, src: Path, manifest_path: Path, floor_ns: int, stage: Stage) -> SyncStats:
    want = scan(tree)
    have = scan(src, ours=True)
    stage.set_total(len(want))
    known = _read_manifest(manifest_path)
    mtime = _fresh_time(floor_ns)
    replaced = 0
    record: dict[str, tuple[Signature, Signature]] = {}
    for count, (rel, st) in enumerate(want.items(), 1):
        if count % 2048 == 0:
            stage.advance(2048)
        ours = have.get(rel)
        if ours is not None:
            pair = (signature(st), signature(ours))
            if known.get(rel) == pair or same_content(tree / rel, st, src / rel, ours):
                record[rel] = pair
                continue
        replace(tree / rel, st, src / rel, mtime)
        replaced += 1
        record[rel] = (signature(st), signature(os.lstat(src / rel)))
    removed = [rel for rel in have if rel not in want]
    for rel in removed:
        _remove(src, rel)
    _write_manifest(manifest_path, tree, record)
    return SyncStats(len(want), replaced, len(removed), False)


def _read_manifest(path: Path) -> dict[str, tuple[Signature, Signature]]:
    """Pairs of signatures found equal before. A signature holds device, inode, size and
    modification time, so it names one version of one file whatever tree it sits in."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {rel: (tuple(a), tuple(b)) for rel, (a, b) in data.get("files", {}).items()}


def _write_manifest(path: Path, tree: Path, files: dict[str, tuple[Signature, Signature]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"tree": str(tree), "files": files}))
    os.replace(tmp, path)


def last_build_ns(workspace: Workspace) -> int:
    """When a build in this workspace last ended (its object files are no newer)."""
    try:
        return int((workspace.root / "last-build").read_text())
    except (OSError, ValueError):
        return 0


def mark_build_end(workspace: Workspace) -> None:
    write_json_atomic(workspace.root / "last-build", time.time_ns())


def closest_objdir(space: Workspace, objdir: Path, config: dict[str, str]) -> Path | None:
    """The built object directory of this workspace whose .config differs least from
    ``config`` (None when there is none)."""
    best: tuple[int, Path] | None = None
    for other in space.root.glob("obj-*"):
        if other == objdir or not (other / "vmlinux").is_file():
            continue
        theirs = _config_lines(other / ".config")
        distance = len(theirs.symmetric_difference(f"{k}={v}" for k, v in config.items()))
        if best is None or distance < best[0]:
            best = (distance, other)
    return best[1] if best else None


def _config_lines(path: Path) -> set[str]:
    from harness.kernel.kconfig import parse_config_text  # config parsing lives in the next stage
    try:
        return {f"{k}={v}" for k, v in parse_config_text(path.read_text()).items()}
    except OSError:
        return set()


def seed(objdir: Path, origin: Path) -> None:
    """Fill a new object directory with a copy of ``origin`` (times kept), keeping its own
    .config: make then rebuilds what the configuration change and the sources since
    ``origin``'s build touch, as after any ``make menuconfig``."""
    config = (objdir / ".config").read_text()
    result = subprocess.run(["cp", "-a", f"{origin}/.", str(objdir)], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"cannot copy {origin} to {objdir}: {result.stderr.strip()}")
    (objdir / ".config").write_text(config)
    _move_tool_records(objdir, origin)


def _move_tool_records(objdir: Path, origin: Path) -> None:
    """The host tools under tools/ (objtool) record their commands and dependencies with
    the absolute object directory: copied as they are, the commands differ, objtool is
    relinked, and every kernel object, which depends on objtool, is compiled again.
    Point those records at the new directory, keeping their times."""
    old, new = str(origin).encode(), str(objdir).encode()
    for path in (objdir / "tools").rglob("*"):
        if not (path.name.endswith(".cmd") or path.name.endswith(".d")) or not path.is_file():
            continue
        text = path.read_bytes()
        if old in text:
            times = os.stat(path)
            path.write_bytes(text.replace(old, new))
            os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
