"""Test 7: atomic __GFP_PTE_MAPPED requests (DEBUG_ATOMIC_SLEEP catches sleeping)."""

import pytest

from tests.kernel.ptecache import ptm

from .checks import N, check_atomic_served, check_pte_mapped, check_reserve

pytestmark = pytest.mark.kernel


def test_atomic_served_from_cache(guest, figures):
    check_atomic_served(guest, figures)


def test_atomic_on_empty_cache_fails_cleanly(guest, figures):
    trace = ptm(guest, f"drop state alloc_atomic {N} state addrs map after")
    result = trace.results[0]
    delta = trace.states[1] - trace.states[0]
    figures.update(requested=result.requested, succeeded=result.succeeded, failed=result.failed,
                   atomic_fail_counted=delta["pte_mapped_atomic_fail"])
    assert result.failed > 0, f"an empty cache served every atomic request\n{trace}"
    assert delta["pte_mapped_atomic_fail"] == result.failed, str(trace)
    assert delta["pte_mapped_atomic_alloc"] == result.succeeded, str(trace)
    check_pte_mapped(trace, figures, result.succeeded)


def test_reserve_topped_up_after_drain(guest, figures):
    check_reserve(guest, figures)
