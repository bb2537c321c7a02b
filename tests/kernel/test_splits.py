"""Tests 1-4: grouping of direct-map splits, the baseline, reuse, DirectMap accounting."""

import pytest

from tests.kernel.ptecache import KB_PER_PMD, SPLITS, ptm

from .checks import N, check_baseline, check_grouping, check_reuse

pytestmark = pytest.mark.kernel


def test_grouping(guest, figures):
    check_grouping(guest, figures)


def test_baseline_splits_many_more(boot, figures):
    check_baseline(boot, figures)


def test_reuse_causes_no_split(guest, figures):
    check_reuse(guest, figures)


def test_direct_map_accounting(guest, figures):
    trace = ptm(guest, f"drop state alloc {N} state")
    before, after = trace.states
    delta = after - before
    total = lambda s: s["DirectMap4k"] + s["DirectMap2M"] + s["DirectMap1G"]  # noqa: E731
    figures.update(level2_splits=delta[SPLITS], level3_splits=delta["direct_map_level3_splits"],
                   delta_directmap4k_kb=delta["DirectMap4k"], directmap_total_kb=total(before))
    assert total(after) == total(before), f"DirectMap total changed\n{trace}"
    assert delta[SPLITS] > 0, f"no split to account for\n{trace}"
    assert delta["DirectMap4k"] == KB_PER_PMD * delta[SPLITS], (
        f"DirectMap4k moved {delta['DirectMap4k']} kB for {delta[SPLITS]} level-2 splits\n{trace}")
    assert delta["DirectMap1G"] == -1048576 * delta["direct_map_level3_splits"], str(trace)
