"""Nightly matrices, the combined summary, --compare and the cell runner, without kernels."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.nightly import compare, matrix, runner
from harness import options
from harness.errors import UsageError
from harness.options import PROJECT_ROOT
from harness.suite.summary import TestResult
from tests import summaries
from tests.processes import gone


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_product_names_and_explicit_cells(tmp_path):
    loaded = matrix.load(write(tmp_path, """
defaults: {memory: 2G, cell-timeout: 100, timeout: 30}
trees: {v6.12: "debian:6.12", git: "git:/src/linux@v6.12"}
tests: {all: "", shrinker: shrinker}
cells:
  - {name: broken, tree: v6.12, series: v6.1, kconfig: [kasan.config], transport: ssh}
"""))
    names = [cell.name for cell in loaded.cells]
    assert names == ["v6.12-all", "v6.12-shrinker", "git-all", "git-shrinker", "broken"]
    git_shrinker = loaded.cells[3]
    assert git_shrinker.tree == "git:/src/linux@v6.12" and git_shrinker.tests == "shrinker"
    assert git_shrinker.options.memory == "2G" and git_shrinker.timeout == 100
    assert git_shrinker.options.timeout == 30  # the guest command's, not the cell's
    assert git_shrinker.options.kconfig == () and git_shrinker.series == "auto"
    broken = loaded.cells[4]
    assert broken.tree == "debian:6.12" and broken.options.kconfig == ("kasan.config",)
    cell_dir = tmp_path / "broken"
    cell_dir.mkdir()
    assert broken.run_args(cell_dir) == ["--config", str(cell_dir / "options.yaml")]
    saved = options.load_yaml(cell_dir / "options.yaml")
    assert saved["series"] == "v6.1" and saved["transport"] == "ssh"
    assert options.replace(options.Options(), **saved) == broken.options
    assert git_shrinker.run_args(cell_dir)[-2:] == ["-k", "shrinker"]


def test_shards_split_the_cells(tmp_path):
    loaded = matrix.load(write(tmp_path, "trees: {a: x, b: y, c: z, d: w, e: v}\n"))
    shards = [[c.name for c in loaded.shard(i, 2)] for i in (1, 2)]
    assert shards == [["a", "c", "e"], ["b", "d"]]
    assert matrix.parse_shard("2/3") == (2, 3)
    for bad in ("0/2", "3/2"):
        with pytest.raises(UsageError, match="--shard"):
            loaded.shard(*matrix.parse_shard(bad))
    with pytest.raises(UsageError, match="expected I/N"):
        matrix.parse_shard("2")


@pytest.mark.parametrize("text, message", [
    ("trees: {a: x}\ncell: []\n", "unknown key 'cell'"),
    ("cells: [{name: a}]\n", "cell 1 needs a name and a tree"),
    ("cells: [{name: a, tree: x, flavour: y}]\n", "cell a: unknown key 'flavour'"),
    ("trees: {a: x}\ncells: [{name: a, tree: x}]\n", "two cells are named 'a'"),
    ("cells: [{name: 'a b', tree: x}]\n", "cell name 'a b'"),
    ("trees: [a]\n", "'trees' must be a mapping"),
    ("{}\n", "no cells"),
    ("trees: {a: x}\ncompare: {figures: {splits: lots}}\n", "'splits' must be a number or 'ignore'"),
    ("trees: {a: [\n", "not valid YAML"),
    ("cells: [{name: a, tree: x, transport: telnet}]\n", "'transport' must be one of serial, ssh"),
    ("cells: [{name: a, tree: x, cpus: 0}]\n", "cell a: cpus must be at least 1"),
    ("defaults: {timeout: -5}\ntrees: {a: x}\n", "timeout must be a positive number"),
])
def test_matrix_mistakes_name_the_key(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):
        matrix.load(write(tmp_path, text))


def test_matrices_in_the_project_load():
    files = sorted((PROJECT_ROOT / "matrices").glob("*.yaml"))
    assert files
    for path in files:
        assert matrix.load(path).cells


def test_classify_fail_from_error():
    assert runner.classify(TestResult.from_json({"outcome": "passed"})) == "PASS"
    assert runner.classify(TestResult.from_json({"outcome": "failed", "message": "9 splits"})) == "FAIL"
    assert runner.classify(TestResult.from_json({"outcome": "crashed"})) == "FAIL"
    # told by the outcome, not by the message's words
    assert runner.classify(TestResult.from_json({"outcome": "error", "message": "KernelCrash: "
                                                 "kernel crashed while booting"})) == "ERROR"
    assert runner.cell_verdict({"a": {"result": "PASS"}, "b": {"result": "ERROR"}}, None) == "ERROR"
    assert runner.cell_verdict({"a": {"result": "FAIL"}, "b": {"result": "ERROR"}}, None) == "FAIL"
    assert runner.cell_verdict({}, "timed out") == "ERROR"
    assert runner.cell_verdict({"a": {"result": "PASS"}}, None) == "PASS"


def summary_with(figures: dict) -> dict:
    return {"cells": {"c": {"tests": {"t.py::test_a": {"result": "PASS", "figures": figures}}}}}


def test_compare_flags_moves_beyond_the_tolerance():
    tolerances = matrix.Tolerances(0.2, 1.0, {"seconds": None})
    before = summary_with({"splits": 5, "count": 1000, "small": 1, "seconds": 10, "flag": True})
    after = summary_with({"splits": 7, "count": 1100, "small": 2, "seconds": 30, "flag": False})
    moved = compare.moved_figures(after, before, tolerances)
    assert [(m.figure, m.before, m.after, m.change) for m in moved] == [("splits", 5, 7, "+40%")]
    assert "c: test_a: splits 5 -> 7 (+40%)" == str(moved[0])
    assert compare.moved_figures(before, before, tolerances) == []
    assert compare.moved_figures(summary_with({"x": 4}), summary_with({"x": 0}), tolerances)[0].change \
        == "+4 (from 0)"


def fake_run(tests: dict[str, dict], status: int = 0, kernels: dict[str, dict] | None = None,
             cache: Path | None = None):
    """A stand-in for run_cell that writes a cell's summary.json and kcidb.json like
    `pte-harness run` does (the cell's kernel: ``kernels[name]``, else one built from its
    tree and series, with its build.log in ``cache``), with console logs."""
    def run(cell, cell_dir, origin):
        from harness.suite import kcidb
        cell_dir.mkdir(parents=True, exist_ok=True)
        (cell_dir / "run.log").write_text("fake\n")
        build_log = cache / f"{cell.name}-build.log" if cache else None
        if build_log:
            build_log.parent.mkdir(parents=True, exist_ok=True)
            build_log.write_text("fake build\n")
        record = (kernels or {}).get(cell.name) or summaries.kernel(
            cell.tree, series=cell.options.series_dir() if cell.series != "auto" else
            summaries.SERIES, build_log=str(build_log or ""))
        summary = summaries.run_summary(tests[cell.name], record, cell_dir, status)
        summary.write(cell_dir / "summary.json")
        kcidb.write(cell_dir / "kcidb.json", kcidb.document(summary, origin, cell.name))
        return status, False
    return run


def test_combined_summary_report_and_exit_status(tmp_path, monkeypatch):
    path = write(tmp_path, "trees: {good: a, bad: b, broken: c}\n")
    patch_error = "kernel could not be prepared (patch error, exit 242): patch 0001-x.patch does not apply"
    monkeypatch.setattr(runner, "run_cell", fake_run({
        "good": {"t::a": {"outcome": "passed", "seconds": 1, "figures": {"splits": 5}}},
        "bad": {"t::a": {"outcome": "failed", "seconds": 1, "message": "AssertionError: 80 splits"}},
        "broken": {"t::a": {"outcome": "error", "seconds": 0, "message": patch_error},
                   "t::b": {"outcome": "error", "seconds": 0, "message": patch_error}}}, status=1,
        kernels={"broken": summaries.kernel("c", error=("patch", "patch 0001-x.patch does not "
                                                                 "apply"))}))
    status = runner.main(path, tmp_path / "r", None, None, None)
    combined = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert status == runner.EXIT_FAIL and combined["finished"] and combined["exit_status"] == 1
    cells = combined["cells"]
    assert cells["good"]["verdict"] == "PASS" and cells["good"]["tests"]["t::a"]["figures"] == {"splits": 5}
    assert cells["bad"]["verdict"] == "FAIL"
    assert cells["broken"]["verdict"] == "ERROR" and "0001-x.patch" in cells["broken"]["error"]
    page = (tmp_path / "r" / "report.html").read_text()
    assert "0001-x.patch" in page and "AssertionError: 80 splits" in page
    summaries.check_schema(tmp_path / "r" / "summary.json", runner.SCHEMA_FILE)
    from harness.suite import kcidb
    doc = json.loads((tmp_path / "r" / "kcidb.json").read_text())
    kcidb.validate(doc)
    assert {t["misc"]["cell"]: t["status"] for t in doc["tests"] if t["misc"]["nodeid"] == "t::a"} \
        == {"good": "PASS", "bad": "FAIL", "broken": "MISS"}

    again = runner.main(path, tmp_path / "r2", "1/3", tmp_path / "r" / "summary.json", None)
    assert again == runner.EXIT_PASS  # only 'good', figures unchanged
    assert summaries.check_schema(tmp_path / "r2" / "summary.json",
                                  runner.SCHEMA_FILE)["compare"]["moved"] == []


def test_interrupted_run_leaves_a_summary_of_what_finished(tmp_path, monkeypatch):
    path = write(tmp_path, "trees: {one: a, two: b, three: c}\n")
    done = fake_run({"one": {"t::a": {"outcome": "passed", "seconds": 1}}})

    def run(cell, cell_dir, origin):
        if cell.name == "two":
            raise KeyboardInterrupt
        return done(cell, cell_dir, origin)
    monkeypatch.setattr(runner, "run_cell", run)
    assert runner.main(path, tmp_path / "r", None, None, None) == runner.EXIT_INTERRUPTED
    combined = summaries.check_schema(tmp_path / "r" / "summary.json", runner.SCHEMA_FILE)
    assert not combined["finished"]
    assert {n: c["status"] for n, c in combined["cells"].items()} == {
        "one": "done", "two": "running", "three": "pending"}
    assert "not finished (two, three)" in (tmp_path / "r" / "report.html").read_text()


def test_cell_timeout_kills_the_process_group(tmp_path, monkeypatch):
    script = ("import subprocess, sys, time; "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "print('started', child.pid, flush=True); time.sleep(60)")
    monkeypatch.setattr(runner, "cell_command", lambda cell, cell_dir, origin: [sys.executable, "-c", script])
    cell = matrix.Cell(name="slow", options=options.Options(tree="x"), timeout=0.5)
    start = time.monotonic()
    status, timed_out = runner.run_cell(cell, tmp_path / "slow")
    assert timed_out and status is None and time.monotonic() - start < 15
    log = (tmp_path / "slow" / "run.log").read_text()
    assert "started" in log
    grandchild = int(re.findall(r"^started (\d+)$", log, re.M)[0])
    assert gone(grandchild, wait=2)  # the grandchild died with the group
    entry = runner.collect(cell, tmp_path / "slow", status, timed_out, 1.0)
    assert entry["verdict"] == "ERROR" and "timed out after 0.5s" in entry["error"]


def test_compare_command(tmp_path, capsys):
    from harness import cli
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text(json.dumps(summary_with({"splits": 5})))
    (tmp_path / "new.json").write_text(json.dumps(summary_with({"splits": 9})))
    assert cli.main(["compare", str(tmp_path / "new.json"), str(tmp_path / "old")]) == runner.EXIT_MOVED
    assert "splits 5 -> 9 (+80%)" in capsys.readouterr().out
    assert cli.main(["compare", str(tmp_path / "new.json"), str(tmp_path / "old"),
                     "--tolerance", "1.0"]) == runner.EXIT_PASS
    assert cli.main(["compare", str(tmp_path / "new.json"), str(tmp_path / "nope")]) == 240
    assert "not a nightly summary.json" in capsys.readouterr().err


def test_a_cells_own_values_win_over_the_environment(tmp_path, monkeypatch):
    """PTE_HARNESS_* variables must not change what a cell says (its child reads the
    environment after its options file); other variables reach the child."""
    cell = matrix.load(write(tmp_path, "cells: [{name: c, tree: x, transport: ssh, memory: 2G}]\n"
                             )).cells[0]
    monkeypatch.setenv("PTE_HARNESS_TRANSPORT", "serial")
    monkeypatch.setenv("PTE_HARNESS_GUEST_MEM", "1G")  # an old name counts too
    monkeypatch.setenv("PTE_HARNESS_CACHE", str(tmp_path / "cache"))
    script = "import json, os, sys; print(json.dumps(dict(os.environ)), flush=True)"
    monkeypatch.setattr(runner, "cell_command",
                        lambda cell, cell_dir, origin: [sys.executable, "-c", script, *cell.run_args(cell_dir)])
    status, timed_out = runner.run_cell(cell, tmp_path / "c")
    assert (status, timed_out) == (0, False)
    child_env = json.loads((tmp_path / "c" / "run.log").read_text().splitlines()[1])
    assert child_env["PTE_HARNESS_CACHE"] == str(tmp_path / "cache")
    from harness import cli
    args = cli.parser().parse_args(["run", "--config", str(tmp_path / "c" / "options.yaml")])
    seen = options.merge(args.config, options.given(args), environ=child_env)
    assert (seen.transport, seen.memory) == ("ssh", "2G") == (cell.describe()["transport"],
                                                              cell.describe()["memory"])
    assert options.merge(args.config, options.given(args), environ=os.environ).memory == "1G"


NIGHTLY_SCRIPT = """
import sys
from pathlib import Path
from harness import cli
from harness.nightly import runner

