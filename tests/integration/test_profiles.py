"""Kernel profiles a test asks for with @pytest.mark.guest(kconfig=...): the KASAN profile
boots, and a KASAN report in a guest's log fails the test whose guest printed it (and only
that test)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.kernel

INNER = """
import pytest

@pytest.mark.guest(kconfig="kasan")
def test_use_after_free(guest):
    # LKDTM frees a kmalloc object and reads it back: generic KASAN reports it.
    guest.run("echo READ_AFTER_FREE > /sys/kernel/debug/provoke-crash/DIRECT")

@pytest.mark.guest(kconfig="kasan")
def test_clean(guest):
    assert "kasan" in guest.run("cat /proc/cmdline; dmesg | grep -i -m1 kasan").output.lower()
"""


def test_kasan_report_fails_the_test_that_caused_it(pytester, tmp_path):
    pytester.makepyfile(test_inner=INNER)
    results = tmp_path / "results"
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--results={results}",
                                            timeout=1800)
    outcome.assert_outcomes(passed=1, failed=1)
    summary = json.loads((results / "summary.json").read_text())["tests"]
    failed = summary["test_inner.py::test_use_after_free"]
    assert failed["outcome"] == "failed"
    assert "BUG: KASAN: slab-use-after-free" in failed["message"], failed["message"]
    assert summary["test_inner.py::test_clean"]["outcome"] == "passed"
