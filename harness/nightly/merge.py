"""`pte-harness nightly MATRIX --merge DIR...`: the results of a matrix run as shards
(--shard I/N, one CI job each) made one nightly: summary.json, report.html and kcidb.json as
if the matrix had run in one job, and --compare on that. Every cell of the matrix must be in
exactly one shard, run as the matrix says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.cache import new_results_dir
from harness.errors import UsageError
from harness.nightly import matrix, runner
from harness.suite import kcidb


def merge(loaded: matrix.Matrix, shard_dirs: list[Path], origin: str | None = None
          ) -> dict[str, Any]:
    """The combined summary of the shards' results directories; a UsageError naming the
    cells that are missing, in two shards, not in the matrix or run with other options."""
    shards = [(directory, runner.read_summary(directory, "--merge")) for directory in shard_dirs]
    found: dict[str, list[Path]] = {}
    for directory, summary in shards:
        for name in summary["cells"]:
            found.setdefault(name, []).append(directory)
    wanted = {cell.name: cell for cell in loaded.cells}
    problems = []
    if missing := [name for name in wanted if name not in found]:
        problems.append(f"cells in no shard: {', '.join(missing)}")
    if doubled := {name: dirs for name, dirs in found.items() if len(dirs) > 1}:
        problems.append("cells in more than one shard: " + "; ".join(
            f"{name} ({', '.join(map(str, dirs))})" for name, dirs in doubled.items()))
    if unknown := [name for name in found if name not in wanted]:
        problems.append(f"cells not in {loaded.path}: {', '.join(unknown)}")
    cells = {name: (directory, dict(cell)) for directory, summary in shards
             for name, cell in summary["cells"].items()}
    if other := [name for name, cell in wanted.items()
                 if name in cells and cells[name][1].get("spec") != cell.describe()]:
        problems.append(f"cells run with other options than {loaded.path} gives them: "
                        f"{', '.join(other)}")
    if problems:
        raise UsageError(f"cannot merge {len(shard_dirs)} shard(s) of {loaded.path}: "
                         + "; ".join(problems))
    origins = {summary.get("kcidb_origin") or kcidb.ORIGIN for _, summary in shards}
    if origin is None and len(origins) > 1:
        raise UsageError(f"the shards used KCIDB origins {', '.join(sorted(origins))}: "
                         "give --kcidb-origin")
    for name, (directory, cell) in cells.items():  # the cell's directory is here now
        here = (directory / "cells" / name).resolve()
        ran_in = cell.get("ran_in") or cell.get("results")
        cell.update(results=str(here), **({"ran_in": ran_in} if ran_in != str(here) else {}))
    return {"schema": runner.SCHEMA, "matrix": str(loaded.path.resolve()),
            "shard": " + ".join(summary.get("shard", "?") for _, summary in shards),
            "merged": [str(directory.resolve()) for directory in shard_dirs],
            "started": min(summary.get("started", "") for _, summary in shards),
            "finished": all(summary.get("finished") for _, summary in shards),
            "exit_status": None, "kcidb_origin": kcidb.check_origin(origin or origins.pop()),
            "cells": {name: cells[name][1] for name in wanted}}


def main(matrix_path: Path, shard_dirs: list[Path], results: Path | None,
         previous: Path | None, tolerance: float | None, origin: str | None = None) -> int:
    """Merge, compare, write DIR/summary.json, report.html and kcidb.json; the exit status
    of a nightly (runner.overall_status)."""
    loaded = matrix.load(matrix_path)
    previous_summary = runner.read_summary(previous, "--compare") if previous else None
    combined = merge(loaded, shard_dirs, origin)
    results = (results or new_results_dir(Path("results"), "nightly-merged-")).resolve()
    if results in {Path(d).resolve() for d in combined["merged"]}:
        raise UsageError(f"--results {results} is one of the shards: give another directory")
    results.mkdir(parents=True, exist_ok=True)
    return runner.conclude(results, combined, previous, previous_summary,
                           runner.with_tolerance(loaded.tolerances, tolerance))
