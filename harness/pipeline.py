"""Options -> built kernel + initramfs -> booted session: the path every command takes."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import build, image, source
from .cache import subdir
from .options import GUEST_SCRIPTS, GUEST_SOURCES, Options
from .session import BootOptions, Session


@dataclass(frozen=True)
class Prepared:
    build: build.BuildResult
    initrd: Path


def build_request(options: Options) -> build.BuildRequest:
    return build.BuildRequest(tree=source.parse_spec(options.tree), series=options.series_dir(),
                              base=options.base, fragments=options.fragment_paths(),
                              jobs=options.jobs,
                              build_dir=Path(options.build_dir).resolve() if options.build_dir else None)


def prepare(options: Options, programs: tuple[Path, ...] = ()) -> Prepared:
    result = build.build(build_request(options))
    initrd = image.build_initramfs(image.ImageRequest(scripts=GUEST_SCRIPTS, sources=GUEST_SOURCES,
                                                        programs=programs))
    return Prepared(result, initrd)


def new_run_dir(parent: Path | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = (parent or subdir("runs")) / f"{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    path.mkdir(parents=True)
    return path


def boot_options(options: Options, append: str = "") -> BootOptions:
    return BootOptions(accel=options.accel, memory=options.memory, cpus=options.cpus,
                       cpu=options.cpu, append=f"{options.append} {append}".strip(),
                       boot_timeout=options.boot_timeout)


def boot(prepared: Prepared, options: Options, run_dir: Path | None = None,
         append: str = "") -> Session:
    return Session(prepared.build.image, prepared.initrd, run_dir or new_run_dir(),
                   boot_options(options, append))
