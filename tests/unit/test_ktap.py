"""KTAP as KUnit prints it (harness/guest/ktap.py), and how tests/kernel/test_kunit.py finds
the suite's cases in a series: no kernel, no guest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.guest import ktap
from harness.options import FEATURE_MARKER, PROJECT_ROOT, Options
from tests.conftest import DATA
from tests.kernel.test_kunit import (NO_CASES, RESULTS, KunitRun, declared_cases, patch_cases,
                                     series_cases, source_cases)

# /sys/kernel/debug/kunit/pte_mapped/results on 6.12 (lib/kunit/debugfs.c: the KTAP header
# and the suite's, each case's log, the suite's log, the suite's result).
RESULTS_612 = """\
KTAP version 1
1..1
    KTAP version 1
    # Subtest: pte_mapped
    1..5
    ok 1 pte_mapped_test_pte_level
    # pte_mapped_test_refill_splits_once: EXPECTATION FAILED at mm/pte_mapped_kunit.c:123
    Expected splits == 1, but
        splits == 2 (0x2)
    not ok 2 pte_mapped_test_refill_splits_once
    ok 3 pte_mapped_test_offline # SKIP needs memory hotplug
        KTAP version 1
        # Subtest: pte_mapped_test_orders
        ok 1 order-0
    # pte_mapped_test_orders: ASSERTION FAILED at mm/pte_mapped_kunit.c:171
    Expected page is not null, but is
        not ok 2 order-9
        ok 3 order-10 # SKIP above MAX_PAGE_ORDER
    # pte_mapped_test_orders: pass:1 fail:1 skip:1 total:3
    not ok 4 pte_mapped_test_orders
    ok 5 pte_mapped_test_zeroed
# pte_mapped: pass:2 fail:2 skip:1 total:5
# Totals: pass:3 fail:2 skip:2 total:7
not ok 1 pte_mapped
"""

# Debian's 6.1: KTAP too, but a blank line after a param subtest's version (kunit_log adds
# "\n" to a format that has one), no hex values, and 512 bytes of log per case.
RESULTS_61 = """\
KTAP version 1
1..1
    KTAP version 1
    # Subtest: pte_mapped
    1..4
    ok 1 pte_mapped_test_pte_level
    # pte_mapped_test_refill_splits_once: EXPECTATION FAILED at mm/pte_mapped_kunit.c:123
    Expected splits == 1, but
        splits == 2
    not ok 2 pte_mapped_test_refill_splits_once
    ok 3 pte_mapped_test_offline # SKIP needs memory hotplug
        KTAP version 1

        # Subtest: pte_mapped_test_orders
        ok 1 order-0
        ok 2 order-9
    # pte_mapped_test_orders: pass:2 fail:0 skip:0 total:2
    ok 4 pte_mapped_test_orders
# pte_mapped: pass:2 fail:1 skip:1 total:4
# Totals: pass:3 fail:1 skip:1 total:5
not ok 1 pte_mapped
"""

# Older kernels (5.x): "TAP version 14", "ok N - name", params as diagnostic lines.
TAP14 = """\
TAP version 14
1..1
    # Subtest: pte_mapped
    1..3
    ok 1 - pte_mapped_test_pte_level
    # pte_mapped_test_refill_splits_once: EXPECTATION FAILED at mm/pte_mapped_kunit.c:123
    Expected splits == 1, but
        splits == 2
    not ok 2 - pte_mapped_test_refill_splits_once
    # pte_mapped_test_orders: ok 1 - order-0
    # pte_mapped_test_orders: ok 2 - order-9
    ok 3 - pte_mapped_test_orders # SKIP no NUMA
