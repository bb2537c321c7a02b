"""The cost figures of ``pte-harness bench``: the driver's bench line and the rows made of it."""

import pytest

from harness.bench import COST_RATIO_TARGET, CacheCost, cost_rows, parse_cost
from harness.errors import HarnessError


def test_parse_cost_reads_the_driver_line():
    cost = parse_cost("x\nbench cpus 2 pairs 100000 flagged_ns 300000000 plain_ns 200000000 "
                      "failed 0\n")
    assert cost == CacheCost(cpus=2, pairs=100000, flagged_ns=300000000, plain_ns=200000000,
                             failed=0)
    assert cost.ratio == pytest.approx(1.5)


@pytest.mark.parametrize("text, words", [
    ("sh: can't create /sys/kernel/debug/pte_mapped_test/bench: nonexistent", "no bench line"),
    ("bench cpus 0 pairs 10 flagged_ns 0 plain_ns 0 failed 0", "did not run"),
])
def test_parse_cost_errors_name_the_file(text, words):
    with pytest.raises(HarnessError, match=words) as error:
        parse_cost(text)
    assert "/sys/kernel/debug/pte_mapped_test/bench" in str(error.value)


def test_cost_rows_judge_the_ratio_and_the_scaling():
    one = CacheCost(1, 1000, flagged_ns=2_000_000, plain_ns=1_000_000, failed=0)
    # Two CPUs: plain pairs scale perfectly (same wall time for twice the pairs); flagged ones
    # are serialised (twice the wall time): throughput 1x one CPU's.
    two = CacheCost(2, 1000, flagged_ns=4_000_000, plain_ns=1_000_000, failed=3)
    rows = cost_rows(one, two)
    assert rows[0][1] == pytest.approx(0.002)
    assert f"2.00x plain, target <= {COST_RATIO_TARGET}x: MISSED" in rows[0][2]
    assert "throughput 1.00x one CPU's (plain 2.00x); 3 failed" in rows[1][2]
    fast = CacheCost(1, 1000, flagged_ns=1_200_000, plain_ns=1_000_000, failed=0)
    assert "met" in cost_rows(fast, two)[0][2]
