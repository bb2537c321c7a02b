"""Test 6: order-0 fallback when 2M blocks cannot be had, and its free neighbours."""

import pytest

from .checks import check_fallback

pytestmark = pytest.mark.kernel


def test_fallback_and_neighbours(guest, figures):
    check_fallback(guest, figures)
