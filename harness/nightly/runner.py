"""`pte-harness nightly MATRIX`: run the cells of a matrix, one results directory each, and
keep a combined summary.json (and report.html, kcidb.json) that tells FAIL (the kernel is
wrong) from ERROR (could not tell: patch, build, boot, timeout), written after every cell. The
combined summary's format: summary.schema.json beside this module (SCHEMA)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.nightly import compare, report, matrix
from harness.cache import new_results_dir, read_json, write_json_atomic
from harness.progress import say
from harness.errors import UsageError
from harness.suite import kcidb
from harness.suite.summary import Outcome, Summary, TestResult

SCHEMA = 1  # of the combined summary.json: 1, the "schema" key itself, kcidb_origin, ran_in
SCHEMA_FILE = Path(__file__).with_name("summary.schema.json")
PASS, FAIL, ERROR, SKIP = "PASS", "FAIL", "ERROR", "SKIP"
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_MOVED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def classify(result: TestResult) -> str:
    """One test of a cell: FAIL when the kernel is wrong (an assertion, a kernel-log report
    or a crash), ERROR when the run could not tell (setup: patch, build, boot)."""
    if result.outcome == Outcome.PASSED:
        return PASS
    if result.outcome == Outcome.SKIPPED:
        return SKIP
    return FAIL if result.outcome.kernel_is_wrong else ERROR


def cell_verdict(tests: dict[str, dict], problem: str | None) -> str:
    results = {entry["result"] for entry in tests.values()}
    if FAIL in results:
        return FAIL
    if problem or ERROR in results or not results:
        return ERROR
    return PASS if PASS in results else SKIP


def _problem(run_log: Path, status: int | None, tests: dict[str, dict]) -> str | None:
    """Why a cell could not tell: the errors every test met, or the harness's own message."""
    errors = {entry.get("message", "") for entry in tests.values() if entry["result"] == ERROR}
    if tests and len(errors) == 1 and all(e["result"] == ERROR for e in tests.values()):
        return errors.pop()
    if tests:
        return None
    try:
        lines = run_log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    said = [line for line in lines if " error: " in line or line.startswith("Exit: ")]
    return said[-1].strip() if said else f"no test ran (exit status {status})"


def cell_command(cell: matrix.Cell, cell_dir: Path, origin: str = kcidb.ORIGIN) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "run", *cell.run_args(cell_dir),
            "--results", str(cell_dir), "--kcidb-origin", origin, "--kcidb-cell", cell.name]


