"""Negative checks: the same checks against a guest booted with pte_mapped_cache=off must fail.

They show the checks can fail: a check that passes here is not measuring the cache.
"""

import pytest

from .checks import (check_atomic_served, check_fallback, check_grouping, check_page_tables,
                     check_reserve, check_reuse, check_shrinker_count)

pytestmark = [pytest.mark.kernel, pytest.mark.negative]
OFF = "pte_mapped_cache=off"


@pytest.mark.parametrize("check", [check_grouping, check_reuse, check_shrinker_count,
                                   check_fallback, check_atomic_served, check_page_tables,
                                   check_reserve],
                         ids=["grouping", "reuse", "shrinker_count", "fallback", "atomic",
                              "page_tables", "reserve"])
def test_check_fails_without_cache(boot, figures, check):
    with pytest.raises(AssertionError) as info:
        check(boot(OFF), figures)
    figures["failed_as_expected"] = str(info.value).splitlines()[0]

