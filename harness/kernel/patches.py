"""Stage 2: apply a quilt-style patch series to a scratch copy of a kernel tree."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from harness.cache import sha256_file, sha256_text, subdir
from harness.progress import Stage, say
from harness.errors import PatchError
from harness.kernel.source import KernelTree


@dataclass(frozen=True)
class Patch:
    path: Path
    strip: int = 1


@dataclass(frozen=True)
class Series:
    directory: Path
    patches: tuple[Patch, ...]

    def identity(self) -> str:
        """Hash of the patch contents in order (names do not matter, contents do)."""
        return sha256_text(*(f"{p.strip}:{sha256_file(p.path)}" for p in self.patches))

    def patchset_hash(self) -> str:
        """KCIDB's patchset hash: the sha256 of each patch's sha256 (hex, newline-terminated)
        in order, as ``sha256sum *.patch | cut -c-64 | sha256sum`` gives it."""
        listing = "".join(f"{sha256_file(p.path)}\n" for p in self.patches)
        return hashlib.sha256(listing.encode()).hexdigest()


def load_series(directory: Path) -> Series:
    """Read ``directory/series``: one patch per line, optional ``-pN``, ``#`` comments."""
    series_file = directory / "series"
    if not series_file.is_file():
        raise PatchError(f"{series_file} not found: a series directory needs a 'series' file")
    patches: list[Patch] = []
    for number, line in enumerate(series_file.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, *options = line.split()
        strip = 1
        for option in options:
            match = re.fullmatch(r"-p(\d+)", option)
            if not match:
                raise PatchError(f"{series_file}:{number}: unsupported option {option!r} (only -pN)")
            strip = int(match.group(1))
        path = directory / name
        if not path.resolve().is_relative_to(directory.resolve()):
            raise PatchError(f"{series_file}:{number}: patch {name} is outside the series "
                             f"directory {directory}")
        if not path.is_file():
            raise PatchError(f"{series_file}:{number}: patch {name} not found in {directory}")
        patches.append(Patch(path, strip))
    if not patches:
        raise PatchError(f"{series_file} lists no patches (use --series none to build the "
                         "tree as it is)")
    return Series(directory, tuple(patches))


def failed_hunks(patch_output: str) -> list[str]:
    """Pick the failing files and hunks out of GNU patch's output."""
    problems: list[str] = []
    current = "?"
    for line in patch_output.splitlines():
        match = re.match(r"(?:patching|checking) file '?(.+?)'?$", line)
        if match:
            current = match.group(1)
            continue
        if re.match(r"Hunk #\d+ FAILED", line):
            problems.append(f"{current}: {line.strip()}")
        elif "can't find file to patch" in line:
            problems.append(line.strip())
        elif "No file to patch" in line or "Reversed (or previously applied) patch" in line:
            problems.append(f"{current}: {line.strip()}")
        elif "malformed patch" in line or "Only garbage was found" in line:
            problems.append(line.strip())
    return problems


@contextmanager
def patched(tree: KernelTree, series: Series) -> Iterator[KernelTree]:
    """A patched scratch copy of ``tree``, deleted when the block ends.

    The source tree is never written: the copy is hard-linked, and GNU patch replaces the
    files it changes with new ones.
    """
    scratch = subdir("scratch") / f"{os.getpid()}-{time.monotonic_ns()}"
    try:
        yield apply_series(tree, series, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def apply_series(tree: KernelTree, series: Series, dest: Path) -> KernelTree:
    """Copy ``tree`` to ``dest`` (hard links) and apply ``series`` there, with no fuzz (as
    ``git am`` would): a hunk whose context does not match exactly is a patch error."""
    identity = f"{tree.identity}+series:{series.identity()}"
    shutil.rmtree(dest, ignore_errors=True)
    with Stage(f"apply {series.directory}", total=len(series.patches), unit="patches") as stage:
        copy = subprocess.run(["cp", "-al", str(tree.path), str(dest)], capture_output=True, text=True)
        if copy.returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            copy = subprocess.run(["cp", "-a", str(tree.path), str(dest)], capture_output=True, text=True)
            if copy.returncode != 0:
                raise PatchError(f"cannot copy {tree.path} for patching", copy.stderr)
        for patch in series.patches:
            result = subprocess.run(
                ["patch", f"-p{patch.strip}", "--batch", "--forward", "--no-backup-if-mismatch",
                 "--fuzz=0", "--reject-file=-", "-d", str(dest), "-i", str(patch.path)],
                capture_output=True, text=True)
            if result.returncode != 0:
                problems = failed_hunks(result.stdout + result.stderr) or ["(see patch output below)"]
                raise PatchError(
                    f"patch {patch.path} does not apply to {tree.spec} ({tree.version})",
                    "\n".join(problems) + "\n--- patch output ---\n" + (result.stdout + result.stderr))
            offsets = [line.strip().rstrip(".") for line in result.stdout.splitlines()
                       if "offset" in line]
            if offsets:  # exact context, moved lines: fine, but worth knowing
                say(f"{patch.path.name} applies at an offset: {'; '.join(offsets)}")
            stage.advance(detail=patch.path.name)
        stage.done(f"{len(series.patches)} patches applied")
    return KernelTree(dest, identity, tree.version, tree.spec)


def edited_copy(series_dir: Path, dest: Path, old: str, new: str) -> Path:
    """A copy of a series directory where ``old`` becomes ``new`` in the first line a patch
    adds (``+``) that contains it, and in the later patches' lines that show that line
    (context or removal): a one-line change to what the series adds, for measuring
    incremental builds and for checking that a changed patch changes the kernel."""
    series = load_series(series_dir)
    shutil.copytree(series_dir, dest)
    found = False
    for patch in series.patches:
        target = dest / patch.path.relative_to(series_dir)
        lines = target.read_text().splitlines(keepends=True)
        for index, line in enumerate(lines):
            if line.startswith(("+++", "---")) or old not in line:
                continue
            if line.startswith("+") or (found and line.startswith((" ", "-"))):
                lines[index] = line.replace(old, new, 1)
                found = True
        target.write_text("".join(lines))
    if not found:
        raise PatchError(f"no line added by the series in {series_dir} contains {old!r}")
    return dest
