"""Options -> built kernel + initramfs -> booted session: the path every command takes."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from harness.kernel import build, source
from harness.guest import image, sshkeys, transport
from harness.cache import subdir, try_lock
from harness.errors import UsageError
from harness.options import GUEST_SCRIPTS, GUEST_SOURCES, Options
from harness.guest.session import BootOptions, Session


@dataclass(frozen=True)
class Prepared:
    build: build.BuildResult
    initrd: Path
    host_key: sshkeys.HostKey | None = None  # ssh: the key the image's sshd serves


def build_request(options: Options) -> build.BuildRequest:
    return build.BuildRequest(tree=source.parse_spec(options.tree), series=options.series_dir(),
                              base=options.base, fragments=options.fragment_paths(),
                              jobs=options.jobs,
                              build_dir=Path(options.build_dir).resolve() if options.build_dir else None)


def prepare(options: Options, programs: tuple[Path, ...] = ()) -> Prepared:
    """The kernel and initramfs; for ssh, with the build's host key (kept beside the build)."""
    return with_initramfs(options, build.build(build_request(options)), programs)


def with_initramfs(options: Options, result: build.BuildResult,
                   programs: tuple[Path, ...] = ()) -> Prepared:
    """A built kernel with the initramfs (and, for ssh, the host key) its guests boot with."""
    host_key = transport.by_name(options.transport).host_key(result.build_dir)
    initrd = image.build_initramfs(image.ImageRequest(
        scripts=GUEST_SCRIPTS, sources=GUEST_SOURCES, programs=programs,
        host_key=host_key.private if host_key else None))
    return Prepared(result, initrd, host_key)


def new_run_dir(parent: Path | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = (parent or subdir("runs")) / f"{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    path.mkdir(parents=True)
    return path


RUN_LOCK = ".pte-harness.lock"  # in a run directory: held by the harness whose logs it holds


@contextmanager
def claimed(run_dir: Path) -> Iterator[Path]:
    """Hold ``run_dir`` (made if needed) for this process: one boot's logs are never mixed
    with another's. A run directory another harness holds is a usage error; the lock file
    is opened without following links."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, taken = try_lock(run_dir / RUN_LOCK, "the run directory's lock")
    try:
        if not taken:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UsageError(f"run directory {run_dir} is in use by another pte-harness "
                             f"(pid {holder}): give another --run-dir, or none")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield run_dir
    finally:
        os.close(fd)


def boot_options(options: Options, append: str = "") -> BootOptions:
    return BootOptions(accel=options.accel, memory=options.memory, cpus=options.cpus,
                       numa=options.numa, hotplug=options.hotplug,
                       cpu=options.cpu, append=f"{options.append} {append}".strip(),
                       boot_timeout=options.boot_timeout, transport=options.transport,
                       timeout=options.timeout)


def boot(prepared: Prepared, options: Options, run_dir: Path | None = None,
         append: str = "") -> Session:
    return Session(prepared.build.image, prepared.initrd, run_dir or new_run_dir(),
                   boot_options(options, append), prepared.host_key)
