"""Healing the direct map: regions whose pages are all free again are mapped by one PMD
(series patches 18-20), the cache stays within its bound, and /proc/meminfo shows it.

The evidence is the kernel's own: DirectMap4k/2M (CPA's page counts), the page-table
dump, and MemFree/MemAvailable; the series' counters only say how much to expect.
"""

from __future__ import annotations

import pytest

from harness.guest import crash
from tests.kernel.ptecache import (CACHE_MAX_SYSCTL, CACHED, COLLAPSES, KB_PER_PMD, PAGES_PER_PMD,
                                   SETTLED_DROP, SPLITS, Trace, kernel_reports, ptm)

from .checks import check_pte_mapped

pytestmark = pytest.mark.kernel

PAGE = 4096
PMD_SIZE = PAGE * PAGES_PER_PMD
HEAL_N = 4096  # eight 2M blocks


def regions_of(addresses: list[int], base: int) -> set[int]:
    """The 2M regions (numbered from the direct map's start) holding ``addresses``."""
    return {(address - base) // PMD_SIZE for address in addresses}


def still_split(trace: Trace, label: str, regions: set[int]) -> list[int]:
    """The ``regions`` that the dump ``label`` still maps with 4K PTEs."""
    snapshot = trace.maps[label]
    return sorted(r for r in regions if snapshot.level_of(snapshot.base + r * PMD_SIZE) == "pte")


def test_drop_maps_free_regions_by_pmd_again(guest, figures):
    """Allocate, free all, drop: DirectMap4k is back where it started, the regions the
    allocations split are PMD-mapped again in the page-table dump, and CPA counted one
    collapse for each."""
    # Three pictures of the direct map for the report: before, while held, after the drop.
    trace = ptm(guest, f"drop state map before alloc {HEAL_N} addrs map held state free all "
                       f"state drop state map after", timeout=600)
    start, held, freed, dropped = trace.states
    regions = regions_of(trace.addrs, trace.maps["held"].base)
    split = still_split(trace, "held", regions)
    left = still_split(trace, "after", regions)
    figures.update(regions=len(regions), splits=(held - start)[SPLITS],
                   directmap4k_start_kb=start["DirectMap4k"],
                   directmap4k_held_kb=held["DirectMap4k"],
                   directmap4k_after_drop_kb=dropped["DirectMap4k"],
                   regions_still_4k=len(left), cached_before_drop=freed[CACHED])
    assert len(split) == len(regions), f"held pages are not all 4K-mapped: {split}\n{trace}"
    # One region may be kept split: the cache's reserve refills after the drop empties it.
    assert dropped["DirectMap4k"] <= start["DirectMap4k"] + KB_PER_PMD, (
        f"DirectMap4k {start['DirectMap4k']} kB before {HEAL_N} allocations, "
        f"{held['DirectMap4k']} kB while held, {dropped['DirectMap4k']} kB after free and "
        f"drop_caches: the direct map did not heal\n{trace}")
    assert len(left) <= 1, (
        f"{len(left)} of the {len(regions)} regions the allocations used are still mapped "
        f"by 4K PTEs after drop_caches (regions {left[:8]})\n{trace}")
    collapses = (dropped - freed).get(COLLAPSES)
    figures["collapses"] = collapses
    assert collapses is not None, f"no {COLLAPSES} in /proc/vmstat\n{trace}"
    assert collapses >= len(regions) - len(left), (
        f"{collapses} level-2 collapses counted for {len(regions) - len(left)} regions "
        f"mapped by a PMD again\n{trace}")


ROUNDS = 20
CYCLE_PAGES = 10_000


def test_cycles_end_near_the_start(guest, figures):
    """Twenty rounds of allocating and freeing 10,000 pages, with page-table churn from
    processes coming and going, end, once the cache is dropped, with DirectMap4k at most
    one region above where they started."""
    start = ptm(guest, f"{SETTLED_DROP} state").states[0]
    peak = start["DirectMap4k"]
    for round_ in range(ROUNDS):
        churn = round_ % 5 == 0
        if churn:
            result = guest.run("bg-start churn pgtables 8 256", timeout=300)
            assert result.status == 0, result.output
        state = ptm(guest, f"alloc {CYCLE_PAGES} state free all", timeout=600).states[0]
        peak = max(peak, state["DirectMap4k"])
        if churn:
            result = guest.run("bg-stop churn", timeout=120)
            assert result.status == 0, result.output
    end = ptm(guest, f"{SETTLED_DROP} state map after")
    final = end.states[0]
    # What the cache held once dropped: a refill of the reserve after the drop (then
    # cached_at_end > 0) splits a fresh region, the one region the limit allows.
    figures.update(directmap4k_start_kb=start["DirectMap4k"], directmap4k_peak_kb=peak,
                   directmap4k_end_kb=final["DirectMap4k"],
                   collapses=(final - start).get(COLLAPSES), cached_at_end=final[CACHED],
                   cached_at_start=start[CACHED])
    assert peak > start["DirectMap4k"], "the rounds split nothing: nothing to heal"
    assert final["DirectMap4k"] <= start["DirectMap4k"] + KB_PER_PMD, (
        f"after {ROUNDS} rounds of {CYCLE_PAGES} pages: DirectMap4k {start['DirectMap4k']} kB "
        f"at the start, {peak} kB at the peak, {final['DirectMap4k']} kB after drop_caches "
        f"(more than one region above the start)\n{end}")


BOUND = 2048  # pages


def test_cache_stays_within_its_bound(guest, figures):
    """With vm.pte_mapped_cache_max at BOUND, freeing four times as many pages leaves the
    cache at most one region above BOUND at every step, and within BOUND once its trim
    ran; the pages it let go are free in the buddy allocator (MemFree)."""
    result = guest.run(f"echo {BOUND} > {CACHE_MAX_SYSCTL}")
    assert result.status == 0, f"cannot set {CACHE_MAX_SYSCTL}: {result.output}"
    steps = "drop state alloc 8192 state " + "free 1024 state " * 8 + "pause 2 state"
    trace = ptm(guest, steps, timeout=600)
    cached = [s[CACHED] for s in trace.states]
    counts = [s["shrinker_count"] for s in trace.states]
    start, held, final = trace.states[0], trace.states[1], trace.states[-1]
    figures.update(bound=BOUND, cached=cached, shrinker_counts=counts,
                   memfree_rise_kb=final["MemFree"] - held["MemFree"])
    assert max(cached) <= BOUND + PAGES_PER_PMD, (
        f"the cache held {max(cached)} pages with a bound of {BOUND}: {cached}\n{trace}")
    assert final[CACHED] <= BOUND and final["shrinker_count"] <= BOUND, (
        f"the cache held {final[CACHED]} pages after its trim (bound {BOUND})\n{trace}")
    # 8192 pages freed: all but what the cache kept are free again (4 kB each), within
    # what the rest of the system took or gave meanwhile.
    freed_kb = 4 * (8192 - final[CACHED])
    assert final["MemFree"] - held["MemFree"] >= freed_kb - 4 * 64, (
        f"MemFree rose by {final['MemFree'] - held['MemFree']} kB for {freed_kb} kB let go\n"
        f"{trace}")


def test_meminfo_shows_the_cache(guest, figures):
    """/proc/meminfo's PteMappedCache is the cache's size, and MemAvailable counts it: the
    shrinker giving the cache back moves MemFree, not MemAvailable."""
    trace = ptm(guest, f"drop alloc {HEAL_N} free all state scan 1000000 state")
    full, empty = trace.states
    line = full.values.get("PteMappedCache")
    figures.update(pte_mapped_cache_kb=line, cached=full[CACHED],
                   memfree_rise_kb=empty["MemFree"] - full["MemFree"],
                   memavailable_rise_kb=empty["MemAvailable"] - full["MemAvailable"])
    assert line is not None, f"no PteMappedCache line in /proc/meminfo\n{trace}"
    # A page table freed or taken between two reads of one state moves one of them.
    assert abs(line - 4 * full[CACHED]) <= 4 * 8, str(trace)
    assert abs(line - 4 * full["shrinker_count"]) <= 4 * 8, str(trace)
    rise_free = empty["MemFree"] - full["MemFree"]
    rise_available = empty["MemAvailable"] - full["MemAvailable"]
    assert rise_free >= 4 * HEAL_N * 3 // 4, f"the scan gave back too little\n{trace}"
    assert abs(rise_available) <= rise_free // 8, (
        f"giving back the cache raised MemFree by {rise_free} kB and MemAvailable by "
        f"{rise_available} kB: MemAvailable did not count the cache\n{trace}")


