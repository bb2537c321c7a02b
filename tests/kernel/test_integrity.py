"""What a page handed out must be, whatever path it came by: zeroed when asked, and never
PMD-mapped, even when splitting the direct map fails."""

import pytest

from .checks import check_cpa_failure, check_zeroed

pytestmark = pytest.mark.kernel


def test_zeroed_after_poisoned_frees(guest, figures):
    """__GFP_ZERO pages served from the cache read all zero, though freed dirty."""
    check_zeroed(guest, figures)


def test_failed_split_hands_out_no_pmd_mapped_page(guest, figures):
    """A CPA failure during a refill leaves no page handed out that is not 4K-mapped."""
    check_cpa_failure(guest, figures)
