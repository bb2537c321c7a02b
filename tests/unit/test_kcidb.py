"""kcidb.json: a run's summary mapped to KCIDB (statuses, ids, files), every document checked
with kcidb-io's validator."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.suite import kcidb, run
from harness.suite.summary import Outcome, TestResult
from tests import summaries

CRASH = ("BUG: kernel NULL pointer dereference, address: 0000000000000008\n"
         "RIP: 0010:pte_mapped_refill+0x2a/0x1c0\nCall Trace:\n <TASK>\n")
BOOT = "BootError: guest went away while booting: QEMU exit status 1"
TIMEOUT = "GuestTimeout: command 'ptm grouping' did not finish in 600s"
TESTS = {
    "tests/kernel/test_splits.py::test_grouping": TestResult(
        Outcome.PASSED, 3.5, figures={"splits": 5, "bound": 5}),
    "tests/kernel/test_shrinker.py::test_shrinker_scan": TestResult(
        Outcome.FAILED, 2.0, "AssertionError: freed 12 of 16"),
    "tests/kernel/test_atomic.py::test_atomic_served_from_cache": TestResult(
        Outcome.CRASHED, 1.0, "KernelCrash: kernel crashed while running 'ptm': BUG", excerpt=CRASH),
    "tests/kernel/test_fallback.py::test_fallback_and_neighbours": TestResult(Outcome.ERROR, 0.5, BOOT),
    "tests/kernel/test_stress.py::test_cycles_of_10000_under_fault_injection": TestResult(
        Outcome.ERROR, 600.0, TIMEOUT),
    "tests/kernel/test_page_tables.py::test_failed_split[6.1]": TestResult(
        Outcome.SKIPPED, 0.0, "needs Linux 6.2"),
    "tests/kernel/test_integrity.py::test_zeroed_after_poisoned_frees": TestResult(
        Outcome.INTERRUPTED, 4.0, "the run was interrupted while this test ran"),
}


def by_nodeid(doc: dict) -> dict[str, dict]:
    return {test["misc"]["nodeid"]: test for test in doc["tests"]}


def test_each_outcome_maps_to_its_status(tmp_path):
    summary = summaries.run_summary(copy.deepcopy(TESTS), results=tmp_path)
    doc = kcidb.document(summary)
    kcidb.validate(doc)
    tests = by_nodeid(doc)
    assert {nodeid.split("::")[1]: test["status"] for nodeid, test in tests.items()} == {
        "test_grouping": "PASS", "test_shrinker_scan": "FAIL",
        "test_atomic_served_from_cache": "FAIL",  # a crash: the kernel is wrong
        "test_fallback_and_neighbours": "ERROR", "test_cycles_of_10000_under_fault_injection": "ERROR",
        "test_failed_split[6.1]": "SKIP", "test_zeroed_after_poisoned_frees": "MISS"}
    crash = tests["tests/kernel/test_atomic.py::test_atomic_served_from_cache"]
    assert crash["log_excerpt"] == CRASH and crash["misc"]["outcome"] == "crashed"
    assert tests["tests/kernel/test_fallback.py::test_fallback_and_neighbours"]["log_excerpt"] == BOOT
    passed = tests["tests/kernel/test_splits.py::test_grouping"]
    assert passed["misc"]["figures"] == {"splits": 5, "bound": 5} and "log_excerpt" not in passed
    assert passed["path"] == "pte_harness.test_splits.test_grouping" and passed["duration"] == 3.5
    assert passed["log_url"].startswith("file://") and passed["log_url"].endswith("/boot0/console.log")
    assert [f["name"] for f in passed["output_files"]] == ["boot0-control.log"]
    (build,) = doc["builds"]
    (checkout,) = doc["checkouts"]
    assert build["status"] == "PASS" and checkout["valid"] is True
    assert build["compiler"] == summaries.COMPILER and build["duration"] == 181.5
    assert build["log_url"].endswith("/build.log") and build["config_name"] == \
        "tinyconfig+base+pte-mapped+debug"
    assert {test["build_id"] for test in doc["tests"]} == {build["id"]}
    assert build["checkout_id"] == checkout["id"]
    assert checkout["patchset_hash"] == summaries.kernel()["patchset_hash"]
    assert [f["name"] for f in checkout["patchset_files"]] == summaries.kernel()["patches"]


@pytest.mark.parametrize("kind, build_status, checkout_valid", [
    ("patch", "FAIL", False),   # the series does not apply: the sources cannot be combined
    ("config", "FAIL", True),
    ("build", "FAIL", True),
    ("tree", "ERROR", False),   # the tree cannot be read: no identity either
])
def test_a_kernel_that_could_not_be_prepared_is_a_build_that_is_not_valid(kind, build_status,
                                                                          checkout_valid):
    message = {"patch": "patch patches/v6.12/0002-x.patch does not apply to debian:6.12\n"
                        "mm/page_alloc.c: Hunk #1 FAILED at 120.",
               "config": "CONFIG_PTE_MAPPED_CACHE is missing from .config",
               "build": "kernel build failed (make exit 2)\nmm/pte_mapped.c:12: error: boom",
               "tree": "kernel tree /nowhere does not exist"}[kind]
    record = summaries.kernel(error=(kind, message))
    if kind == "tree":  # nothing could be read: no key, no identity
        for key in ("tree_identity", "patchset_hash", "patches", "compiler", "build_log"):
            del record[key]
        record.update(id="unidentified-1234", build_key=None, series="auto")
    error = f"kernel could not be prepared ({kind} error, exit 242): {message}"
    summary = summaries.run_summary({"t.py::test_a": {"outcome": "error", "message": error},
                                     "t.py::test_b": {"outcome": "error", "message": error}}, record)
    doc = kcidb.document(summary)
    kcidb.validate(doc)
    (build,), (checkout,) = doc["builds"], doc["checkouts"]
    assert build["status"] == build_status and build["misc"]["error_kind"] == kind
    assert build["log_excerpt"] == message and build["comment"].startswith(f"{kind} error: ")
    assert checkout["valid"] is checkout_valid
    assert ("log_excerpt" in checkout) is not checkout_valid
    assert [test["status"] for test in doc["tests"]] == ["MISS", "MISS"]  # never ran
    assert all(test["build_id"] == build["id"] for test in doc["tests"])


def test_ids_are_stable_and_scoped(tmp_path):
    tests = {"t.py::test_a": {"outcome": "passed", "seconds": 1.0}}
    first = kcidb.document(summaries.run_summary(tests), cell="v6.12")
    assert kcidb.document(summaries.run_summary(tests), cell="v6.12") == first  # a rerun
    (test,) = first["tests"]
    key = summaries.kernel()["build_key"]
    assert test["id"] == f"pte_harness:{key[:24]}:v6.12:t.py::test_a"
    assert first["builds"][0]["id"] == f"pte_harness:{key}"
    other_cell = kcidb.document(summaries.run_summary(tests), cell="v6.12-kasan")
    assert other_cell["tests"][0]["id"] != test["id"]
    assert other_cell["builds"] == first["builds"]  # the same kernel is the same build
    other_tree = kcidb.document(summaries.run_summary(tests, summaries.kernel("debian:6.1")))
    assert other_tree["builds"][0]["id"] != first["builds"][0]["id"]
    assert other_tree["checkouts"][0]["id"] != first["checkouts"][0]["id"]
    mine = kcidb.document(summaries.run_summary(tests), origin="my_lab")
    assert {o["origin"] for kind in ("checkouts", "builds", "tests") for o in mine[kind]} == {"my_lab"}
    assert all(o["id"].startswith("my_lab:") for o in mine["tests"] + mine["builds"])
    with pytest.raises(UsageError, match="--kcidb-origin 'My-Lab'"):
        kcidb.check_origin("My-Lab")


def test_one_build_per_kernel_and_one_checkout_per_tree():
    default, kasan = summaries.kernel(), summaries.kernel(fragments=("base.config", "kasan.config"))
    summary = summaries.run_summary({"t.py::test_a": {"outcome": "passed"},
                                     "t.py::test_kasan": {"outcome": "failed", "kernel": kasan["id"],
                                                          "excerpt": "BUG: KASAN: use-after-free"}},
                                    default)
    summary.kernels[kasan["id"]] = kasan
    doc = kcidb.document(summary)
    kcidb.validate(doc)
    assert len(doc["checkouts"]) == 1 and len(doc["builds"]) == 2
    tests = by_nodeid(doc)
    assert tests["t.py::test_kasan"]["build_id"] == f"pte_harness:{kasan['id']}"
    assert tests["t.py::test_kasan"]["log_excerpt"] == "BUG: KASAN: use-after-free"
    assert tests["t.py::test_a"]["build_id"] == f"pte_harness:{default['id']}"
    assert kcidb.combine([doc, doc]) == doc


def test_test_paths():
    assert kcidb.test_path("tests/kernel/test_splits.py::test_grouping") == \
        "pte_harness.test_splits.test_grouping"
    assert kcidb.test_path("tests/kernel/test_negative.py::test_check_fails_without_cache[grouping]") \
        == "pte_harness.test_negative.test_check_fails_without_cache.grouping"
    assert kcidb.test_path("t.py::TestX::test_y[1.5-a b]") == "pte_harness.t.TestX.test_y.1_5-a_b"


def test_validation_names_the_place():
    doc = kcidb.document(summaries.run_summary({"t.py::test_a": {"outcome": "passed"}}))
    doc["tests"][0]["status"] = "GREEN"
    with pytest.raises(ValueError, match=r"^tests/0/status: 'GREEN' is not one of"):
        kcidb.validate(doc)
    with pytest.raises(ValueError, match="schema version"):
        kcidb.validate({"version": {"major": 99, "minor": 0}})


def test_relocated_paths():
    here = Path("/here/a")
    where = kcidb.relocated("/builds/ci/results/shard-1/cells/a", here)
    assert where("/builds/ci/results/shard-1/cells/a/t/boot0/console.log") == \
        here / "t/boot0/console.log"
    assert where("/builds/ci/results/shard-1/cells/ab/x") == \
        Path("/builds/ci/results/shard-1/cells/ab/x")  # another directory
    assert kcidb.relocated(None, here)("/x/y") == Path("/x/y")


def test_run_writes_a_valid_kcidb_json(tmp_path, monkeypatch):
    """`pte-harness run` writes kcidb.json beside summary.json, with its origin and cell."""
    from harness import options

    def fake_main(args, plugins=()):
        results = next(a.split("=", 1)[1] for a in args if a.startswith("--results="))
        summaries.run_summary(copy.deepcopy(TESTS), results=Path(results), status=1).write(
            Path(results) / "summary.json")
        return 1

    monkeypatch.setattr(run.pytest, "main", fake_main)
    assert run.main(options.Options(), tmp_path / "r", None, kcidb_origin="my_lab",
                    kcidb_cell="nightly-a") == 1
    doc = json.loads((tmp_path / "r" / "kcidb.json").read_text())
    kcidb.validate(doc)
    assert len(doc["tests"]) == len(TESTS)
    assert all(t["id"].startswith("my_lab:") and ":nightly-a:" in t["id"] for t in doc["tests"])
    with pytest.raises(UsageError, match="KCIDB origins"):
        run.main(options.Options(), tmp_path / "r2", None, kcidb_origin="x:y")
