"""report.html: drawn from a combined summary and the cells' direct-map snapshots (loaded in a
real browser by tests/integration/test_report_browser.py)."""

from __future__ import annotations

import json

from harness.nightly import report

MIB = 1 << 20
BEFORE = [[0, 2 * MIB, "pte"], [2 * MIB, 1024 * MIB, "pmd"]]
AFTER = [[0, 12 * MIB, "pte"], [12 * MIB, 1024 * MIB, "pmd"]]


def combined(tmp_path):
    cell_dir = tmp_path / "cells" / "v6.12"
    cell_dir.mkdir(parents=True)
    (cell_dir / "summary.json").write_text(json.dumps({"tests": {
        "tests/kernel/test_splits.py::test_grouping": {
            "outcome": "passed", "direct_maps": {"boot0 before": BEFORE, "boot0 after": AFTER}}}}))
    return {"matrix": "m.yaml", "shard": "1/1", "started": "now", "finished": False,
            "cells": {
                "v6.12": {"status": "done", "verdict": "PASS", "results": str(cell_dir),
                          "spec": {"tree": "debian:6.12", "series": "auto"}, "counts": {"PASS": 1},
                          "seconds": 70, "tests": {"tests/kernel/test_splits.py::test_grouping": {
                              "result": "PASS", "seconds": 3.1, "figures": {"splits": 5}}}},
                "broken": {"status": "done", "verdict": "ERROR", "results": str(tmp_path / "x"),
                           "error": "patch 0001-<x>.patch does not apply", "tests": {}},
                "v6.1": {"status": "pending", "results": str(tmp_path / "y")}}}


def test_strip_geometry():
    svg = report.strip_svg([[0, 2 * MIB, "pte"], [2 * MIB, 4 * MIB, "pmd"]], 4 * MIB, "x")
    assert svg.count('class="run"') == 2
    assert 'x="480.00" y="0" width="480.00"' in svg and report.COLOURS["pmd"] in svg


def test_moved_figures_are_listed(tmp_path):
    data = combined(tmp_path)
    data["compare"] = {"previous": "old/summary.json", "tolerance": 0.2, "moved": [
        {"cell": "v6.12", "test": "t.py::test_grouping", "figure": "splits", "before": 5,
         "after": 9, "change": "+80%"}]}
    page = report.render(data, {})
    assert "Figures moved since old/summary.json" in page
    assert "<td>splits</td><td>5</td><td>9</td><td>+80%</td>" in page
