"""summary.json's formats are versioned and described by JSON schemas other tools can read
(harness/suite/summary.schema.json, harness/nightly/summary.schema.json): what the harness
writes validates against them, and the version constants match theirs."""

from __future__ import annotations

import json

from harness.nightly import runner
from harness.suite import summary as summary_module
from harness.suite.summary import Outcome, Summary
from tests import summaries


def test_versions_match_the_schema_files():
    for constant, path in ((summary_module.SCHEMA, summary_module.SCHEMA_FILE),
                           (runner.SCHEMA, runner.SCHEMA_FILE)):
        assert json.loads(path.read_text())["properties"]["schema"] == {"const": constant}


def test_run_summaries_validate(tmp_path):
    crash = summaries.run_summary({"t.py::test_a": {"outcome": "crashed", "excerpt": "BUG: x"},
                                   "t.py::test_b": {"outcome": "passed", "figures": {"n": 1},
                                                    "direct_maps": {"boot0 before": [[0, 4096, "pte"]]}}},
                                  results=tmp_path)
    broken = summaries.run_summary({"t.py::test_a": {"outcome": "error", "message": "patch"}},
                                   summaries.kernel(error=("patch", "0001-x.patch does not apply")))
    for number, summary in enumerate((crash, broken, Summary())):
        summary.write(tmp_path / f"{number}.json")
        data = summaries.check_schema(tmp_path / f"{number}.json", summary_module.SCHEMA_FILE)
        assert data["schema"] == summary_module.SCHEMA


def test_schema_2_is_still_read(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({
        "schema": 2, "kernel": {"tree": "debian:6.12", "series": "none", "version": "6.12.117",
                                "fragments": [], "build_key": "ab" * 32, "image": "/i",
                                "config": "/c"},
        "transport": "serial", "finished": True, "exit_status": 0,
        "tests": {"t.py::test_a": {"outcome": "crashed", "seconds": 1.0}}}))
    summary = Summary.read(tmp_path)
    assert summary is not None and summary.kernel_built
    assert list(summary.kernels) == ["ab" * 32] and summary.kernel is not None
    assert summary.kernel_of(summary.tests["t.py::test_a"]) == summary.kernels["ab" * 32]
    assert summary.tests["t.py::test_a"].outcome == Outcome.CRASHED