@pytest.mark.guest(cpus=2)
def test_collapse_races_with_the_page_table_dump(guest, figures):
    """Collapses, which free PTE pages, while another CPU reads the page-table dump in a
    loop: no kernel report (the suite's kernels have PROVE_LOCKING and DEBUG_VM; KASAN
    with --kconfig kasan), some regions still collapse, and every page handed out after
    it all is 4K-mapped."""
    result = guest.run("(while :; do cat /sys/kernel/debug/page_tables/kernel > /dev/null; "
                       "done) > /dev/null 2>&1 & echo $! > /tmp/dump.pid")
    assert result.status == 0, result.output
    before = ptm(guest, "state").states[0]
    for _ in range(10):
        ptm(guest, f"alloc {HEAL_N} free all drop", timeout=600)
    guest.run("kill $(cat /tmp/dump.pid)")
    trace = ptm(guest, f"state alloc {HEAL_N} addrs map after", timeout=600)
    collapses = (trace.states[0] - before).get(COLLAPSES)
    figures["collapses"] = collapses
    findings = kernel_reports(guest)
    assert not findings, ("kernel reports while collapsing under the dump:\n"
                          + crash.report(findings))
    assert collapses, f"no region collapsed in 10 rounds of allocate, free and drop\n{trace}"
    check_pte_mapped(trace, figures, HEAL_N)