marker = Path(sys.argv[3])
def cell_command(cell, cell_dir, origin):  # cell 'two' hangs (after saying so); the others end at once
    body = (f"open({str(marker)!r}, 'w').close(); import time; time.sleep(1000)"
            if cell.name == "two" else "pass")
    return [sys.executable, "-c", body]
runner.cell_command = cell_command
sys.exit(cli.main(["nightly", sys.argv[1], "--results", sys.argv[2]]))
"""


def test_sigterm_stops_the_nightly_and_says_which_cells_ran(tmp_path):
    """SIGTERM (a CI job's timeout) to 'pte-harness nightly' while a cell runs: 130, the
    running cell's process group is stopped, and the summary says done / running / pending."""
    path = write(tmp_path, "trees: {one: a, two: b, three: c}\n")
    marker, results = tmp_path / "two-started", tmp_path / "r"
    process = subprocess.Popen([sys.executable, "-c", NIGHTLY_SCRIPT, str(path), str(results),
                                str(marker)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == runner.EXIT_INTERRUPTED, output
    combined = json.loads((results / "summary.json").read_text())
    assert not combined["finished"]
    assert {n: c["status"] for n, c in combined["cells"].items()} == {
        "one": "done", "two": "running", "three": "pending"}


MERGE_MATRIX = """
trees: {v6.12: "debian:6.12", v6.1: "debian:6.1"}
configs: {feature: null, kasan: [kasan.config]}
cells:
  - {name: broken, tree: v6.12, series: v6.1}
  - {name: ssh, tree: v6.12, transport: ssh, tests: direct_map}
"""
PATCH_ERROR = "kernel could not be prepared (patch error, exit 242): patch 0001-x.patch does not apply"
MERGE_TESTS = {
    "v6.12-feature": {"t.py::test_a": {"outcome": "passed", "seconds": 2, "figures": {"splits": 5}},
                      "t.py::test_b": {"outcome": "passed", "seconds": 1, "figures": {"count": 64}}},
    "v6.12-kasan": {"t.py::test_a": {"outcome": "crashed", "seconds": 1, "message": "KernelCrash: BUG",
                                     "excerpt": "BUG: KASAN: use-after-free"}},
    "v6.1-feature": {"t.py::test_a": {"outcome": "passed", "seconds": 2, "figures": {"splits": 6}}},
    "v6.1-kasan": {"t.py::test_a": {"outcome": "error", "seconds": 60,
                                    "message": "BootError: guest went away"}},
    "broken": {"t.py::test_a": {"outcome": "error", "seconds": 0, "message": PATCH_ERROR}},
    "ssh": {"t.py::test_direct_map": {"outcome": "passed", "seconds": 3, "figures": {"kb": 2048}}},
}
MERGE_KERNELS = {"broken": summaries.kernel("debian:6.12", error=("patch", "0001-x.patch"))}


def essentials(combined: dict) -> dict:
    """What a merge must reproduce of an unsharded run: per cell, its verdict, error,
    counts, kernel and each test's result, figures and message."""
    return {name: {key: cell.get(key) for key in ("status", "spec", "verdict", "error", "counts",
                                                   "kernel", "tests", "transport")}
            for name, cell in combined["cells"].items()}


def kcidb_essentials(doc: dict) -> dict:
    """Each KCIDB object by id, without the file URLs (the shards' files are elsewhere)."""
    return {kind: {obj["id"]: {k: v for k, v in obj.items()
                               if k not in ("log_url", "output_files")}
                   for obj in doc[kind]} for kind in ("checkouts", "builds", "tests")}


def test_three_shards_merged_are_the_unsharded_run(tmp_path, monkeypatch, capsys):
    """A matrix run as 3 shards (3 CI jobs), the shards' results moved (as artifacts are
    downloaded by the merging job), then merged: the same cells, verdicts, figures, KCIDB
    objects and exit status as the same matrix run in one job."""
    from harness import cli
    from harness.suite import kcidb
    path = write(tmp_path, MERGE_MATRIX)
    monkeypatch.setattr(runner, "run_cell", fake_run(MERGE_TESTS, status=1, kernels=MERGE_KERNELS))
    whole = runner.main(path, tmp_path / "whole", None, None, None)
    jobs = [runner.main(path, tmp_path / "job" / f"{i}", f"{i}/3", None, None) for i in (1, 2, 3)]
    assert whole == runner.EXIT_FAIL  # the shards: PASS and ERROR, FAIL and ERROR, PASS
    assert jobs == [runner.EXIT_ERROR, runner.EXIT_FAIL, runner.EXIT_PASS]
    (tmp_path / "job").rename(tmp_path / "artifacts")  # the merging job's copy of the shards
    shards = [tmp_path / "artifacts" / f"{i}" for i in (1, 2, 3)]
    capsys.readouterr()
    status = cli.main(["nightly", str(path), "--merge", *map(str, shards),
                       "--results", str(tmp_path / "merged")])
    assert status == whole
    unsharded = json.loads((tmp_path / "whole" / "summary.json").read_text())
    merged = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert essentials(merged) == essentials(unsharded)
    assert merged["finished"] and merged["shard"] == "1/3 + 2/3 + 3/3"
    summaries.check_schema(tmp_path / "merged" / "summary.json", runner.SCHEMA_FILE)
    for name, cell in merged["cells"].items():  # where the shard's cell directory is now
        assert Path(cell["results"]).parent.parent in shards and cell["ran_in"].startswith(
            str(tmp_path / "job"))
    out = capsys.readouterr().out
    assert "FAIL   v6.12-kasan" in out and "broken" in out

    whole_kcidb = json.loads((tmp_path / "whole" / "kcidb.json").read_text())
    merged_kcidb = json.loads((tmp_path / "merged" / "kcidb.json").read_text())
    for doc in (whole_kcidb, merged_kcidb):
        kcidb.validate(doc)
    assert kcidb_essentials(merged_kcidb) == kcidb_essentials(whole_kcidb)
    assert len(merged_kcidb["tests"]) == sum(len(tests) for tests in MERGE_TESTS.values())
    for test in merged_kcidb["tests"]:  # the consoles, found where the shards are now
        if "log_url" in test:
            assert test["log_url"].startswith((tmp_path / "artifacts").as_uri())
            assert summaries.local_path(test["log_url"]).is_file()
    page = (tmp_path / "merged" / "report.html").read_text()
    assert "BUG: KASAN" not in page and "v6.1-kasan" in page and "1/3 + 2/3 + 3/3" in page

    # --compare on the merged summary: against the unsharded run nothing moved; against a
    # run where a figure was lower, it did
    assert cli.main(["nightly", str(path), "--merge", *map(str, shards), "--results",
                     str(tmp_path / "m2"), "--compare", str(tmp_path / "whole")]) == whole
    assert json.loads((tmp_path / "m2" / "summary.json").read_text())["compare"]["moved"] == []
    unsharded["cells"]["v6.12-feature"]["tests"]["t.py::test_b"]["figures"]["count"] = 32
    (tmp_path / "before.json").write_text(json.dumps(unsharded))
    cli.main(["nightly", str(path), "--merge", *map(str, shards), "--results",
              str(tmp_path / "m3"), "--compare", str(tmp_path / "before.json")])
    moved = summaries.check_schema(tmp_path / "m3" / "summary.json",
                                   runner.SCHEMA_FILE)["compare"]["moved"]
    assert [(m["cell"], m["figure"], m["before"], m["after"]) for m in moved] == [
        ("v6.12-feature", "count", 32, 64)]


def test_a_missing_or_doubled_shard_is_an_error_naming_the_cells(tmp_path, monkeypatch, capsys):
    from harness import cli
    path = write(tmp_path, MERGE_MATRIX)
    monkeypatch.setattr(runner, "run_cell", fake_run(MERGE_TESTS, kernels=MERGE_KERNELS))
    shards = [tmp_path / f"s{i}" for i in (1, 2, 3)]
    for i, shard in enumerate(shards, 1):
        runner.main(path, shard, f"{i}/3", None, None)
    names = {i: list(json.loads((s / "summary.json").read_text())["cells"]) for i, s in
             enumerate(shards, 1)}
    assert sorted(names[2]) == ["broken", "v6.12-kasan"]
    capsys.readouterr()

    def merge(*dirs, matrix=path) -> str:
        status = cli.main(["nightly", str(matrix), "--merge", *map(str, dirs),
                           "--results", str(tmp_path / "out")])
        assert status == 240
        return capsys.readouterr().err

    assert "cells in no shard: v6.12-kasan, broken" in merge(shards[0], shards[2])
    err = merge(shards[0], shards[1], shards[2], shards[1])
    assert f"cells in more than one shard: broken ({shards[1]}, {shards[1]}); v6.12-kasan (" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "other").mkdir()
    other = write(tmp_path / "other", MERGE_MATRIX.replace("kasan.config", "debug.config"))
    err = merge(*shards, matrix=other)
    assert f"cells run with other options than {other} gives them: v6.12-kasan, v6.1-kasan" in err
    fewer = write(tmp_path / "other", "trees: {v6.12: debian:6.12}\ncells: [{name: ssh, tree: v6.12}]\n")
    assert "cells not in" in merge(*shards, matrix=fewer)
    assert cli.main(["nightly", str(path), "--merge", str(tmp_path / "nope")]) == 240
    assert "not a nightly summary.json" in capsys.readouterr().err
    assert cli.main(["nightly", str(path), "--merge", str(shards[0]), "--shard", "1/3"]) == 240


def test_the_integration_checks_hold_on_a_fake_nightly(tmp_path, monkeypatch):
    """tests/integration/test_nightly.py (real kernels, CI) checks a matrix run as 3 shards
    and merged; here its checks run on the same matrix with a fake `pte-harness run`, so
    that they are known to hold of what the harness writes."""
    from harness.nightly import merge
    from tests.integration import test_nightly as integration
    passed = {"outcome": "passed", "seconds": 2}
    selected = {"tests/kernel/test_splits.py::test_grouping": {
                    **passed, "figures": {"splits": 5, "bound": 5}},
                "tests/kernel/test_shrinker.py::test_shrinker_scan": {
                    **passed, "figures": {"freed": 16}}}
    error = "kernel could not be prepared (patch error, exit 242): patch 0003-x.patch does not apply"
    tests = {"default": selected, "git": selected,
             "v6.1": {**selected, "tests/kernel/test_page_tables.py::test_failed_split": {
                 "outcome": "skipped", "seconds": 0, "message": "needs Linux 6.2"}},
             "wrong-series": {nodeid: {"outcome": "error", "message": error} for nodeid in selected},
             "ssh": {"tests/kernel/test_splits.py::test_direct_map_accounting": passed}}
    wrong = summaries.kernel("debian:6.12", error=("patch", "patch 0003-x.patch does not apply"),
                             series=PROJECT_ROOT / "patches" / "v6.1")
    monkeypatch.setattr(runner, "run_cell", fake_run(tests, kernels={"wrong-series": wrong},
                                                     cache=tmp_path / "cache"))
    path = integration.write_matrix(tmp_path, "git:/src/linux@v6.12")
    shards = [tmp_path / f"shard-{index}" for index in (1, 2, 3)]
    statuses = [runner.main(path, shard, f"{index}/3", None, None)
                for index, shard in enumerate(shards, 1)]
    status = merge.main(path, shards, tmp_path / "results", None, None)
    nightly_run = {"status": status, "results": tmp_path / "results", "shards": shards,
                   "summary": json.loads((tmp_path / "results" / "summary.json").read_text()),
                   "shard_statuses": statuses}
    integration.test_series_that_does_not_apply_is_an_error_naming_the_patch(nightly_run)
    integration.test_merged_shards_have_every_cell_once(nightly_run)
    integration.test_every_kcidb_json_validates_and_says_what_happened(nightly_run)


def test_a_cells_run_gets_the_kcidb_origin_and_its_name(tmp_path, monkeypatch):
    from harness import cli
    cell = matrix.load(write(tmp_path, "cells: [{name: c1, tree: x}]\n")).cells[0]
    (tmp_path / "c1").mkdir()
    command = runner.cell_command(cell, tmp_path / "c1", "my_lab")
    assert command[:4] == [sys.executable, "-m", "harness.cli", "run"]
    seen = {}
    monkeypatch.setattr("harness.suite.run.main", lambda *args: seen.setdefault("args", args) and 0)
    assert cli.main(command[3:]) == 0
    assert seen["args"][-2:] == ("my_lab", "c1")