not ok 1 - pte_mapped
"""

FAILED_AT = ("# pte_mapped_test_refill_splits_once: EXPECTATION FAILED at "
             "mm/pte_mapped_kunit.c:123\nExpected splits == 1, but\n    splits == 2")


def only(text: str) -> ktap.KtapSuite:
    suites = ktap.parse(text)
    assert [s.name for s in suites] == ["pte_mapped"]
    return suites[0]


def verdicts(suite: ktap.KtapSuite) -> list[tuple[int, str, str]]:
    return [(c.number, c.name, c.status) for c in suite.cases]


def test_612_results_file():
    suite = only(RESULTS_612)
    assert (suite.status, suite.plan) == ("not ok", 5)
    assert verdicts(suite) == [(1, "pte_mapped_test_pte_level", "ok"),
                               (2, "pte_mapped_test_refill_splits_once", "not ok"),
                               (3, "pte_mapped_test_offline", "skip"),
                               (4, "pte_mapped_test_orders", "not ok"),
                               (5, "pte_mapped_test_zeroed", "ok")]
    passed, failed, skipped, orders, _ = suite.cases
    assert passed.diagnostic == "" and skipped.diagnostic == ""
    assert failed.diagnostic == FAILED_AT + " (0x2)"
    assert skipped.reason == "needs memory hotplug"
    assert [(p.name, p.status, p.reason) for p in orders.subtests] == [
        ("order-0", "ok", ""), ("order-9", "not ok", ""),
        ("order-10", "skip", "above MAX_PAGE_ORDER")]
    assert orders.subtests[1].diagnostic == (
        "# pte_mapped_test_orders: ASSERTION FAILED at mm/pte_mapped_kunit.c:171\n"
        "Expected page is not null, but is")
    # the case's own diagnostic: everything since case 3, its params' lines too
    assert orders.diagnostic.splitlines()[1:3] == [
        "# pte_mapped_test_orders: ASSERTION FAILED at mm/pte_mapped_kunit.c:171",
        "Expected page is not null, but is"]
    assert "    not ok 2 order-9" in orders.diagnostic.splitlines()
    assert suite.diagnostic.splitlines()[0] == "# pte_mapped: pass:2 fail:2 skip:1 total:5"
    assert suite.case("pte_mapped_test_zeroed") is suite.cases[4]
    assert suite.case("nonexistent") is None


def test_unindented_results_file_reads_the_same():
    flat = only("\n".join(line.strip() for line in RESULTS_612.splitlines()))
    suite = only(RESULTS_612)
    assert verdicts(flat) == verdicts(suite) and (flat.status, flat.plan) == ("not ok", 5)
    assert [[(p.name, p.status) for p in c.subtests] for c in flat.cases] == \
        [[(p.name, p.status) for p in c.subtests] for c in suite.cases]
    assert flat.cases[1].diagnostic == FAILED_AT.replace("\n    ", "\n") + " (0x2)"
    assert flat.cases[2].reason == "needs memory hotplug"


def test_61_results_file():
    suite = only(RESULTS_61)
    assert verdicts(suite) == [(1, "pte_mapped_test_pte_level", "ok"),
                               (2, "pte_mapped_test_refill_splits_once", "not ok"),
                               (3, "pte_mapped_test_offline", "skip"),
                               (4, "pte_mapped_test_orders", "ok")]
    assert suite.cases[1].diagnostic == FAILED_AT
    assert [(p.name, p.status) for p in suite.cases[3].subtests] == [
        ("order-0", "ok"), ("order-9", "ok")]
    assert suite.status == "not ok"


def log_61(*lines: str) -> str:
    """A case's log as 6.1 keeps it: KUNIT_LOG_SIZE (512) bytes, the rest dropped."""
    return "".join(f"{line}\n" for line in lines)[:511]


def test_61_log_limit_loses_result_lines_the_console_keeps():
    params = [f"        ok {i + 1} order-{i}" for i in range(24)]
    long_case = ["        KTAP version 1", "", "        # Subtest: pte_mapped_test_orders",
                 *params, "    # pte_mapped_test_orders: pass:24 fail:0 skip:0 total:24",
                 "    ok 2 pte_mapped_test_orders"]
    text = ("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: pte_mapped\n    1..3\n"
            + log_61("    ok 1 pte_mapped_test_pte_level") + log_61(*long_case)
            + log_61("    ok 3 pte_mapped_test_zeroed")
            + "# pte_mapped: pass:3 fail:0 skip:0 total:3\nok 1 pte_mapped\n")
    # the cut falls in the next line's indentation: case 3's line is merged into the params
    assert "\n        ok 3 pte_mapped_test_zeroed\n" in text
    truncated = only(text)
    assert verdicts(truncated) == [(1, "pte_mapped_test_pte_level", "ok")]
    assert truncated.status == "ok"
    # the kernel log has every line: the test looks there for what the file lost
    console = "\n".join(["KTAP version 1", "1..1", "    KTAP version 1",
                         "    # Subtest: pte_mapped", "    1..3",
                         "    ok 1 pte_mapped_test_pte_level", *long_case,
                         "    ok 3 pte_mapped_test_zeroed", "ok 1 pte_mapped"])
    run = KunitRun(None, truncated, only(console))  # type: ignore[arg-type]
    assert run.find("pte_mapped_test_pte_level")[1] == RESULTS
    case, where = run.find("pte_mapped_test_orders")
    assert where == "the kernel log" and case is not None and len(case.subtests) == 24
    assert run.find("pte_mapped_test_zeroed")[0] is not None
    assert run.find("pte_mapped_test_gone") == (None, "")
    message = run.missing("pte_mapped_test_gone")
    assert message.splitlines()[0] == (f"KUnit case pte_mapped.pte_mapped_test_gone is in "
                                       f"neither {RESULTS} nor the kernel log")
    assert "cases reported: pte_mapped_test_pte_level" in message


