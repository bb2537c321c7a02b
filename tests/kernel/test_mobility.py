"""Grouping by mobility (review finding 4, series v3 patch 23): page tables from the cache
never lie in a pageblock the buddy allocator counts as movable, neither the pages a
fallback takes around itself nor the pages the cache captures later.

The evidence is the pageblock flags (the test driver's ``types`` reads, for every page it
holds, the migratetype of its pageblock with get_pageblock_migratetype()), not the
series' counters, which only say how many fallbacks there were.
"""

from __future__ import annotations

import pytest

from tests.kernel.ptecache import lift_cache_bound, ptm

pytestmark = pytest.mark.kernel

FIRST, SECOND = 8192, 4096  # flagged allocations while memory is fragmented, then after
STRIDE = 8  # one page in 8 given back: movable pageblocks 1/8 free, too few to be claimed
MARGIN_MB = 16  # left unfragmented, for the guest's own needs


def test_page_tables_stay_out_of_movable_pageblocks(guest, figures):
    """All free memory scattered in single pages over movable pageblocks (anonymous memory
    with one page in 8 unmapped): the cache's refills fail, its single-page fallbacks find
    their pages in movable pageblocks, and the pages it then takes around them, and the
    pages it captures once the anonymous memory is freed, must not be movable ones."""
    lift_cache_bound(guest)
    meminfo = guest.run("cat /proc/meminfo", timeout=30).output
    free_mb = int(next(line.split()[1] for line in meminfo.splitlines()
                        if line.startswith("MemFree:"))) // 1024
    start = guest.run(f"bg-start frag fragment {free_mb - MARGIN_MB} {STRIDE}", timeout=300)
    assert start.status == 0, f"fragmenting {free_mb - MARGIN_MB} MB failed:\n{start.output}"
    # One process from here on: a fork needs an order-2 block, and there is none.
    trace = ptm(guest, f"state alloc {FIRST} state types stop frag alloc {SECOND} state types",
                timeout=600)
    before, fragmented, after = trace.states
    held, captured = trace.types
    delta = fragmented - before
    figures.update(fallbacks=delta["pte_mapped_fallback"],
                   neighbours=delta["pte_mapped_neighbour"], splits=delta["direct_map_level2_splits"],
                   held_movable=held.get("Movable"), held_unmovable=held.get("Unmovable"),
                   held_movable_after_free=captured.get("Movable"))
    assert all(r.failed == 0 for r in trace.results), f"flagged allocations failed\n{trace}"
    assert delta["pte_mapped_fallback"] > 0, (
        f"no single-page fallback in {FIRST} allocations on fragmented memory: the test did "
        f"not reach the path it checks\n{trace}")
    assert held.get("Movable") == 0, (
        f"{held.get('Movable')} of {FIRST} pages handed out lie in movable pageblocks "
        f"({delta['pte_mapped_fallback']} single-page fallbacks, "
        f"{delta['pte_mapped_neighbour']} neighbours taken): types {held}\n{trace}")
    assert captured.get("Movable") == 0, (
        f"after the anonymous memory was freed, {captured.get('Movable')} of "
        f"{FIRST + SECOND} pages handed out lie in movable pageblocks: the cache captured "
        f"pages freed there: types {captured}\n{trace}")
