"""`pte-harness bench`: cold, cached and incremental build; harness boot vs a bare QEMU boot;
what a __GFP_PTE_MAPPED allocation costs against a plain order-0 one (the test driver's
``bench``, on one CPU and on two at once)."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from harness.kernel import build, patches
from harness import pipeline
from harness.guest import transport, vm
from harness.guest.session import vm_config
from harness.cache import subdir
from harness.errors import BootError, HarnessError, UsageError
from harness.progress import say
from harness.guest.image import READY
from harness.options import Options

CACHED_BUILD_TARGET = 5.0


BENCH_EDIT = ('pr_info("enabled for', 'pr_info("Enabled for')  # a one-line change in patch 1
INCREMENTAL_RATIO_TARGET = 0.2


def ccache_stats(env: dict[str, str]) -> dict[str, int]:
    """ccache's counters (empty when ccache is not installed)."""
    result = subprocess.run(["ccache", "--print-stats"], capture_output=True, text=True, env=env) \
        if shutil.which("ccache") else None
    if result is None or result.returncode != 0:
        return {}
    stats: dict[str, int] = {}
    for line in result.stdout.splitlines():
        name, _, value = line.partition("\t")
        if value.strip().isdigit():
            stats[name] = int(value)
    return stats


def hit_rate(before: dict[str, int], after: dict[str, int]) -> str:
    def delta(name: str) -> int:
        return after.get(name, 0) - before.get(name, 0)
    hits = delta("direct_cache_hit") + delta("preprocessed_cache_hit")
    misses = delta("cache_miss")
    if hits + misses == 0:
        return "no compiler calls through ccache"
    return f"ccache {hits} hits / {misses} misses ({100 * hits / (hits + misses):.0f}% hits)"


@contextmanager
def isolated_cache(root: Path) -> Iterator[dict[str, str]]:
    """A harness cache and a ccache of their own under ``root``; extracted trees and
    downloads are shared with the real cache (they are inputs, not build work)."""
    cache = root / "cache"
    cache.mkdir()
    for name in ("trees", "downloads", "hashes"):
        (cache / name).symlink_to(subdir(name), target_is_directory=True)
    saved = {name: os.environ.get(name) for name in ("PTE_HARNESS_CACHE", "CCACHE_DIR")}
    os.environ.update(PTE_HARNESS_CACHE=str(cache), CCACHE_DIR=str(root / "ccache"))
    try:
        yield dict(os.environ)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_rows(options: Options) -> list[tuple[str, float, str]]:
    """Cold build (empty workspace and ccache), cached build (same inputs), and an
    incremental build after a one-line change in one patch of the series."""
    request = pipeline.build_request(options)
    if request.series is None:
        raise UsageError("bench's build figures need a series (the one-line change is made "
                         "in one of its patches)")
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(dir=subdir("bench")) as tmp, \
            isolated_cache(Path(tmp)) as env:
        say("cold build (empty workspace and ccache) ...")
        before = ccache_stats(env)
        cold = build.build(request)
        rows.append(("cold build", cold.seconds, hit_rate(before, ccache_stats(env))))
        start = time.monotonic()
        cached = build.build(request)
        rows.append(("cached build (same inputs, no make)", time.monotonic() - start,
                     "reused" if cached.reused else "REBUILT"))
        changed = patches.edited_copy(request.series, Path(tmp) / "series-edited", *BENCH_EDIT)
        say("incremental build after a one-line change in one patch ...")
        before = ccache_stats(env)
        incremental = build.build(replace(request, series=changed))
        ratio = incremental.seconds / cold.seconds
        met = "met" if ratio <= INCREMENTAL_RATIO_TARGET else "MISSED"
        rows.append(("incremental build (one line changed in one patch)", incremental.seconds,
                     f"{ratio:.2f}x cold, target <= {INCREMENTAL_RATIO_TARGET}x: {met}; "
                     + hit_rate(before, ccache_stats(env))))
    return rows


def bare_boot(prepared: pipeline.Prepared, accel: str, options: Options) -> float:
    """QEMU start until the guest's init prints its ready line on the console (no harness)."""
    with tempfile.TemporaryDirectory(dir=subdir("bench")) as tmp:
        config = vm_config(prepared.build.image, prepared.initrd, Path(tmp),
                           pipeline.boot_options(options), accel, vm.BARE)
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
    target = transport.by_name(name).boot_ratio_target
    bare = statistics.median(bare_boot(prepared, accel, options) for _ in range(rounds))
    ours = statistics.median(harness_boot(prepared, options) for _ in range(rounds))
    ratio = ours / bare
    latency, transfer = on_guest(prepared, options)
    return [
        (f"{name}: bare QEMU boot to init's first output ({accel}, median of {rounds})", bare, ""),
        (f"{name}: harness boot to first command ({accel}, median of {rounds})", ours,
         f"{ratio:.2f}x bare" + (f", target <= {target}x: {'met' if ratio <= target else 'MISSED'}"
                                 if target is not None else "")),
        (f"{name}: command round trip (true, median of 20)", latency, ""),
        (f"{name}: put + get of 1 MiB", transfer, f"{2 * TRANSFER_BYTES / 1e6 / transfer:.2f} MB/s"),
    ]


SHAPES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("1 CPU", {}), ("2 CPUs", {"cpus": 2}),
    # the machine of tests/integration/test_topology.py: one kernel for NUMA and hotplug
    ("2 CPUs, 2 NUMA nodes, 1G hotplug slots", {"cpus": 2, "numa": 2, "hotplug": "1G"}))


