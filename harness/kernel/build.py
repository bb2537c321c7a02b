"""Stage 4: configure and build a bzImage, incrementally, cached by a hash of its inputs."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

from harness.kernel import kconfig, patches, source, workspace
from harness.cache import (read_json, runtime_dir, sha256_file, sha256_text, subdir, try_lock,
                           write_json_atomic)
from harness.progress import Stage, say
from harness.errors import BuildError, UsageError
from harness.kernel.kconfig import Fragment

RECIPE = "pte-harness-build-3"  # bump when the way images are built changes (3: cc.sh)
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
    build_dir: Path | None = None  # a fixed object directory instead of the workspace's


@dataclass(frozen=True)
class Identity:
    """What decides an image, known before anything is built: its key, and the parts of it
    a report names."""

    key: str
    tree: str  # source.identify: tarball:SHA256, git:COMMIT or dir:HASH
    patchset: str  # the series' patchset_hash(); "" without a series
    patches: tuple[str, ...]  # the series' patch files, in order
    compiler: str


@dataclass(frozen=True)
class BuildResult:
    key: str
    build_dir: Path
    image: Path
    config: Path
    log: Path
    version: str
    reused: bool
    seconds: float  # this call's time (about 0 when reused)
    identity: Identity
    duration: float  # seconds the image took to build (reused: the original build's)


def compiler_version() -> str:
    result = subprocess.run(["gcc", "--version"], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError("gcc not found or not working: install gcc")
    return result.stdout.splitlines()[0]


def _base_identity(request: BuildRequest) -> str:
    return request.base if request.base in kconfig.BASES else "file:" + sha256_file(Path(request.base))


def build_key(request: BuildRequest, tree_identity: str, series: patches.Series | None,
              fragments: list[Fragment], compiler: str | None = None) -> str:
    """Hash of everything that decides the image."""
    return sha256_text(
        RECIPE, ARCH, tree_identity, series.identity() if series else "no-series",
        _base_identity(request),
        *(sha256_file(f.path) for f in fragments), compiler or compiler_version(),
        repr(sorted(REPRODUCIBLE_ENV.items())))


def _identity(request: BuildRequest, series: patches.Series | None,
              fragments: list[Fragment]) -> Identity:
    tree = source.identify(request.tree)
    compiler = compiler_version()
    return Identity(build_key(request, tree, series, fragments, compiler), tree,
                    series.patchset_hash() if series else "",
                    tuple(p.path.name for p in series.patches) if series else (), compiler)


def identify(request: BuildRequest) -> Identity:
    """The identity of the image ``request`` asks for (a TreeError or PatchError when the
    tree or the series cannot be read), without building anything."""
    series = patches.load_series(request.series) if request.series else None
    return _identity(request, series, [kconfig.load_fragment(p) for p in request.fragments])


def published(key: str) -> Path:
    """Where the build of ``key`` publishes its image, .config, System.map and build.log."""
    return subdir("builds") / key[:24]


@contextmanager
def build_lock() -> Iterator[None]:
    """One kernel build at a time on this machine (two cores), whichever cache it uses.
    The lock lives in this user's runtime directory ($PTE_HARNESS_BUILD_LOCK overrides)
    and is opened without following links or truncating anything."""
    try:
        path = Path(os.environ.get("PTE_HARNESS_BUILD_LOCK") or runtime_dir() / "build.lock")
    except OSError as exc:
        raise UsageError(f"cannot open the build lock: {exc}") from exc
    fd, taken = try_lock(path, "the build lock")
    try:
        if not taken:
            say(f"waiting for another kernel build to finish (lock {path})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def config_key(request: BuildRequest, fragments: list[Fragment]) -> str:
    """Hash of what decides the configuration (not the tree): one object directory each."""
    return workspace.config_key(RECIPE, ARCH, _base_identity(request),
                                *(sha256_file(f.path) for f in fragments), compiler_version())


def image_record(path: Path) -> dict[str, object]:
    return {"size": path.stat().st_size, "sha256": sha256_file(path, remember=False)}


def reusable(out: Path, identity: Identity) -> BuildResult | None:
    """The published build of ``identity`` when it is complete and its image is intact."""
    stamp = read_json(out / "harness-build.json")
    image = out / IMAGE
    if not stamp or stamp.get("key") != identity.key or not image.is_file():
        return None
    if stamp.get("image") != image_record(image):
        say(f"cached image {image} differs from the one built (size or sha256): rebuilding")
        return None
    return BuildResult(identity.key, out, image, out / ".config", out / "build.log",
                       stamp["version"], True, 0.0, identity, float(stamp.get("seconds", 0.0)))


def build(request: BuildRequest) -> BuildResult:
    """Return the image for ``request``, building it only when its key is new.

    The build itself runs in the release's workspace (workspace.py): the tree, patched, is
    synced into one source directory and compiled in the object directory of its
    configuration, so only what differs from the last build there is compiled again. The
    image, .config, System.map and build.log are then published in builds/KEY.
    """
    start = time.monotonic()
    series = patches.load_series(request.series) if request.series else None
    fragments = [kconfig.load_fragment(p) for p in request.fragments]
    identity = _identity(request, series, fragments)
    key, tree_identity = identity.key, identity.tree
    out = published(key)
    if (found := reusable(out, identity)) is not None:
        return replace(found, seconds=time.monotonic() - start)
    tree = source.resolve(request.tree)
    unclean = source.unclean_reason(tree.path)
    if unclean:
        raise UsageError(f"kernel tree {tree.path} is not clean: {unclean}; the harness "
                         "builds out of tree (make O=...), which needs a clean source tree",
                         f"fix: make -C {tree.path} mrproper (or pass a tree that was never "
                         "built in place)")
    with build_lock():
        if (found := reusable(out, identity)) is not None:  # built while we waited for the lock
            return replace(found, seconds=time.monotonic() - start)
        out.mkdir(parents=True, exist_ok=True)
        (out / "harness-build.json").unlink(missing_ok=True)
        log = out / "build.log"
        log.write_text(f"# pte-harness build {key}\n# tree {request.tree} at {tree.path}\n")
        space = workspace.for_release(tree.version)
        with ExitStack() as scratch:
            wanted = scratch.enter_context(patches.patched(tree, series)) if series else tree
            synced = workspace.sync(wanted.path, space, workspace.last_build_ns(space))
        with log.open("a") as out_log:
            out_log.write(f"# synced into {space.src}: {synced.describe()}\n")
        ckey = config_key(request, fragments)
        objdir = request.build_dir or space.objdir(ckey)
        objdir.mkdir(parents=True, exist_ok=True)
        make = make_command(space.src, objdir, request.jobs)
        try:
            config = kconfig.make_config(make, space.src, objdir, request.base, fragments, log)
            if request.build_dir is None and not (objdir / "vmlinux").exists():
                origin = workspace.closest_objdir(space, objdir, kconfig.read_config(config))
                if origin is not None:
                    say(f"new configuration: starting from the objects of {origin.name}")
                    workspace.seed(objdir, origin)
            say(f"building {tree.spec} ({tree.version}) in {objdir}")
            compiled = run_make(make + ["bzImage"], log, objdir,
                                subdir("state") / f"objects-{ckey[:24]}.json")
            kconfig.check(space.src, config, fragments, "after the build")
        finally:
            workspace.mark_build_end(space)
        check_payload(objdir)
        publish(objdir, out)
        seconds = time.monotonic() - start
        write_json_atomic(out / "harness-build.json", {
            "key": key, "tree": str(request.tree), "tree_identity": tree_identity,
            "series": str(request.series) if request.series else None, "base": request.base,
            "fragments": [str(f) for f in request.fragments], "version": tree.version,
            "objdir": str(objdir), "sync": synced.describe(), "compiled": compiled,
            "seconds": round(seconds, 1), "image": image_record(out / IMAGE)})
    return BuildResult(key, out, out / IMAGE, out / ".config", log, tree.version, False, seconds,
                       identity, seconds)


PUBLISHED = (IMAGE, ".config", "System.map")


def publish(objdir: Path, out: Path) -> None:
    """Copy what later steps use out of the (shared, changing) object directory."""
    for rel in PUBLISHED:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(objdir / rel, tmp)
        os.replace(tmp, target)


CC_WRAPPER = Path(__file__).with_name("cc.sh")  # ccache for everything but *.S


def make_command(tree: Path, build_dir: Path, jobs: int) -> list[str]:
    command = ["make", "-C", str(tree), f"O={build_dir}", f"ARCH={ARCH}", f"-j{jobs}"]
    if shutil.which("ccache"):
        command.append(f"CC=sh {CC_WRAPPER}")
    return command


def check_payload(objdir: Path) -> None:
    """The image holds the kernel this build compressed (arch/x86/boot/compressed/
    vmlinux.bin.*, newest): a compiler cache once handed back an older piggy.o, and the
    bzImage booted an older kernel than the vmlinux beside it."""
    compressed = [p for p in (objdir / "arch/x86/boot/compressed").glob("vmlinux.bin.*")
                  if p.is_file()]
    if not compressed:
        return  # an uncompressed kernel, or an architecture laid out otherwise
    payload = max(compressed, key=lambda p: p.stat().st_mtime_ns)
    if payload.read_bytes() not in (objdir / IMAGE).read_bytes():
        raise BuildError(f"{objdir / IMAGE} does not hold the kernel just built: {payload} is "
                         "not in it (a stale arch/x86/boot/compressed/piggy.o?)",
                         f"fix: rm {objdir / 'arch/x86/boot/compressed/piggy.o'} and build "
                         "again")


NO_SPACE = "No space left on device"  # strerror(ENOSPC), as make, gcc and ld print it
COMPILED = re.compile(r"^\s+(CC|AS)\s+(?!\[M\])\S+\.o$")


def run_make(command: list[str], log: Path, objdir: Path | None = None,
             estimate: Path | None = None) -> int:
    """Run make with its output appended to ``log``; progress as objects compiled, out of
    the number the last full build of this configuration compiled (kept in ``estimate``).
    Returns how many objects were compiled."""
    env = dict(os.environ, **REPRODUCIBLE_ENV)
    if objdir is not None:
        env["CCACHE_BASEDIR"] = str(objdir.parent)  # paths relative to the workspace
    # depend mode: a miss costs no extra preprocessor run. Measured on the default kernel,
    # cold: plain gcc 179 s, ccache 255 s, ccache in depend mode 191 s.
    env.setdefault("CCACHE_DEPEND", "1")
    fresh = objdir is not None and not (objdir / "vmlinux").exists()
    learnt = read_json(estimate) if estimate is not None and fresh else None
    total = int(learnt["objects"]) if learnt else None
    try:
        with log.open("a") as out, Stage("compile", total=total, unit="objects") as stage:
            out.write(f"$ {' '.join(command)}\n")
            out.flush()
            # its own process group, so that make and every compiler it started can be
            # stopped together (a Ctrl-C or SIGTERM reaches only the harness)
            try:
                process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True,
                                           errors="replace", env=env, start_new_session=True)
            except OSError as exc:
                raise BuildError(f"cannot run {command[0]}: {exc.strerror or exc}") from exc
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    out.write(line)
                    if COMPILED.match(line):
                        stage.advance(detail=line.split()[-1])
                status = process.wait()
            except BaseException:  # interrupted, or the log cannot be written
                stop_group(process)
                raise
            stage.done(f"{stage.count} objects compiled ({'full' if fresh else 'incremental'} "
                       "build" + (f", make exit {status})" if status else ")"))
    except OSError as exc:
        raise BuildError(f"kernel build stopped: cannot write its log {log}: "
                         f"{exc.strerror or exc}") from exc
    if status != 0:
        errors = first_errors(log.read_text(errors="replace"))
        full = ("; the disk is full: free some space and build again (nothing of this build "
                "is reused)" if NO_SPACE in errors else "")
        raise BuildError(f"kernel build failed (make exit {status}){full}; full log: {log}",
                         errors)
    if estimate is not None and fresh:
        write_json_atomic(estimate, {"objects": stage.count})
    return stage.count


def stop_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a process started with start_new_session and everything in its group: SIGTERM
    (make removes the targets it was writing), SIGKILL for what is left after ``grace``
    seconds or once the leader has exited (unreaped, it keeps the group's id from reuse)."""
    _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        while time.monotonic() < deadline and os.waitid(
                os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            time.sleep(0.05)
    except ChildProcessError:  # already reaped
        pass
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def first_errors(log_text: str, limit: int = 10) -> str:
    """The first compiler/linker errors of a build log, or its tail when none are marked."""
    lines = log_text.splitlines()
    errors = [line for line in lines
              if re.search(rf"\berror\b:|undefined reference|\*\*\* |{NO_SPACE}", line)]
    return "\n".join((errors or lines[-20:])[:limit])
