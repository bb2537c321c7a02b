"""Host side of the pte-mapped cache tests: run ``ptm`` steps in a guest, parse the trace.

``ptm`` (guest-scripts/ptm) runs every step in one guest process with shell builtins, so
no fork (no page-table allocation) disturbs the figures between two ``state`` steps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from harness.guest import crash

from .directmap import DirectMap, parse_run

PAGES_PER_PMD = 512
KB_PER_PMD = 2048
SPLITS = "direct_map_level2_splits"
COLLAPSES = "direct_map_level2_collapses"  # series v3: regions mapped by a PMD again
CACHED = "nr_pte_mapped_cached"


@dataclass(frozen=True)
class State:
    """One ``state`` step: cache, vmstat and meminfo figures."""

    values: dict[str, int]

    def __getitem__(self, name: str) -> int:
        if name not in self.values:
            raise KeyError(f"{name} not read by ptm state (have: {', '.join(sorted(self.values))})")
        return self.values[name]

    def __sub__(self, before: State) -> dict[str, int]:
        return {k: v - before.values[k] for k, v in self.values.items() if k in before.values}


@dataclass(frozen=True)
class OpResult:
    op: str
    arg: str
    requested: int
    succeeded: int
    failed: int
    nonzero: int | None = None  # alloc_zero: pages that were not zero (drivers since v2)


@dataclass
class Trace:
    """What one ``ptm`` run printed: states and driver results in order."""

    command: str
    states: list[State] = field(default_factory=list)
    results: list[OpResult] = field(default_factory=list)
    addrs: list[int] = field(default_factory=list)
    maps: dict[str, DirectMap] = field(default_factory=dict)  # ``map LABEL`` steps
    injections_left: list[int] = field(default_factory=list)  # ``failcpa off`` steps
    types: list[dict[str, int]] = field(default_factory=list)  # ``types``: held pages by
    # the migratetype of their pageblock, {"Unmovable": U, "Movable": M, ...}

    def __str__(self) -> str:
        lines = [f"ptm trace of: {self.command}"]
        keys = sorted({k for s in self.states for k in s.values})
        for key in keys:
            row = " ".join(f"{s.values.get(key, '-'):>9}" for s in self.states)
            lines.append(f"  {key:<26}{row}")
        lines += [f"  {r.op} {r.arg}: requested {r.requested} succeeded {r.succeeded} "
                  f"failed {r.failed}" + ("" if r.nonzero is None else f" nonzero {r.nonzero}")
                  for r in self.results]
        return "\n".join(lines)


_RESULT = re.compile(
    r"^result (\S+) (\S+) requested (\d+) succeeded (\d+) failed (\d+)(?: nonzero (\d+))?$")


def parse_trace(command: str, output: str) -> Trace:
    trace = Trace(command)
    for line in output.splitlines():
        if line.startswith("state "):
            pairs = (item.split("=", 1) for item in line.split()[1:])
            trace.states.append(State({k: int(v) for k, v in pairs}))
        elif match := _RESULT.match(line):
            op, arg, requested, succeeded, failed, nonzero = match.groups()
            trace.results.append(OpResult(op, arg, int(requested), int(succeeded), int(failed),
                                          None if nonzero is None else int(nonzero)))
        elif line.startswith("failcpa left "):
            trace.injections_left.append(int(line.split()[2]))
        elif line.startswith("types "):
            words = line.split()[1:]
            trace.types.append({name: int(n) for name, n in zip(words[::2], words[1::2])})
        elif line.startswith("addr "):
            trace.addrs.append(int(line.split()[1], 16))
        elif line.startswith("map "):
            _, label, rest = line.split(" ", 2)
            run = parse_run(rest)
            if run is not None:
                runs = trace.maps.get(label, DirectMap(())).runs
                trace.maps[label] = DirectMap((*runs, run))
    return trace


class PtmError(AssertionError):
    """The guest-side ``ptm`` run itself failed."""


def ptm(session, steps: str, timeout: float = 300.0) -> Trace:
    """Run ``ptm STEPS`` in the guest and return its parsed trace."""
    result = session.run(f"ptm {steps}", timeout=timeout)
    if result.status != 0:
        raise PtmError(f"'ptm {steps}' exited {result.status}:\n{result.output}")
    trace = parse_trace(f"ptm {steps}", result.output)
    for label, snapshot in trace.maps.items():  # kept for the report's direct-map pictures
        session.direct_maps[label] = snapshot.strip()
    return trace


def grouping_bound(pages: int) -> int:
    """Most level-2 splits a cache may cause for ``pages`` allocations: one per 2M block + 1."""
    return math.ceil(pages / PAGES_PER_PMD) + 1


KPF_PGTABLE = 26  # include/uapi/linux/kernel-page-flags.h

# The cache's bound in pages (series v3, patch 19); 0 lifts it.
CACHE_MAX_SYSCTL = "/proc/sys/vm/pte_mapped_cache_max"


def lift_cache_bound(session) -> None:
    """Let the cache grow without bound, for tests sized for an unbounded cache (a series
    without the sysctl has no bound to lift)."""
    session.run(f"[ ! -e {CACHE_MAX_SYSCTL} ] || echo 0 > {CACHE_MAX_SYSCTL}")


# Drop the cache twice, a second apart: the first drop empties it, the reserve work may
# then refill it with a fresh 2M block (split for the purpose), which the second drop
# maps by a PMD again. What DirectMap4k says after it is the healed direct map.
SETTLED_DROP = "drop pause 1 drop"


def free_pages(state: State) -> int:
    """Free memory in pages: MemFree (kB) plus the per-CPU lists, which MemFree does not
    count (``pcp_pages``, read by ptm since series v3's tests; 0 where a trace lacks it)."""
    return state["MemFree"] // 4 + state.values.get("pcp_pages", 0)

# KASAN takes pages for itself while the driver allocates and frees (its stack depot grows
# with each new allocation stack), so MemFree moves by more than the cache's pages. Seen on
# 6.12 with kconfigs/kasan.config (v1 and v2 alike): 116 pages in check_shrinker_count,
# 60-178 in test_shrinker_scan. MemFree comparisons allow this many pages there.
KASAN_MEMFREE_SLACK = 320


def kasan(session) -> bool:
    """Whether the guest's kernel was built with KASAN (its report function is in
    /proc/kallsyms): tests comparing MemFree with the cache allow KASAN_MEMFREE_SLACK."""
    return session.run("grep -q ' kasan_report$' /proc/kallsyms", timeout=60).status == 0


def kernel_reports(session) -> list[crash.Finding]:
    """Reports in the guest's kernel log so far, found by the harness's own scanner (the
    one it runs on every console), read here so that a test's verdict names them."""
    return crash.scan(session.run("dmesg", timeout=120).output)


def meminfo(session, path: str = "/proc/meminfo") -> dict[str, int]:
    """kB figures of /proc/meminfo (or a node's meminfo, whose lines start "Node N")."""
    text = session.run(f"cat {path}").output
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(\w+):\s+(\d+) kB", text)}


def flagged_pfns(session, bit: int) -> list[int]:
    """The page frames whose /proc/kpageflags has ``bit`` set, read in the guest by
    guest-src/kpf.c: the kernel's own page flags, which the cache does not control."""
    result = session.run(f"kpf {bit}", timeout=120)
    if result.status != 0:
        raise PtmError(f"kpf {bit} exited {result.status}:\n{result.output}")
    pfns: list[int] = []
    for line in result.output.splitlines():
        if line.startswith("pfns "):
            _, start, end = line.split()
            pfns.extend(range(int(start), int(end)))
    return pfns
