"""Test 5: the pte_mapped_cache shrinker gives cached pages back."""

import pytest

from tests.kernel.ptecache import CACHED, SPLITS, Trace, ptm

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
    trace = ptm(guest, f"alloc {N * 2} free all state scan {m} state scan 1000000 state")
    s0, s1, s2 = trace.states
    figures.update(count_before=s0["shrinker_count"], count_after_scan=s1["shrinker_count"],
                   memfree_rise_kb=s1["MemFree"] - s0["MemFree"], count_after_big_scan=s2["shrinker_count"])
    freed = min(m, s0["shrinker_count"])
    assert (s1 - s0)["pte_mapped_shrink"] == freed, str(trace)
    # The count drops by what the scan freed plus what the cache handed out meanwhile (a
    # page table for some kernel activity: seen once in CI, 1001 for 1000 freed), less a few
    # pages freed back into it.
    drop, handed_out = s0["shrinker_count"] - s1["shrinker_count"], (s1 - s0)["pte_mapped_alloc"]
    figures.update(handed_out_meanwhile=handed_out)
    assert freed - MEMFREE_NOISE_PAGES <= drop - handed_out <= freed, (
        f"count dropped by {drop} with {freed} freed and {handed_out} handed out\n{trace}")
    assert s2["shrinker_count"] == 0 and s2[CACHED] == 0, str(trace)
    assert (s2 - s1)["pte_mapped_shrink"] == s1["shrinker_count"], str(trace)
    # MemFree is in kB: 4 per page.
    noise = [(s1["MemFree"] - s0["MemFree"]) // 4 - freed,
             (s2["MemFree"] - s1["MemFree"]) // 4 - s1["shrinker_count"]]
    figures.update(memfree_noise_pages=max(noise, key=abs))
    assert all(abs(n) <= MEMFREE_NOISE_PAGES for n in noise), (
        f"MemFree does not rise by the pages freed (off by {noise} pages)\n{trace}")
    assert s2[SPLITS] == s0[SPLITS], f"splits rose while shrinking\n{trace}"


def test_shrinker_drop_caches_empties(guest, figures):
    trace = ptm(guest, f"alloc {N * 2} free all state drop state")
    before, after = trace.states
    figures.update(cached_before=before[CACHED], cached_after=after[CACHED],
                   given_back=(after - before)["pte_mapped_shrink"])
    assert before[CACHED] >= N * 2, str(trace)
    assert after[CACHED] == 0 and after["shrinker_count"] == 0, str(trace)
    assert (after - before)["pte_mapped_shrink"] >= before[CACHED], str(trace)
    assert after[SPLITS] == before[SPLITS], f"splits rose while shrinking\n{trace}"


def test_shrinker_under_memory_pressure(guest, figures):
    cached_pages = 40000  # about 156 MiB held by the cache
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
