"""`pte-harness run`: the kernel test suite through pytest, with a results directory and a
readable summary of the measured figures."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from harness import options as options_module
from harness.kernel import source
from harness.cache import new_results_dir, subdir
from harness.errors import UsageError
from harness.options import PROJECT_ROOT, Options
from harness.suite import kcidb
from harness.suite.summary import Outcome, Summary

SUITE = PROJECT_ROOT / "tests" / "kernel"


class HandOff:
    """Carries ``run``'s Options into the pytest plugin, in process (pytest.main(plugins=))."""

    def __init__(self, options: Options) -> None:
        self.options = options


def pytest_args(results: Path, keyword: str | None, exitfirst: bool = False) -> list[str]:
    args = [str(SUITE), "-p", "no:cacheprovider", "-q", "-rfE",
            f"--junitxml={results / 'junit.xml'}", f"--results={results}"]
    if keyword:
        args += ["-k", keyword]
    if exitfirst:
        args.append("--exitfirst")
    return args


def format_summary(summary: Summary) -> str:
    kernel = summary.kernel or {}
    lines = [f"kernel {kernel.get('version', '?')} from {kernel.get('tree', '?')}, "
             f"series {kernel.get('series', '?')}, transport {summary.transport}"]
    counts: dict[str, int] = {}
    for nodeid, entry in summary.tests.items():
        outcome = entry.outcome.value
        counts[outcome] = counts.get(outcome, 0) + 1
        name = nodeid.split("::", 1)[-1]
        lines.append(f"  {outcome.upper():<7} {name}  ({entry.seconds:.1f}s)")
        for key, value in entry.figures.items():
            lines.append(f"            {key} = {value}")
        if entry.message:
            lines.append(f"            -> {entry.message}")
    lines.append(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no tests ran")
    return "\n".join(lines)


BISECT_GOOD, BISECT_BAD, BISECT_SKIP, BISECT_ABORT = 0, 1, 125, 200
INTERRUPTED = 130  # run's status when pytest was interrupted (as a shell reports SIGINT)


def bisect_status(pytest_status: int, summary: Summary) -> int:
    """Map a run to `git bisect run` statuses: 0 good, 1 bad (a test failed or the kernel
    crashed: the kernel is wrong), 125 skip (could not judge: patch, config, build or boot),
    200 abort (misuse)."""
    if pytest_status in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR,
                         pytest.ExitCode.NO_TESTS_COLLECTED, pytest.ExitCode.INTERRUPTED):
        return BISECT_ABORT
    outcomes = {entry.outcome for entry in summary.tests.values()}
    if any(outcome.kernel_is_wrong for outcome in outcomes):
        return BISECT_BAD
    if Outcome.ERROR in outcomes or not summary.kernel_built:
        return BISECT_SKIP
    return BISECT_GOOD if pytest_status == pytest.ExitCode.OK else BISECT_ABORT


def _prepare_results(options: Options, results: Path | None, keyword: str | None,
                     exitfirst: bool = False) -> tuple[Path, list[str]]:
    """The results directory with options.yaml and command.txt; pytest's arguments."""
    if results is None:  # in a kernel tree (git bisect run), keep its checkout free of results
        parent = subdir("results") if source.is_kernel_tree(Path.cwd()) else Path("results")
        results = new_results_dir(parent)
    results = results.resolve()
    print(f"kernel tree: {options.tree}; results: {results}")
    results.mkdir(parents=True, exist_ok=True)
    args = pytest_args(results, keyword, exitfirst)
    saved = options_module.write_yaml(options, results / "options.yaml")
    command = ["pytest", *args, f"--pte-config={saved}"]  # the same run, typed by hand
    (results / "command.txt").write_text(shlex.join(command) + "\n")
    return results, args


def main(options: Options, results: Path | None, keyword: str | None,
         bisect_exit: bool = False, exitfirst: bool = False, kcidb_origin: str | None = None,
         kcidb_cell: str = "") -> int:
    kcidb_origin = kcidb.check_origin(kcidb_origin or kcidb.ORIGIN)
    try:
        results, args = _prepare_results(options, results, keyword, exitfirst)
    except OSError as exc:  # the harness's own problem: never blame the kernel for it
        return _unwritable(f"results directory {results or 'results/'}", exc, bisect_exit)
    try:  # pytest lets an error writing junit.xml or summary.json (a full disk) escape
        status = int(pytest.main(args, plugins=[HandOff(options)]))
    except OSError as exc:
        return _unwritable(f"results {exc.filename or results}", exc, bisect_exit)
    summary = Summary.read(results)
    try:
        if summary is not None:  # kernel tests ran
            kcidb.write(results / "kcidb.json", kcidb.document(summary, kcidb_origin, kcidb_cell))
    except OSError as exc:
        return _unwritable(f"results {exc.filename or results}", exc, bisect_exit)
    summary = summary or Summary()
    print("\n" + format_summary(summary))
    print(f"results: {results} (junit.xml, summary.json, kcidb.json, kernel.config, per-test "
          "console logs)")
    sys.stdout.flush()
    if bisect_exit:
        verdict = bisect_status(status, summary)
        print(f"bisect verdict: {verdict} (0 good, 1 bad, 125 skip, 200 abort)")
        return verdict
    return INTERRUPTED if status == pytest.ExitCode.INTERRUPTED else status


def _unwritable(what: str, exc: OSError, bisect_exit: bool) -> int:
    """Results that cannot be written are the harness's failure, never the kernel's: abort
    (200) under --bisect-exit, else a usage error naming the path."""
    problem = UsageError(f"{what} cannot be written: {exc.strerror or exc}")
    if bisect_exit:
        print(f"pte-harness: usage error: {problem}\nbisect verdict: {BISECT_ABORT} (abort)",
              file=sys.stderr)
        return BISECT_ABORT
    raise problem from exc