def test_tap14_older_kernels():
    suite = only(TAP14)
    assert verdicts(suite) == [(1, "pte_mapped_test_pte_level", "ok"),
                               (2, "pte_mapped_test_refill_splits_once", "not ok"),
                               (3, "pte_mapped_test_orders", "skip")]
    assert suite.cases[1].diagnostic == FAILED_AT
    assert suite.cases[2].reason == "no NUMA"
    assert "# pte_mapped_test_orders: ok 2 - order-9" in suite.cases[2].diagnostic
    assert suite.status == "not ok"


CONSOLE_KUNIT = """\
[    1.100000] KTAP version 1\r
[    1.100001] 1..2\r
[    1.100010]     KTAP version 1\r
[    1.100011]     # Subtest: list-kernel-test\r
[    1.100012]     1..1\r
[    1.100013]     ok 1 list_test_list_init\r
[    1.100014] ok 1 list-kernel-test\r
[    1.200010]     KTAP version 1\r
[    1.200011]     # Subtest: pte_mapped\r
[    1.200012]     1..2\r
[    1.250000] random: crng init done\r
[    1.300001]     # pte_mapped_test_refill_splits_once: EXPECTATION FAILED at mm/pte_mapped_kunit.c:123\r
[    1.300002]     Expected splits == 1, but\r
[    1.300003]         splits == 2 (0x2)\r
[    1.300004]     not ok 1 pte_mapped_test_refill_splits_once\r
[    1.300005]     ok 2 pte_mapped_test_zeroed\r
[    1.300006] # pte_mapped: pass:1 fail:1 skip:0 total:2\r
[    1.300008] not ok 2 pte_mapped\r
"""


def test_console_log_with_timestamps_and_other_messages():
    boot = (DATA / "console-clean-boot.log").read_text()
    assert ktap.from_console(boot) == []  # a boot without KUnit
    lines = boot.splitlines(keepends=True)
    suites = ktap.from_console("".join(lines[:200]) + CONSOLE_KUNIT + "".join(lines[200:]))
    assert [(s.name, s.status) for s in suites] == [("list-kernel-test", "ok"),
                                                    ("pte_mapped", "not ok")]
    failed = suites[1].cases[0]
    assert failed.diagnostic == FAILED_AT + " (0x2)"  # not the crng line
    assert verdicts(suites[1])[1] == (2, "pte_mapped_test_zeroed", "ok")


def test_suite_that_failed_to_initialize():
    suite = only("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: pte_mapped\n"
                 "    1..3\n    # failed to initialize (-12)\nnot ok 1 pte_mapped\n")
    assert (suite.cases, suite.status, suite.plan) == ((), "not ok", 3)
    assert suite.diagnostic == "# failed to initialize (-12)"


def test_unfinished_run():
    """The kernel stopped in case 2: the suite has no result line of its own."""
    suite = only("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: pte_mapped\n"
                 "    1..3\n    ok 1 pte_mapped_test_pte_level\n    # pte_mapped_test_refill")
    assert verdicts(suite) == [(1, "pte_mapped_test_pte_level", "ok")]
    assert suite.status is None and suite.diagnostic == "# pte_mapped_test_refill"


@pytest.mark.parametrize("text", ["", "\n\n", "cat: can't open '/sys/kernel/debug/kunit/"
                                  "pte_mapped/results': No such file or directory\n",
                                  "KTAP version 1\n    # Subtest: pte_mapped\n"])
def test_no_plan_and_no_result_is_an_error(text):
    with pytest.raises(ktap.KtapError, match="no KTAP test plan or result") as info:
        ktap.parse(text)
    assert info.value.kind == "ktap" and info.value.status == 1
    assert (text.strip().splitlines() or ["(empty)"])[0] in str(info.value)
    assert ktap.from_console(text) == []


