"""Test 5: the pte_mapped_cache shrinker gives cached pages back."""

import pytest

from tests.kernel.ptecache import (CACHED, COLLAPSES, KASAN_MEMFREE_SLACK, PAGES_PER_PMD, SPLITS,
                                   Trace, free_pages, kasan, lift_cache_bound, ptm)

from .checks import N, check_shrinker_count

pytestmark = pytest.mark.kernel


def test_shrinker_count_matches_cache_counter(guest, figures):
    check_shrinker_count(guest, figures)


# MemFree is the whole zone's free count: besides the pages the shrinker frees, a page
# drained from a per-CPU list or freed by a kworker may land between two reads (seen once
# in CI: 3588 pages for 3587 freed). The cache's own counters are checked exactly; MemFree
# must agree with them within this many pages.
MEMFREE_NOISE_PAGES = 8


def test_shrinker_scan(guest, figures):
    m = 1000
    slack = KASAN_MEMFREE_SLACK if kasan(guest) else MEMFREE_NOISE_PAGES
    trace = ptm(guest, f"alloc {N * 2} free all state scan {m} state scan 1000000 state")
    s0, s1, s2 = trace.states
    figures.update(count_before=s0["shrinker_count"], count_after_scan=s1["shrinker_count"],
                   memfree_rise_kb=s1["MemFree"] - s0["MemFree"], count_after_big_scan=s2["shrinker_count"])
    freed = min(m, s0["shrinker_count"])
    assert (s1 - s0)["pte_mapped_shrink"] == freed, str(trace)
    # The count drops by what the scan freed plus what the cache handed out meanwhile (a
    # page table for some kernel activity: seen once in CI, 1001 for 1000 freed), less what
    # came back into it meanwhile: those pages again, or a few freed earlier (page tables
    # freed after an RCU grace period). Seen over ssh in CI: 9 handed out and 9 back.
    drop, handed_out = s0["shrinker_count"] - s1["shrinker_count"], (s1 - s0)["pte_mapped_alloc"]
    figures.update(handed_out_meanwhile=handed_out, count_drop=drop)
    assert freed - MEMFREE_NOISE_PAGES <= drop <= freed + handed_out, (
        f"count dropped by {drop} with {freed} freed and {handed_out} handed out\n{trace}")
    # Empty, unless an allocation meanwhile found it empty and refilled it (seen over ssh:
    # 9 pages handed out after the big scan, one refill, 514 cached).
    refilled = PAGES_PER_PMD * (s2 - s1)["pte_mapped_refill"]
    assert s2["shrinker_count"] <= refilled and s2[CACHED] <= refilled, str(trace)
    # The big scan frees what the cache held then: the count read just before and just after
    # the counters bound it (a page may come or go in between: seen over ssh, 3565/3566).
    counts1 = s1["shrinker_count"], s1["shrinker_count_after"]
    assert min(counts1) - MEMFREE_NOISE_PAGES <= (s2 - s1)["pte_mapped_shrink"] \
        <= max(counts1) + MEMFREE_NOISE_PAGES, str(trace)
    # MemFree is in kB: 4 per page. A refill meanwhile took a 2M block (512 pages). The free
    # memory is MemFree plus the per-CPU lists (which MemFree does not count). Since series
    # v3 a region mapped by a PMD again also frees its PTE page, to those lists or, when it
    # lies in a split region, to the cache: each collapse may add one page.
    refilled0 = PAGES_PER_PMD * (s1 - s0)["pte_mapped_refill"]

    def off_by(before, after, given_back: int) -> int:
        rise = free_pages(after) - free_pages(before)
        low, high = given_back, given_back + (after - before).get(COLLAPSES, 0)
        return rise - min(max(rise, low), high)

    noise = [off_by(s0, s1, freed - refilled0),
             off_by(s1, s2, (s2 - s1)["pte_mapped_shrink"] - refilled)]
    figures.update(memfree_noise_pages=max(noise, key=abs), memfree_slack=slack)
    assert all(abs(n) <= slack for n in noise), (
        f"MemFree does not rise by the pages freed (off by {noise} pages, more than {slack})"
        f"\n{trace}")
    assert s2[SPLITS] == s0[SPLITS], f"splits rose while shrinking\n{trace}"


