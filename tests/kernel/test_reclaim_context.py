"""A request that must not enter filesystem reclaim (GFP_NOFS) is served without entering
it, refill and direct-map split included (mm review of v1, finding 1.4: CPA allocated its
page tables with GFP_KERNEL whatever the request allowed, and a NOFS request could wait on
refill_mutex behind a task reclaiming through the filesystem).

The evidence is lockdep's, not the cache's: the test driver's ``alloc_nofs`` (series
patch 24) allocates under a mutex that lockdep is told filesystem reclaim takes, so any
allocation under it that may still enter filesystem reclaim is a circular locking
dependency in the kernel log (PROVE_LOCKING, kconfigs/debug.config)."""

from __future__ import annotations

import pytest

from harness.guest import crash
from tests.kernel.ptecache import kernel_reports, ptm

pytestmark = pytest.mark.kernel
N = 2048  # four 2M blocks' worth: from an emptied cache, several refills and splits


def test_nofs_refill_stays_out_of_fs_reclaim(guest, figures):
    """2,048 GFP_NOFS flagged allocations from an emptied cache all succeed, split the
    direct map (so the refill and CPA ran under the lock) and lockdep reports nothing."""
    trace = ptm(guest, f"drop state alloc_nofs {N} state free all", timeout=600)
    result = trace.results[0]
    delta = trace.states[1] - trace.states[0]
    splits = delta["direct_map_level2_splits"]
    figures.update(succeeded=result.succeeded, splits=splits,
                   refills=delta["pte_mapped_refill"])
    assert result.succeeded == N, f"GFP_NOFS allocations failed\n{trace}"
    # CPA's own counter: at least one 2M mapping was split while the lock was held,
    # which is what must not enter filesystem reclaim.
    assert splits >= 1, f"no split of the direct map under the lock: nothing was tested\n{trace}"
    reports = kernel_reports(guest)
    assert not reports, (
        f"kernel reports during {N} GFP_NOFS allocations ({splits} splits); a lockdep one "
        "means they may enter filesystem reclaim:\n" + crash.report(reports))
