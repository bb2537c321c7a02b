"""`pte-harness bench`: cold and cached build, harness boot vs a bare QEMU boot, one run."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from . import build, kconfig, patches, pipeline, source, vm
from .cache import say, subdir
from .errors import BootError, HarnessError
from .image import READY
from .options import Options

CACHED_BUILD_TARGET = 5.0
BOOT_RATIO_TARGET = 1.3


def cold_build(options: Options) -> float:
    """Configure and build from scratch in a throw-away directory, without ccache."""
    request = pipeline.build_request(options)
    tree = source.resolve(request.tree)
    if request.series:
        tree = patches.apply_series(tree, patches.load_series(request.series))
    fragments = [kconfig.load_fragment(p) for p in request.fragments]
    with tempfile.TemporaryDirectory(dir=subdir("bench")) as tmp:
        build_dir = Path(tmp)
        log = build_dir / "build.log"
        command = ["make", "-C", str(tree.path), f"O={build_dir}", f"ARCH={build.ARCH}",
                   f"-j{request.jobs}"]
        with build.build_lock():
            start = time.monotonic()
            kconfig.make_config(command, tree.path, build_dir, request.base, fragments, log)
            build.run_make(command + ["bzImage"], log)
            return time.monotonic() - start


def bare_boot(prepared: pipeline.Prepared, accel: str, cpus: int, memory: str) -> float:
    """QEMU start until the guest's init prints its ready line on the console (no harness)."""
    with tempfile.TemporaryDirectory(dir=subdir("bench")) as tmp:
        config = vm.VmConfig(prepared.build.image, prepared.initrd, Path(tmp), accel=accel,
                             memory=memory, cpus=cpus, mode="bare")
        console = config.console_log
        command = config.command()
        start = time.monotonic()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            while time.monotonic() - start < 120:
                if console.exists() and READY in console.read_text(errors="replace"):
                    return time.monotonic() - start
                if process.poll() is not None:
                    break
                time.sleep(0.002)
            raise BootError(f"bare boot did not print {READY}: {' '.join(command)}")
        finally:
            process.kill()
            process.wait()


def harness_boot(prepared: pipeline.Prepared, options: Options) -> float:
    """Session start to the first command's result."""
    with tempfile.TemporaryDirectory(dir=subdir("bench")) as tmp:
        start = time.monotonic()
        with pipeline.boot(prepared, options, Path(tmp)) as session:
            session.run("true")
            return time.monotonic() - start


TRANSFER_BYTES = 1 << 20


def on_guest(prepared: pipeline.Prepared, options: Options, count: int = 20) -> tuple[float, float]:
    """Median seconds of ``true`` on a booted guest (one round trip of the transport), and
    seconds to put a 1 MiB file into the guest and get it back (checked byte for byte)."""
    with tempfile.TemporaryDirectory(dir=subdir("bench")) as tmp:
        with pipeline.boot(prepared, options, Path(tmp)) as session:
            latency = statistics.median(session.run("true").seconds for _ in range(count))
            sent, got = Path(tmp) / "sent", Path(tmp) / "got"
            sent.write_bytes(os.urandom(TRANSFER_BYTES))
            start = time.monotonic()
            session.put(sent, "/tmp/bench-transfer", timeout=300)
            session.get("/tmp/bench-transfer", got, timeout=300)
            transfer = time.monotonic() - start
            if got.read_bytes() != sent.read_bytes():
                raise HarnessError(f"{options.transport}: the file got back differs from the one put")
            return latency, transfer


def transport_rows(prepared: pipeline.Prepared, options: Options, rounds: int,
                   accel: str) -> list[tuple[str, float, str]]:
    """Bare boot, boot to first command and command round trip of one transport's kernel."""
    name = options.transport
    bare = statistics.median(bare_boot(prepared, accel, options.cpus, options.memory)
                             for _ in range(rounds))
    ours = statistics.median(harness_boot(prepared, options) for _ in range(rounds))
    ratio = ours / bare
    latency, transfer = on_guest(prepared, options)
    return [
        (f"{name}: bare QEMU boot to init's first output ({accel}, median of {rounds})", bare, ""),
        (f"{name}: harness boot to first command ({accel}, median of {rounds})", ours,
         f"{ratio:.2f}x bare" + (f", target <= {BOOT_RATIO_TARGET}x: "
                                 f"{'met' if ratio <= BOOT_RATIO_TARGET else 'MISSED'}"
                                 if name == "serial" else "")),
        (f"{name}: command round trip (true, median of 20)", latency, ""),
        (f"{name}: put + get of 1 MiB", transfer, f"{2 * TRANSFER_BYTES / 1e6 / transfer:.2f} MB/s"),
    ]


def main(options: Options, rounds: int = 5, cold: bool = True, ssh: bool = True) -> int:
    """The serial figures for ``options`` (whatever its transport), then the same over ssh
    (its own kernel, with kconfigs/net.config: built here when the cache lacks it)."""
    options = replace(options, transport="serial")
    rows: list[tuple[str, float, str]] = []
    if cold:
        say("cold build (no ccache, fresh build directory) ...")
        rows.append(("cold build", cold_build(options), ""))
    pipeline.prepare(options)  # builds the image if the cache does not hold it yet
    start = time.monotonic()
    prepared = pipeline.prepare(options)
    cached = time.monotonic() - start
    met = "met" if cached < CACHED_BUILD_TARGET else "MISSED"
    rows.append(("cached build", cached, f"target < {CACHED_BUILD_TARGET:.0f}s: {met}"))
    accel = vm.choose_accel(options.accel, prepared.build.image, prepared.initrd).accel
    rows += transport_rows(prepared, options, rounds, accel)
    if ssh:
        ssh_options = replace(options, transport="ssh")
        rows += transport_rows(pipeline.prepare(ssh_options), ssh_options, rounds, accel)
    width = max(len(name) for name, _, _ in rows)
    print(f"pte-harness bench: {options.tree}, series {options.series}, {os.cpu_count()} CPUs")
    for name, seconds, note in rows:
        print(f"  {name:<{width}}  {seconds:7.2f} s  {note}")
    return 0
