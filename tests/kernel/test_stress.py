"""Allocate/free cycles of 10,000 pages, normal and atomic, with order-9 allocations failing:
the kernel log must stay clean (PROVE_LOCKING, DEBUG_ATOMIC_SLEEP, DEBUG_VM, DEBUG_PREEMPT)."""

import pytest

from tests.kernel.ptecache import ptm

pytestmark = pytest.mark.kernel
CYCLE = "alloc 10000 free all alloc 10000 free 5000 alloc_atomic 10000 free all"


def test_cycles_of_10000_under_fault_injection(guest, figures):
    trace = ptm(guest, f"fail9 on state {CYCLE} {CYCLE} state fail9 off drop", timeout=600)
    normal = [r for r in trace.results if r.op == "alloc"]
    atomic = [r for r in trace.results if r.op == "alloc_atomic"]
    delta = trace.states[1] - trace.states[0]
    figures.update(atomic_succeeded=sum(r.succeeded for r in atomic),
                   atomic_failed=sum(r.failed for r in atomic),
                   fallbacks=delta["pte_mapped_fallback"], neighbours=delta["pte_mapped_neighbour"],
                   refills=delta["pte_mapped_refill"])
    assert all(r.failed == 0 for r in normal), f"normal allocations failed\n{trace}"
    assert delta["pte_mapped_refill"] == 0 and delta["pte_mapped_fallback"] > 0, str(trace)
    assert delta["pte_mapped_atomic_fail"] == sum(r.failed for r in atomic), str(trace)
