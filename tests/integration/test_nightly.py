"""End to end: a nightly matrix over two trees (Debian's tarball and the same tree as a git
repository), Linux 6.1 with its own series, a cell whose series does not apply, and a cell
over ssh, run as 3 shards (as 3 CI jobs would) and merged; every kcidb.json it writes is
validated with kcidb-io."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.nightly import runner
from harness.suite import kcidb
from harness.suite import summary as summary_module
from tests import browser, summaries

pytestmark = pytest.mark.kernel
SELECTION = "shrinker or grouping"  # tests with figures and with direct-map pictures


def write_matrix(root: Path, git_tree: str) -> Path:
    """The matrix (also run by tests/unit/test_nightly.py with a fake `pte-harness run`,
    to check the checks below)."""
    matrix = {
        "defaults": {"accel": "auto", "cell-timeout": 2400},
        "trees": {"default": "debian:6.12", "git": git_tree},
        "tests": {"selected": SELECTION},
        "cells": [
            {"name": "v6.1", "tree": "debian:6.1"},  # the whole suite, series patches/v6.1
            {"name": "wrong-series", "tree": "debian:6.12", "series": "v6.1", "tests": SELECTION},
            {"name": "ssh", "tree": "debian:6.12", "transport": "ssh", "tests": "test_direct_map_accounting"},
        ],
    }
    path = root / "matrix.yaml"
    path.write_text(yaml.safe_dump(matrix, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def nightly_run(default_tree_repo, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("nightly")
    path = write_matrix(root, f"git:{default_tree_repo['repo']}@{default_tree_repo['base']}")
    shards = [root / f"shard-{index}" for index in (1, 2, 3)]
    statuses = []
    for index, shard in enumerate(shards, 1):
        ran = subprocess.run([sys.executable, "-m", "harness.cli", "nightly", str(path),
                              "--shard", f"{index}/3", "--results", str(shard)],
                             capture_output=True, text=True, timeout=7200)
        print(ran.stdout[-4000:], ran.stderr[-2000:])
        statuses.append(ran.returncode)
    results = root / "results"
    result = subprocess.run([sys.executable, "-m", "harness.cli", "nightly", str(path), "--merge",
                             *map(str, shards), "--results", str(results)],
                            capture_output=True, text=True, timeout=600)
    print(result.stdout[-8000:], result.stderr[-3000:])
    summary = json.loads((results / "summary.json").read_text())
    return {"status": result.returncode, "stdout": result.stdout, "results": results,
            "summary": summary, "shards": shards, "shard_statuses": statuses}


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
    # shard 1/3 holds default and wrong-series, 2/3 git and ssh, 3/3 v6.1
    assert nightly_run["shard_statuses"] == [2, 0, 0]
    assert cell["kernel"]["error"]["kind"] == "patch" and cell["kernel"]["build_key"]


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


def test_merged_shards_have_every_cell_once(nightly_run):
    summary = nightly_run["summary"]
    assert summary["shard"] == "1/3 + 2/3 + 3/3"
    assert summary["merged"] == [str(shard.resolve()) for shard in nightly_run["shards"]]
    for name, cell in summary["cells"].items():
        assert Path(cell["results"]).parent.parent in [s.resolve() for s in nightly_run["shards"]]
        assert (Path(cell["results"]) / "summary.json").is_file()
    summaries.check_schema(nightly_run["results"] / "summary.json", runner.SCHEMA_FILE)
    for shard in nightly_run["shards"]:
        summaries.check_schema(shard / "summary.json", runner.SCHEMA_FILE)
        for cell_summary in shard.glob("cells/*/summary.json"):
            summaries.check_schema(cell_summary, summary_module.SCHEMA_FILE)


def test_every_kcidb_json_validates_and_says_what_happened(nightly_run):
    """Every kcidb.json the run wrote (each cell's run, each shard, the merge) is valid
    KCIDB for kcidb-io; the merge's holds each cell's tests under the same ids."""
    root = nightly_run["results"].parent
    documents = {path: json.loads(path.read_text()) for path in sorted(root.rglob("kcidb.json"))}
    assert len(documents) == 1 + 3 + 5, sorted(documents)  # the merge, 3 shards, 5 cells
    for path, doc in documents.items():
        kcidb.validate(doc)
    merged = documents[nightly_run["results"] / "kcidb.json"]
    ids = {kind: {obj["id"] for obj in merged[kind]} for kind in ("checkouts", "builds", "tests")}
    for path, doc in documents.items():
        for kind in ("checkouts", "builds", "tests"):
            assert {obj["id"] for obj in doc[kind]} <= ids[kind], (path, kind)
    tests = {(t["misc"]["cell"], t["misc"]["nodeid"]): t for t in merged["tests"]}
    cells = nightly_run["summary"]["cells"]
    assert set(tests) == {(name, nodeid) for name, cell in cells.items() for nodeid in cell["tests"]}
    builds = {b["id"]: b for b in merged["builds"]}
    checkouts = {c["id"]: c for c in merged["checkouts"]}
    for (name, nodeid), test in tests.items():
        build = builds[test["build_id"]]
        checkout = checkouts[build["checkout_id"]]
        if name == "wrong-series":  # the series does not apply: not valid, tests not run
            assert (test["status"], build["status"], checkout["valid"]) == ("MISS", "FAIL", False)
            assert ".patch" in build["log_excerpt"] and build["misc"]["error_kind"] == "patch"
            continue
        expected = cells[name]["tests"][nodeid]
        assert test["status"] == expected["result"]  # PASS or SKIP, as the summary says
        assert (build["status"], checkout["valid"]) == ("PASS", True)
        assert test["misc"].get("figures", {}) == expected.get("figures", {})
        if "log_url" in test:  # the first boot's console
            assert summaries.local_path(test["log_url"]).is_file()
        assert build["compiler"].startswith("gcc") and build["duration"] > 0
        assert summaries.local_path(build["log_url"]).is_file()
    assert sum(t["status"] == "PASS" and "log_url" in t for t in tests.values()) >= 5
    git_build = builds[next(test["build_id"] for (cell, _), test in tests.items() if cell == "git")]
    assert len(checkouts[git_build["checkout_id"]]["git_commit_hash"]) == 40
    # the 6.12 tarball with v6.12 (default, ssh), git, the 6.1 tarball, 6.12 with v6.1
    assert len(checkouts) == 4