# A patch of the series as git format-patch writes it: the KUnit file, its Kconfig and
# Makefile lines; the commit message and another file name cases that are not the suite's.
KUNIT_PATCH = """\
From 1234 Mon Sep 17 00:00:00 2001
From: A Developer <dev@example.org>
Subject: [PATCH v2 13/13] mm: pte_mapped: add a KUnit suite

Cases such as KUNIT_CASE(not_a_case) are named here only.
---
 mm/Kconfig            |  8 ++++++
 mm/Makefile           |  1 +
 mm/pte_mapped_kunit.c | 20 ++++++++++++++
 3 files changed, 29 insertions(+)
 create mode 100644 mm/pte_mapped_kunit.c

diff --git a/lib/other_kunit.c b/lib/other_kunit.c
index 1111111..2222222 100644
--- a/lib/other_kunit.c
+++ b/lib/other_kunit.c
@@ -10,2 +10,3 @@ static struct kunit_case other_cases[] = {
 \tKUNIT_CASE(other_test_a),
+\tKUNIT_CASE(other_test_b),
 \t{}
diff --git a/mm/pte_mapped_kunit.c b/mm/pte_mapped_kunit.c
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/mm/pte_mapped_kunit.c
@@ -0,0 +1,20 @@
+// SPDX-License-Identifier: GPL-2.0
+#include <kunit/test.h>
+
+/* KUNIT_CASE(commented_out) is not a case */
+static void pte_mapped_test_pte_level(struct kunit *test) {}
+static void pte_mapped_test_refill_splits_once(struct kunit *test) {}
+static void pte_mapped_test_orders(struct kunit *test) {}
+KUNIT_ARRAY_PARAM(orders, pte_mapped_orders, NULL);
+
+static struct kunit_case pte_mapped_test_cases[] = {
+\tKUNIT_CASE(pte_mapped_test_pte_level),
+\tKUNIT_CASE_SLOW(pte_mapped_test_refill_splits_once),
+\tKUNIT_CASE_PARAM(pte_mapped_test_orders, orders_gen_params),
+\t{}
+};
+static struct kunit_suite pte_mapped_test_suite = {
+\t.name = "pte_mapped",
+\t.test_cases = pte_mapped_test_cases,
+};
+kunit_test_suite(pte_mapped_test_suite);
--
2.39.5
"""

# A later patch: one case renamed (removed and added), one added; a blank context line.
FOLLOW_UP = """\
Subject: [PATCH] mm: pte_mapped: KUnit: test the zeroing
---
diff --git a/mm/pte_mapped_kunit.c b/mm/pte_mapped_kunit.c
--- a/mm/pte_mapped_kunit.c
+++ b/mm/pte_mapped_kunit.c
@@ -10,6 +10,7 @@ static struct kunit_case pte_mapped_test_cases[] = {
 static struct kunit_case pte_mapped_test_cases[] = {
 \tKUNIT_CASE(pte_mapped_test_pte_level),
-\tKUNIT_CASE_SLOW(pte_mapped_test_refill_splits_once),
+\tKUNIT_CASE_SLOW(pte_mapped_test_refill_once),
 \tKUNIT_CASE_PARAM(pte_mapped_test_orders, orders_gen_params),
+\tKUNIT_CASE(pte_mapped_test_zeroed),

 \t{}
--
2.39.5
"""

CASES = ["pte_mapped_test_pte_level", "pte_mapped_test_refill_splits_once",
         "pte_mapped_test_orders"]
AFTER_FOLLOW_UP = ["pte_mapped_test_pte_level", "pte_mapped_test_orders",
                   "pte_mapped_test_refill_once", "pte_mapped_test_zeroed"]


def test_cases_from_patch_text():
    assert patch_cases([], KUNIT_PATCH) == CASES
    assert patch_cases(CASES, FOLLOW_UP) == AFTER_FOLLOW_UP
    assert patch_cases([], FOLLOW_UP) == ["pte_mapped_test_refill_once", "pte_mapped_test_zeroed"]
    assert patch_cases([], KUNIT_PATCH.replace("b/mm/", "x/y/mm/"), strip=2) == CASES
    real = (PROJECT_ROOT / "patches/v6.12/0001-mm-introduce-__GFP_PTE_MAPPED-and-a-cache-of-pte-map"
            ".patch")
    assert patch_cases(["kept"], real.read_text()) == ["kept"]