def run_cell(cell: matrix.Cell, cell_dir: Path,
             origin: str = kcidb.ORIGIN) -> tuple[int | None, bool]:
    """Run ``pte-harness run`` for one cell, its output in run.log (and on stdout, prefixed);
    the whole process group is killed at the cell's timeout. Returns (status, timed out)."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    command = cell_command(cell, cell_dir, origin)
    with (cell_dir / "run.log").open("w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, errors="replace",
                                   env=cell.environment(os.environ), start_new_session=True)
        copier = threading.Thread(target=_copy, args=(process, log, cell.name), daemon=True)
        copier.start()
        try:
            status = process.wait(timeout=cell.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(process)
            status, timed_out = None, True
        except BaseException:
            _kill_group(process)
            raise
        finally:
            copier.join(10)
    return status, timed_out


def _copy(process: subprocess.Popen, log, name: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        log.write(line)
        log.flush()
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()


def _kill_group(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def collect(cell: matrix.Cell, cell_dir: Path, status: int | None, timed_out: bool,
            seconds: float) -> dict:
    """The combined summary's entry for a finished cell, from the cell's own summary.json."""
    summary = Summary.read(cell_dir) or Summary()
    tests: dict[str, dict[str, Any]] = {}
    for nodeid, result in summary.tests.items():
        tests[nodeid] = {"result": classify(result), "seconds": result.seconds,
                         **({"figures": result.figures} if result.figures else {}),
                         **({"message": result.message} if result.message else {})}
    problem = (f"timed out after {cell.timeout:g}s (the cell's processes were killed)"
               if timed_out else _problem(cell_dir / "run.log", status, tests))
    counts: dict[str, int] = {}
    for entry in tests.values():
        counts[entry["result"]] = counts.get(entry["result"], 0) + 1
    return {"status": "done", "verdict": cell_verdict(tests, problem), "error": problem,
            "exit_status": status, "seconds": round(seconds, 1), "kernel": summary.kernel,
            "transport": summary.transport,
            "counts": counts, "tests": tests}


def overall_status(combined: dict) -> int:
    cells = combined["cells"].values()
    verdicts = {cell.get("verdict") for cell in cells}
    if any(cell["status"] != "done" for cell in cells):
        return EXIT_INTERRUPTED
    if FAIL in verdicts:
        return EXIT_FAIL
    if ERROR in verdicts:
        return EXIT_ERROR
    if combined.get("compare", {}).get("moved"):
        return EXIT_MOVED
    return EXIT_PASS


def main(matrix_path: Path, results: Path | None, shard: str | None,
         previous: Path | None, tolerance: float | None,
         kcidb_origin: str | None = None) -> int:
    loaded = matrix.load(matrix_path)
    index, count = matrix.parse_shard(shard) if shard else (1, 1)
    cells = loaded.shard(index, count)
    tolerances = with_tolerance(loaded.tolerances, tolerance)
    previous_summary = read_summary(previous, "--compare") if previous is not None else None
    kcidb_origin = kcidb.check_origin(kcidb_origin or kcidb.ORIGIN)
    results = (results or new_results_dir(Path("results"), "nightly-")).resolve()
    results.mkdir(parents=True, exist_ok=True)
    combined: dict[str, Any] = {
        "schema": SCHEMA, "matrix": str(matrix_path.resolve()), "shard": f"{index}/{count}",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "finished": False,
        "exit_status": None, "kcidb_origin": kcidb_origin,
        "cells": {cell.name: {"status": "pending", "spec": cell.describe(),
                              "results": str(results / "cells" / cell.name)}
                  for cell in cells}}
    _write(results, combined)
    say(f"nightly: {len(cells)} cell(s) of {len(loaded.cells)} (shard {index}/{count}); "
        f"results in {results}")
    try:
        for number, cell in enumerate(cells, 1):
            say(f"[{number}/{len(cells)}] cell {cell.name}: {cell.tree}, series {cell.series}"
                + (f", -k {cell.tests}" if cell.tests else ""))
            combined["cells"][cell.name]["status"] = "running"
            _write(results, combined)
            start = time.monotonic()
            status, timed_out = run_cell(cell, results / "cells" / cell.name, kcidb_origin)
            entry = collect(cell, results / "cells" / cell.name, status, timed_out,
                            time.monotonic() - start)
            combined["cells"][cell.name].update(entry)
            _write(results, combined)
            say(f"cell {cell.name}: {entry['verdict']} "
                f"({', '.join(f'{n} {k}' for k, n in sorted(entry['counts'].items())) or 'no tests'}) "
                f"in {entry['seconds']:.0f}s" + (f"; {entry['error']}" if entry["error"] else ""))
    except KeyboardInterrupt:
        say("nightly: interrupted; the summary lists the cells that did not finish")
        _write(results, combined)
        return EXIT_INTERRUPTED
    combined["finished"] = True
    return conclude(results, combined, previous, previous_summary, tolerances)


def conclude(results: Path, combined: dict, previous: Path | None, previous_summary: dict | None,
             tolerances: matrix.Tolerances) -> int:
    """Compare with the previous summary (if any), set the exit status, write and print."""
    if previous_summary is not None:
        moved = compare.moved_figures(combined, previous_summary, tolerances)
        combined["compare"] = {"previous": str(previous), "tolerance": tolerances.tolerance,
                               "min_change": tolerances.min_change,
                               "moved": [m.as_dict() for m in moved]}
        for item in moved:
            say(f"figure moved: {item}")
    combined["exit_status"] = overall_status(combined)
    _write(results, combined)
    print(format_combined(combined))
    print(f"results: {results / 'summary.json'}, {results / 'report.html'}, "
          f"{results / 'kcidb.json'}")
    return combined["exit_status"]


def with_tolerance(tolerances: matrix.Tolerances, tolerance: float | None) -> matrix.Tolerances:
    """The matrix's tolerances, with the command line's relative tolerance when given."""
    if tolerance is None:
        return tolerances
    return matrix.Tolerances(tolerance, tolerances.min_change, tolerances.figures)


def read_summary(path: Path, option: str) -> dict:
    summary = read_json(path / "summary.json" if path.is_dir() else path)
    if not summary or "cells" not in summary:
        raise UsageError(f"{option} {path}: not a nightly summary.json (or a results directory "
                         "holding one)")
    return summary


def compare_main(current: Path, previous: Path, tolerance: float | None) -> int:
    """`pte-harness compare CURRENT PREVIOUS`: figures of two finished nightly runs."""
    now, before = read_summary(current, "compare"), read_summary(previous, "compare")
    matrix_path = Path(now.get("matrix") or "")
    tolerances = with_tolerance(matrix.load(matrix_path).tolerances if matrix_path.is_file()
                                else matrix.Tolerances(), tolerance)
    moved = compare.moved_figures(now, before, tolerances)
    print(f"{len(moved)} figure(s) moved by more than {tolerances.tolerance:.0%} "
          f"(and more than {tolerances.min_change:g}) from {previous} to {current}")
    for item in moved:
        print(f"  {item}")
    return EXIT_MOVED if moved else EXIT_PASS


def _write(results: Path, combined: dict) -> None:
    combined["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(results / "summary.json", combined)
    report.write(results, combined)
    kcidb.write(results / "kcidb.json", kcidb_document(combined))


def kcidb_document(combined: dict) -> dict:
    """The KCIDB document of a nightly: every finished cell's run, read from the cell's own
    summary.json (where a merge found it), its tests' ids scoped by the cell's name."""
    origin = combined.get("kcidb_origin") or kcidb.ORIGIN
    documents = []
    for name, cell in combined["cells"].items():
        results = Path(cell.get("results", ""))
        summary = Summary.read(results) if cell.get("status") == "done" else None
        if summary is not None:
            documents.append(kcidb.document(summary, origin, name,
                                            kcidb.relocated(cell.get("ran_in"), results)))
    return kcidb.combine(documents)


def format_combined(combined: dict) -> str:
    lines = [f"nightly {combined['matrix']} shard {combined['shard']}"]
    for name, cell in combined["cells"].items():
        verdict = cell.get("verdict") or cell["status"].upper()
        counts = ", ".join(f"{n} {k}" for k, n in sorted(cell.get("counts", {}).items()))
        lines.append(f"  {verdict:<6} {name}  {counts}  ({cell.get('seconds', 0):.0f}s)")
        if cell.get("error"):
            lines.append(f"         -> {cell['error']}")
        for nodeid, test in cell.get("tests", {}).items():
            if test["result"] in (FAIL, ERROR) and not cell.get("error"):
                lines.append(f"         {test['result']} {nodeid.split('::', 1)[-1]}: "
                             f"{test.get('message', '')}")
    moved = combined.get("compare", {}).get("moved", [])
    if "compare" in combined:
        lines.append(f"compared with {combined['compare']['previous']}: "
                     f"{len(moved)} figure(s) moved beyond the tolerance")
        lines += [f"  {compare.Moved(**{k: m[k] for k in ('cell', 'test', 'figure', 'before', 'after')})}"
                  for m in moved]
    return "\n".join(lines)
