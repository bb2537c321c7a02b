"""End to end: a nightly matrix over two trees (Debian's tarball and the same tree as a git
repository), Linux 6.1 with its own series, a cell whose series does not apply, and a cell
over ssh."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import browser

pytestmark = pytest.mark.kernel
SELECTION = "shrinker or grouping"  # tests with figures and with direct-map pictures


@pytest.fixture(scope="module")
def nightly_run(default_tree_repo, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("nightly")
    matrix = {
        "defaults": {"accel": "auto", "cell-timeout": 2400},
        "trees": {"default": "debian:6.12",
                  "git": f"git:{default_tree_repo['repo']}@{default_tree_repo['base']}"},
        "tests": {"selected": SELECTION},
        "cells": [
            {"name": "v6.1", "tree": "debian:6.1"},  # the whole suite, series patches/v6.1
            {"name": "wrong-series", "tree": "debian:6.12", "series": "v6.1", "tests": SELECTION},
            {"name": "ssh", "tree": "debian:6.12", "transport": "ssh", "tests": "test_direct_map_accounting"},
        ],
    }
    path = root / "matrix.yaml"
    path.write_text(yaml.safe_dump(matrix, sort_keys=False))
    results = root / "results"
    result = subprocess.run([sys.executable, "-m", "harness.cli", "nightly", str(path),
                             "--results", str(results)],
                            capture_output=True, text=True, timeout=7200)
    print(result.stdout[-8000:], result.stderr[-3000:])
    summary = json.loads((results / "summary.json").read_text())
    return {"status": result.returncode, "stdout": result.stdout, "results": results,
            "summary": summary}


def test_cells_pass_on_both_trees_and_on_6_1(nightly_run):
    cells = nightly_run["summary"]["cells"]
    assert set(cells) == {"default", "git", "v6.1", "wrong-series", "ssh"}
    for name in ("default", "git", "v6.1", "ssh"):
        assert cells[name]["verdict"] == "PASS", (name, cells[name].get("error"), {
            t: e for t, e in cells[name]["tests"].items() if e["result"] != "PASS"})
    assert cells["v6.1"]["kernel"]["version"].startswith("6.1.")
    assert cells["v6.1"]["kernel"]["series"].endswith("patches/v6.1")
    assert cells["git"]["kernel"]["tree"].startswith("git:")
    assert cells["git"]["kernel"]["build_key"] != cells["default"]["kernel"]["build_key"]
    assert len(cells["v6.1"]["tests"]) > len(cells["default"]["tests"])  # the whole suite
    assert cells["ssh"]["transport"] == "ssh" and cells["default"]["transport"] == "serial"


def test_series_that_does_not_apply_is_an_error_naming_the_patch(nightly_run):
    cell = nightly_run["summary"]["cells"]["wrong-series"]
    assert cell["verdict"] == "ERROR"
    assert "patch error" in cell["error"] and ".patch" in cell["error"], cell["error"]
    assert all(test["result"] == "ERROR" for test in cell["tests"].values())
    # ERROR (could not tell) but no FAIL: exit 2; the cells after it still ran
    assert nightly_run["status"] == 2
    assert nightly_run["summary"]["finished"]


def test_figures_recorded_and_compared(nightly_run, tmp_path):
    summary = nightly_run["summary"]
    grouping = next(entry for nodeid, entry in summary["cells"]["git"]["tests"].items()
                    if nodeid.endswith("::test_grouping"))
    assert grouping["figures"]["splits"] <= grouping["figures"]["bound"]
    current = nightly_run["results"] / "summary.json"
    same = subprocess.run([sys.executable, "-m", "harness.cli", "compare", str(current), str(current)],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stdout
    worse = json.loads(current.read_text())
    for entry in worse["cells"]["git"]["tests"].values():
        if "splits" in entry.get("figures", {}):
            entry["figures"]["splits"] = entry["figures"]["splits"] * 2 + 2
    previous = tmp_path / "previous.json"
    previous.write_text(json.dumps(worse))
    moved = subprocess.run([sys.executable, "-m", "harness.cli", "compare", str(previous), str(current)],
                           capture_output=True, text=True)
    assert moved.returncode == 3 and "git: test_grouping: splits" in moved.stdout, moved.stdout


def test_report_shows_direct_maps_in_a_browser(nightly_run):
    page = nightly_run["results"] / "report.html"
    loaded = browser.load(page)
    assert loaded.console == []
    drawn = int(loaded.attribute("data-pictures-drawn") or 0)
    assert drawn >= 6, f"{drawn} direct-map pictures drawn"  # before/after, three cells
    assert "wrong-series" in loaded.dom and "patch error" in loaded.dom