def test_cases_from_the_tree_s_own_file():
    added = [line[1:] for line in KUNIT_PATCH.split("+++ b/mm/pte_mapped_kunit.c\n")[1]
             .splitlines() if line.startswith("+")]
    assert source_cases("\n".join(added)) == CASES


def write_series(directory: Path, *patches: tuple[str, str], listed: int | None = None) -> Path:
    directory.mkdir()
    for name, text in patches:
        (directory / name).write_text(text)
    names = [name for name, _ in patches][:listed]
    (directory / "series").write_text("# the series\n" + "".join(f"{n}\n" for n in names))
    return directory


def test_series_cases_in_a_fake_series_dir(tmp_path):
    plain = "diff --git a/mm/a.c b/mm/a.c\n--- a/mm/a.c\n+++ b/mm/a.c\n@@ -1 +1 @@\n-a\n+b\n"
    series = write_series(tmp_path / "v6.12", ("0001-a.patch", plain),
                          ("0002-kunit.patch", KUNIT_PATCH), ("0003-more.patch", FOLLOW_UP),
                          ("0000-cover-letter.patch", FOLLOW_UP.replace("zeroed", "cover")),
                          listed=3)
    assert series_cases(series) == AFTER_FOLLOW_UP
    assert declared_cases(Options(series=str(series))) == AFTER_FOLLOW_UP
    without = write_series(tmp_path / "v6.1", ("0001-a.patch", plain))
    assert series_cases(without) == [] and declared_cases(Options(series=str(without))) == []
    assert declared_cases(Options(series="v6.12")) == series_cases(PROJECT_ROOT / "patches/v6.12")


def test_declared_cases_of_a_tree_that_carries_the_series(fake_tree):
    (fake_tree / "mm" / "Kconfig").write_text(f"{FEATURE_MARKER}\n\tbool\n")
    assert declared_cases(Options(tree=str(fake_tree), series="none")) == []
    (fake_tree / "mm" / "pte_mapped_kunit.c").write_text(
        "static struct kunit_case c[] = {\n\tKUNIT_CASE(pte_mapped_test_pte_level),\n\t{}\n};\n")
    assert declared_cases(Options(tree=str(fake_tree))) == ["pte_mapped_test_pte_level"]


KUNIT_MODULE = PROJECT_ROOT / "tests" / "kernel" / "test_kunit.py"


def collect(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str
            ) -> tuple[list[str], int]:
    """Collect tests/kernel/test_kunit.py only (nothing is built or booted): the test ids
    and how many were deselected."""
    for name in [n for n in os.environ if n.startswith("PTE_HARNESS_")]:
        monkeypatch.delenv(name)
    recorder = pytester.inline_run(str(KUNIT_MODULE), "--collect-only", "-p", "no:cacheprovider",
                                   *args)
    items = recorder.getcalls("pytest_collection_finish")[0].session.items
    deselected = sum(len(call.items) for call in recorder.getcalls("pytest_deselected"))
    return [item.name for item in items], deselected


def test_one_test_per_case_of_the_series(pytester, monkeypatch, tmp_path):
    series = write_series(tmp_path / "s", ("0001-kunit.patch", KUNIT_PATCH),
                          ("0002-more.patch", FOLLOW_UP))
    names, deselected = collect(pytester, monkeypatch, f"--series={series}")
    assert names == [f"test_kunit[{case}]" for case in AFTER_FOLLOW_UP] and deselected == 0
    names, _ = collect(pytester, monkeypatch, f"--series={series}", "-k", "zeroed")
    assert names == ["test_kunit[pte_mapped_test_zeroed]"]


def test_series_without_the_suite_has_no_test_not_a_skipped_one(pytester, monkeypatch, tmp_path):
    series = write_series(tmp_path / "s", ("0001-a.patch", "--- a/x\n+++ b/x\n"))
    names, deselected = collect(pytester, monkeypatch, f"--series={series}")
    assert names == [] and deselected == 1
    assert NO_CASES not in " ".join(names)


def test_series_that_cannot_be_read_gives_one_failing_test(pytester, monkeypatch, tmp_path):
    names, _ = collect(pytester, monkeypatch, f"--series={tmp_path / 'missing'}")
    assert names == ["test_kunit[cases-unknown]"]
