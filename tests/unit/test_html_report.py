"""report.html: drawn from a combined summary and the cells' direct-map snapshots, checked in
a real headless browser (Debian's chromium)."""

from __future__ import annotations

import json

from harness.nightly import report
from tests import browser

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


def test_report_renders_in_chromium_with_pictures_and_no_console_errors(tmp_path):
    page = report.write(tmp_path, combined(tmp_path))
    text = page.read_text()
    assert "patch 0001-&lt;x&gt;.patch does not apply" in text  # escaped
    assert "not finished (v6.1)" in text
    assert "4K: 12.0 MiB, 2M: 1012.0 MiB" in text
    loaded = browser.load(page)
    assert loaded.console == []
    assert loaded.attribute("data-pictures-drawn") == "2"


def test_moved_figures_are_listed(tmp_path):
    data = combined(tmp_path)
    data["compare"] = {"previous": "old/summary.json", "tolerance": 0.2, "moved": [
        {"cell": "v6.12", "test": "t.py::test_grouping", "figure": "splits", "before": 5,
         "after": 9, "change": "+80%"}]}
    page = report.render(data, {})
    assert "Figures moved since old/summary.json" in page
    assert "<td>splits</td><td>5</td><td>9</td><td>+80%</td>" in page
