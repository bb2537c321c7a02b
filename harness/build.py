"""Stage 4: configure and build a bzImage out of tree, cached by a hash of its inputs."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import kconfig, patches, source
from .cache import Progress, read_json, say, sha256_file, sha256_text, subdir, write_json_atomic
from .errors import BuildError, UsageError
from .kconfig import Fragment

RECIPE = "pte-harness-build-1"  # bump when the way images are built changes
ARCH = "x86_64"
IMAGE = "arch/x86/boot/bzImage"
REPRODUCIBLE_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "Thu Jan  1 00:00:00 UTC 2026",
    "KBUILD_BUILD_USER": "pte-harness",
    "KBUILD_BUILD_HOST": "pte-harness",
    "KBUILD_BUILD_VERSION": "1",
}


@dataclass(frozen=True)
class BuildRequest:
    tree: source.TreeSpec
    series: Path | None
    base: str = "tinyconfig"
    fragments: tuple[Path, ...] = ()
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    build_dir: Path | None = None  # fixed, reused directory (incremental builds, bisect)


@dataclass(frozen=True)
class BuildResult:
    key: str
    build_dir: Path
    image: Path
    config: Path
    log: Path
    version: str
    reused: bool
    seconds: float


def compiler_version() -> str:
    result = subprocess.run(["gcc", "--version"], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError("gcc not found or not working: install gcc")
    return result.stdout.splitlines()[0]


def build_key(request: BuildRequest, tree_identity: str, series: patches.Series | None,
              fragments: list[Fragment]) -> str:
    """Hash of everything that decides the image."""
    base = request.base if request.base in kconfig.BASES else "file:" + sha256_file(Path(request.base))
    return sha256_text(
        RECIPE, ARCH, tree_identity, series.identity() if series else "no-series", base,
        *(sha256_file(f.path) for f in fragments), compiler_version(),
        repr(sorted(REPRODUCIBLE_ENV.items())))


@contextmanager
def build_lock() -> Iterator[None]:
    """One kernel build at a time on this machine (two cores), whichever cache it uses."""
    path = Path(os.environ.get("PTE_HARNESS_BUILD_LOCK") or
                Path(tempfile.gettempdir()) / "pte-harness-build.lock")
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another kernel build to finish (lock {path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build(request: BuildRequest) -> BuildResult:
    """Return the image for ``request``, building it only when its key is new."""
    start = time.monotonic()
    series = patches.load_series(request.series) if request.series else None
    fragments = [kconfig.load_fragment(p) for p in request.fragments]
    tree_identity = source.identify(request.tree)
    key = build_key(request, tree_identity, series, fragments)
    build_dir = request.build_dir or subdir("builds") / key[:24]
    stamp_path = build_dir / "harness-build.json"
    stamp = read_json(stamp_path)
    if stamp and stamp.get("key") == key and (build_dir / IMAGE).is_file():
        return BuildResult(key, build_dir, build_dir / IMAGE, build_dir / ".config",
                           build_dir / "build.log", stamp["version"], True, time.monotonic() - start)
    tree = source.resolve(request.tree)
    unclean = source.unclean_reason(tree.path)
    if unclean:
        raise UsageError(f"kernel tree {tree.path} is not clean: {unclean}; the harness "
                         "builds out of tree (make O=...), which needs a clean source tree",
                         f"fix: make -C {tree.path} mrproper (or pass a tree that was never "
                         "built in place)")
    if series:
        tree = patches.apply_series(tree, series)
    with build_lock():
        build_dir.mkdir(parents=True, exist_ok=True)
        stamp_path.unlink(missing_ok=True)
        log = build_dir / "build.log"
        log.write_text(f"# pte-harness build {key}\n# tree {request.tree} at {tree.path}\n")
        make = make_command(tree.path, build_dir, request.jobs)
        config = kconfig.make_config(make, tree.path, build_dir, request.base, fragments, log)
        say(f"building {tree.spec} ({tree.version}) in {build_dir}")
        run_make(make + ["bzImage"], log)
        kconfig.check(tree.path, config, fragments, "after the build")
    seconds = time.monotonic() - start
    write_json_atomic(stamp_path, {
        "key": key, "tree": str(request.tree), "tree_identity": tree_identity,
        "series": str(request.series) if request.series else None, "base": request.base,
        "fragments": [str(f) for f in request.fragments], "version": tree.version,
        "seconds": round(seconds, 1)})
    return BuildResult(key, build_dir, build_dir / IMAGE, config, log, tree.version, False, seconds)


def make_command(tree: Path, build_dir: Path, jobs: int) -> list[str]:
    command = ["make", "-C", str(tree), f"O={build_dir}", f"ARCH={ARCH}", f"-j{jobs}"]
    if shutil.which("ccache"):
        command.append("CC=ccache gcc")
    return command


def run_make(command: list[str], log: Path) -> None:
    """Run make with its output appended to ``log``; progress on stderr."""
    progress = Progress("build", interval=15.0)
    env = dict(os.environ, **REPRODUCIBLE_ENV)
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace", env=env)
        assert process.stdout is not None
        lines = 0
        for line in process.stdout:
            out.write(line)
            lines += 1
            progress.update(f"{lines} lines, last: {line.strip()[:80]}")
        status = process.wait()
    if status != 0:
        raise BuildError(f"kernel build failed (make exit {status}); full log: {log}",
                         first_errors(log.read_text(errors="replace")))


def first_errors(log_text: str, limit: int = 10) -> str:
    """The first compiler/linker errors of a build log, or its tail when none are marked."""
    lines = log_text.splitlines()
    errors = [line for line in lines
              if re.search(r"\berror\b:|undefined reference|\*\*\* ", line)]
    return "\n".join((errors or lines[-20:])[:limit])
