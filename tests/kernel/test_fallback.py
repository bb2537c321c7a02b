"""Test 6: order-0 fallback when 2M blocks cannot be had, and its free neighbours."""

import pytest

from harness.ptecache import CACHED, SPLITS, ptm

from .checks import N, all_succeeded

pytestmark = pytest.mark.kernel


def check_fallback(session, figures):
    """With order-9 allocations failing, flagged ones still succeed through order-0
    fallbacks, and the fallback regions' free neighbours serve the rest without splits."""
    trace = ptm(session, f"drop fail9 on state alloc {N} state fail9 off")
    all_succeeded(trace)
    before, after = trace.states
    delta = after - before
    figures.update(fallbacks=delta["pte_mapped_fallback"], neighbours=delta["pte_mapped_neighbour"],
                   refills=delta["pte_mapped_refill"], splits=delta[SPLITS])
    assert delta["pte_mapped_fallback"] >= 1, f"no order-0 fallback\n{trace}"
    assert delta["pte_mapped_refill"] == 0, f"a 2M refill despite fail_page_alloc\n{trace}"
    from_neighbours = N - before[CACHED] - delta["pte_mapped_fallback"]
    assert delta["pte_mapped_neighbour"] >= from_neighbours, (
        f"{N} requests, {before[CACHED]} cached pages and {delta['pte_mapped_fallback']} "
        f"fallbacks need >= {from_neighbours} neighbours, got {delta['pte_mapped_neighbour']}\n{trace}")
    assert delta[SPLITS] <= delta["pte_mapped_fallback"], (
        f"pages served from neighbours split the direct map\n{trace}")


def test_fallback_and_neighbours(guest, figures):
    check_fallback(guest, figures)
