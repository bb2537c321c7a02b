"""What a page handed out must be, whatever path it came by: zeroed when asked, and never
PMD-mapped, even when splitting the direct map fails."""

import pytest

from .checks import (check_cpa_failure, check_fault_injection, check_nofail_after_failed_split,
                     check_zeroed)

pytestmark = pytest.mark.kernel


def test_zeroed_after_poisoned_frees(guest, figures):
    """__GFP_ZERO pages served from the cache read all zero, though freed dirty."""
    check_zeroed(guest, figures)


def test_failed_split_hands_out_no_pmd_mapped_page(guest, figures):
    """A CPA failure during a refill leaves no page handed out that is not 4K-mapped."""
    check_cpa_failure(guest, figures)


def test_nofail_survives_a_failed_split(guest, figures):
    """__GFP_NOFAIL requests never get NULL, even when a refill's split fails (mm review of
    v1, finding 5)."""
    check_nofail_after_failed_split(guest, figures)


def test_fault_injection_reaches_cache_hits(guest, figures):
    """A flagged allocation served from the cache still meets fault injection, so callers'
    error paths can be tested (mm review of v1, finding 2)."""
    check_fault_injection(guest, figures)