def shape_rows(options: Options, rounds: int, accel: str) -> list[tuple[str, float, str]]:
    """Bare QEMU boot and harness boot to first command for each machine shape (the NUMA
    and hotplug shape uses its own kernel, built here when the cache lacks it)."""
    rows = []
    for name, values in SHAPES:
        shaped = replace(options, **values)
        prepared = pipeline.prepare(shaped)
        bare = statistics.median(bare_boot(prepared, accel, shaped) for _ in range(rounds))
        ours = statistics.median(harness_boot(prepared, shaped) for _ in range(rounds))
        rows.append((f"{name}: bare QEMU boot / harness boot to first command ({accel}, "
                     f"median of {rounds})", ours, f"bare {bare:.2f} s, {ours / bare:.2f}x bare"))
    return rows


COST_PAIRS = 100_000
COST_RATIO_TARGET = 1.5  # flagged alloc+free pair against a plain one, on one CPU
BENCH_FILE = "/sys/kernel/debug/pte_mapped_test/bench"


@dataclass(frozen=True)
class CacheCost:
    """One ``bench`` of the test driver: wall times of ``pairs`` alloc+free pairs on each of
    ``cpus`` CPUs at once, flagged (warm cache) and plain."""
    cpus: int
    pairs: int
    flagged_ns: int
    plain_ns: int
    failed: int

    @property
    def ratio(self) -> float:
        return self.flagged_ns / self.plain_ns


BENCH_LINE = re.compile(r"bench cpus (\d+) pairs (\d+) flagged_ns (\d+) plain_ns (\d+) "
                        r"failed (\d+)")


def parse_cost(text: str) -> CacheCost:
    """The driver's ``bench`` line; an error naming the file when it is not there."""
    match = BENCH_LINE.search(text)
    if not match:
        raise HarnessError(f"{BENCH_FILE} gave no bench line (a series without the driver's "
                           f"bench, patch 17?):\n{text.strip()}")
    cpus, pairs, flagged, plain, failed = (int(g) for g in match.groups())
    if not plain or not cpus:
        raise HarnessError(f"{BENCH_FILE}: the bench did not run (cpus {cpus}, plain_ns {plain})")
    return CacheCost(cpus, pairs, flagged, plain, failed)


def measure_cost(options: Options, cpus: int, pairs: int) -> CacheCost:
    """Boot a guest with ``cpus`` CPUs and run the driver's bench there."""
    shaped = replace(options, cpus=cpus)
    prepared = pipeline.prepare(shaped)
    with tempfile.TemporaryDirectory(dir=subdir("bench")) as tmp:
        with pipeline.boot(prepared, shaped, Path(tmp)) as session:
            result = session.run(f"echo {pairs} > {BENCH_FILE} && cat {BENCH_FILE}", timeout=600)
            if result.status != 0:
                raise HarnessError(f"the driver's bench failed ({BENCH_FILE}):\n{result.output}")
            return parse_cost(result.output)


def cost_rows(one: CacheCost, two: CacheCost) -> list[tuple[str, float, str]]:
    """Flagged against plain pairs on one CPU (target: COST_RATIO_TARGET), and on two CPUs at
    once: their ratio, and how each kind's throughput scales from one CPU to two (a lock
    that serialises the CPUs shows as a flagged scaling well below the plain one)."""
    met = "met" if one.ratio <= COST_RATIO_TARGET else "MISSED"
    def scaling(kind: str) -> float:
        single, double = getattr(one, kind), getattr(two, kind)
        return (two.cpus * two.pairs / double) / (one.pairs / single)
    rows = [(f"cache cost, 1 CPU: {one.pairs} flagged alloc+free pairs (warm cache)",
             one.flagged_ns / 1e9,
             f"plain {one.plain_ns / 1e9:.3f} s, {one.ratio:.2f}x plain, "
             f"target <= {COST_RATIO_TARGET}x: {met}; {one.failed} failed"),
            (f"cache cost, {two.cpus} CPUs at once: {two.pairs} flagged pairs each",
             two.flagged_ns / 1e9,
             f"plain {two.plain_ns / 1e9:.3f} s, {two.ratio:.2f}x plain; throughput "
             f"{scaling('flagged_ns'):.2f}x one CPU's (plain {scaling('plain_ns'):.2f}x); "
             f"{two.failed} failed")]
    return rows


def main(options: Options, rounds: int = 5, cold: bool = True, ssh: bool = True,
         shapes: bool = True, cost: bool = True) -> int:
    """The serial figures for ``options`` (whatever its transport), then the same over ssh
    (its own kernel, with kconfigs/net.config: built here when the cache lacks it)."""
    options = replace(options, transport="serial")
    rows: list[tuple[str, float, str]] = []
    if cold:
        rows += build_rows(options)
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
    if shapes:
        rows += shape_rows(options, rounds, accel)
    if cost:
        say(f"cache cost: {COST_PAIRS} alloc+free pairs, flagged and plain, 1 and 2 CPUs ...")
        rows += cost_rows(measure_cost(options, 1, COST_PAIRS),
                          measure_cost(options, 2, COST_PAIRS))
    width = max(len(name) for name, _, _ in rows)
    print(f"pte-harness bench: {options.tree}, series {options.series}, {os.cpu_count()} CPUs")
    for name, seconds, note in rows:
        print(f"  {name:<{width}}  {seconds:7.2f} s  {note}")
    return 0
