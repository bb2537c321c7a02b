"""Test 8: page tables of ordinary processes come from the cache and go back to it."""

import pytest

from .checks import check_page_tables

pytestmark = pytest.mark.kernel


def test_page_tables_from_cache(guest, figures):
    check_page_tables(guest, figures)