def test_shrinker_drop_caches_empties(guest, figures):
    trace = ptm(guest, f"alloc {N * 2} free all state drop state")
    before, after = trace.states
    figures.update(cached_before=before[CACHED], cached_after=after[CACHED],
                   given_back=(after - before)["pte_mapped_shrink"])
    assert before[CACHED] >= N * 2, str(trace)
    assert after[CACHED] == 0 and after["shrinker_count"] == 0, str(trace)
    # Everything the cache held is given back, within the pages that came or went between
    # the readings of one state (seen over ssh: 4,568 given back, the count read 4,559 and
    # 4,568 around a cache counter of 4,572).
    held = min(before["shrinker_count"], before["shrinker_count_after"], before[CACHED])
    assert (after - before)["pte_mapped_shrink"] >= held - MEMFREE_NOISE_PAGES, str(trace)
    assert after[SPLITS] == before[SPLITS], f"splits rose while shrinking\n{trace}"


def test_shrinker_under_memory_pressure(guest, figures):
    cached_pages = 40000  # about 156 MiB held by the cache
    # More than series v3's default bound (a sixteenth of memory): lift it, this test is
    # about how much of a large cache reclaim takes.
    lift_cache_bound(guest)
    before = ptm(guest, f"alloc {cached_pages} free all state", timeout=600).states[0]
    # Hold more than is free plus half of the cache: only the shrinker can make room, and
    # it must give back more than half of the cache while the memory is held. How much
    # more reclaim takes is the kernel's business (kswapd stops at the high watermark,
    # a direct reclaim, which does not count the pages the cache gives back, scans it
    # all), so the figures are read while the workload still holds its memory: at exit
    # its pages in the cache's regions go back to the cache.
    shortfall_mb = before[CACHED] * 3 // 4 // 256
    want_mb = before["MemFree"] // 1024 + shortfall_mb
    result = guest.run(f"bg-start press hold {want_mb}", timeout=600)
    during = ptm(guest, "state").states[0]
    stop = guest.run("bg-stop press", timeout=120)
    after = ptm(guest, "state").states[0]
    table = Trace(f"hold {want_mb} MiB ({shortfall_mb} MiB more than free)", [before, during, after])
    figures.update(cached_before=before[CACHED], cached_during=during[CACHED],
                   cached_after_exit=after[CACHED], pressure_mb=want_mb, shortfall_mb=shortfall_mb,
                   given_back=(during - before)["pte_mapped_shrink"])
    assert result.status == 0, f"workload failed: {result.output}\n{table}"
    assert stop.status == 0, f"workload did not stop: {stop.output}\n{table}"
    assert (during - before)["pte_mapped_shrink"] >= shortfall_mb * 256, (
        f"the shrinker gave back too little\n{table}")
    assert during[CACHED] < before[CACHED] // 2, f"the cache was not drained\n{table}"
    # The other side: reclaim takes about the shortfall from the cache, not all of it (a
    # shrinker whose freed pages reclaim does not see is scanned until the cache is gone).
    # Measured on the series, 5 runs: it kept 4,117-8,852 of the 10,219 pages the shortfall
    # left; with the reclaimed pages unaccounted (tests/mutants), 452-457.
    spare = before[CACHED] - shortfall_mb * 256
    figures.update(spare_pages=spare)
    assert during[CACHED] >= spare // 4, (
        f"for a shortfall of {shortfall_mb * 256} pages the cache gave back "
        f"{(during - before)['pte_mapped_shrink']} and kept {during[CACHED]} of the {spare} "
        f"it could have kept (at least a quarter expected): reclaim drained it\n{table}")
