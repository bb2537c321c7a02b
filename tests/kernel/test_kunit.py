"""The series' KUnit suite ``pte_mapped`` (mm/pte_mapped_kunit.c): one pytest test per case.

Cases are read at collection time from the series in use (``Options.series_dir()``): the
``KUNIT_CASE*`` lines its patches add to (``+``) or remove from (``-``) mm/pte_mapped_kunit.c,
in series order; for a tree that carries the series, from the tree's own file. A series
without that file gives no test here (not a skipped one).

The suite is built in (``kconfigs/kunit.config``: KUNIT, KUNIT_DEBUGFS,
PTE_MAPPED_KUNIT_TEST) and runs while the kernel boots, before init, so one boot serves every
case; ``movablecore=`` on its command line (after the session's arguments) gives the case that
needs a ZONE_MOVABLE one. The plugin's ``boot`` fixture boots once per test; ``kunit_boot`` is
a module-scoped fixture made of the same pieces (``guest_options`` for this module's ``guest``
marker, the ``kernels`` fixture, ``pipeline.boot``), and ``kunit`` hands its session to each
test as ``boot`` does (the plugin's SESSIONS and TEST_KERNEL stash keys). So each test has the
boot's console in its report and its kernel in the summary, and the plugin's kernel-log check
runs for each: a crash or warning while the suite ran fails every case. A boot that fails
errors every case with its cause.

Results: ``/sys/kernel/debug/kunit/pte_mapped/results``, read once. A case missing there is
looked for in the kernel log (6.1 keeps 512 bytes of each case's log, so a long one loses
its result line) before its test fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness import pipeline
from harness.errors import HarnessError, UsageError
from harness.guest import ktap
from harness.guest.session import Session
from harness.kernel import patches, source
from harness.options import Options
from harness.suite.plugin import (KERNEL_IDS, SESSIONS, TEST_KERNEL, _safe, guest_options,
                                  options_from_config)
from tests.kernel.test_isolation import MACHINE

SUITE = "pte_mapped"
SOURCE = "mm/pte_mapped_kunit.c"
RESULTS = f"/sys/kernel/debug/kunit/{SUITE}/results"
KCONFIG = "kunit"  # kconfigs/kunit.config
APPEND = "movablecore=256M"  # a ZONE_MOVABLE for the case that needs one (boot only)
BOOT_TIMEOUT = 180.0  # at least: the suite runs inside the boot, before the guest's shell
READ_TIMEOUT = 120.0
NO_CASES = "no-kunit-cases"  # the placeholder of a series without the suite (deselected)
CASE = re.compile(r"\s*KUNIT_CASE\w*\s*\(\s*(\w+)")
HUNK = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")

pytestmark = [pytest.mark.kernel, pytest.mark.guest(**MACHINE, kconfig=KCONFIG)]


def source_cases(text: str) -> list[str]:
    """The cases a C file declares, in order."""
    return list(dict.fromkeys(m.group(1) for line in text.splitlines()
                              if (m := CASE.match(line))))


def patch_cases(cases: list[str], text: str, strip: int = 1) -> list[str]:
    """``cases`` after a patch: the ``KUNIT_CASE*`` lines its hunks add to or remove from
    SOURCE (``strip``: the patch's -pN)."""
    cases = list(cases)
    paths: list[str] = []  # the current file's old and new path
    old_left = new_left = 0  # lines left in the current hunk
    for line in text.splitlines():
        if old_left > 0 or new_left > 0:
            tag = line[:1]  # "+", "-", " " (or nothing: a blank context line), "\\"
            if tag != "+" and tag != "\\":
                old_left -= 1
            if tag != "-" and tag != "\\":
                new_left -= 1
            match = CASE.match(line[1:])
            if match and tag in ("+", "-") and SOURCE in paths:
                name = match.group(1)
                if tag == "-" and name in cases:
                    cases.remove(name)
                elif tag == "+" and name not in cases:
                    cases.append(name)
        elif line.startswith(("--- ", "+++ ")):
            path = line[4:].split("\t")[0].strip()
            if line.startswith("--- "):
                paths = []
            paths.append("/".join(path.split("/")[strip:]))
        elif match := HUNK.match(line):
            old_left, new_left = (int(n) if n is not None else 1 for n in match.groups())
    return cases


def series_cases(directory: Path) -> list[str]:
    """The suite's cases once every patch of the series in ``directory`` is applied."""
    cases: list[str] = []
    for patch in patches.load_series(directory).patches:
        cases = patch_cases(cases, patch.path.read_text(errors="replace"), patch.strip)
    return cases


def declared_cases(chosen: Options) -> list[str]:
    """The suite's cases in the kernel these options build."""
    directory = chosen.series_dir()
    if directory is not None:
        return series_cases(directory)
    if not chosen.tree_carries_series():
        return []
    return source_cases(source.read_file(source.parse_spec(chosen.tree), SOURCE) or "")


class _DropPlaceholder:
    """Deselects the placeholder of a series without the suite, so that it has no test here
    rather than a skipped one (a test module takes no part in the end of collection)."""

    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        dropped = [item for item in items if _case_param(item) == NO_CASES]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if _case_param(item) != NO_CASES]


def _case_param(item: pytest.Item) -> object:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("kunit_case") if callspec else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kunit_case" not in metafunc.fixturenames:
        return
    try:
        names = declared_cases(options_from_config(metafunc.config))
    except HarnessError as exc:  # one test, failing with it (the fixtures report bad options)
        metafunc.parametrize("kunit_case", [exc], ids=["cases-unknown"])
        return
    if not names:
        manager = metafunc.config.pluginmanager
        if not manager.has_plugin(_DropPlaceholder.__name__):
            manager.register(_DropPlaceholder(), _DropPlaceholder.__name__)
        names = [NO_CASES]
    metafunc.parametrize("kunit_case", names, ids=names)


@dataclass
class KunitRun:
    """What the boot told: the suite as the results file and as the kernel log hold it."""

    session: Session
    results: ktap.KtapSuite | None
    console: ktap.KtapSuite | None
    problems: list[str] = field(default_factory=list)

    def find(self, name: str) -> tuple[ktap.KtapCase | None, str]:
        """The case's result and where it was found."""
        for where, suite in ((RESULTS, self.results), ("the kernel log", self.console)):
            case = suite.case(name) if suite else None
            if case:
                return case, where
        return None, ""

    def missing(self, name: str) -> str:
        lines = [f"KUnit case {SUITE}.{name} is in neither {RESULTS} nor the kernel log",
                 *self.problems]
        suite = self.results or self.console
        if suite is None:
            lines.append(f"no suite {SUITE} in either: is it built in (kconfigs/{KCONFIG}.config)"
                         f" and named {SUITE!r}?")
        else:
            if suite.status is None:
                lines.append("no result line for the suite itself: its run did not finish")
            lines.append(f"cases reported: {', '.join(c.name for c in suite.cases) or 'none'}")
            lines += [suite.diagnostic] if suite.diagnostic else []
        return "\n".join(lines)


def _suite(suites: list[ktap.KtapSuite]) -> ktap.KtapSuite | None:
    return next((suite for suite in suites if suite.name == SUITE), None)


def read_results(session: Session) -> KunitRun:
    """Read the suite's results file once, and the kernel log's copy of the same."""
    run = KunitRun(session, None, _suite(ktap.from_console(session.console())))
    found = session.run(f"cat {RESULTS}", timeout=READ_TIMEOUT)
    if found.status != 0:
        run.problems.append(f"{RESULTS} could not be read (exit {found.status}): "
                            f"{found.output.strip()}")
        return run
    try:
        run.results = _suite(ktap.parse(found.output))
    except ktap.KtapError as exc:
        run.problems.append(f"{RESULTS}: {exc}")
    return run


@pytest.fixture(scope="module")
def kunit_boot(request: pytest.FixtureRequest, harness_options: Options, results_dir: Path,
               kernels: Callable[[Options], pipeline.Prepared]) -> Iterator[KunitRun]:
    """One guest, shaped by this module's marker, booted for all its tests; the suite's
    results read from it once."""
    chosen = guest_options(request.node, harness_options)
    kernel = (request.getfixturevalue("kernel") if chosen == harness_options
              else kernels(chosen))
    run_dir = results_dir / _safe(request.node.nodeid) / "boot0"
    run_dir.mkdir(parents=True, exist_ok=True)
    patient = replace(chosen, boot_timeout=max(chosen.boot_timeout, BOOT_TIMEOUT))
    try:
        session = pipeline.boot(kernel, patient, run_dir, APPEND)
    except UsageError as exc:  # QEMU missing, say: the harness, not the kernel
        pytest.exit(f"pte-harness usage error: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    try:
        yield read_results(session)
    finally:
        session.close()


@pytest.fixture
def kunit(request: pytest.FixtureRequest, harness_options: Options, kunit_case: object
          ) -> KunitRun:
    """The module's boot, given to this test as the plugin's ``boot`` gives its own: the
    test's kernel in the summary, the console in its report, the kernel log checked."""
    if isinstance(kunit_case, HarnessError):
        pytest.fail(f"the series' KUnit cases could not be read ({kunit_case.kind} error): "
                    f"{kunit_case}", pytrace=False)
    chosen = guest_options(request.node, harness_options)
    try:
        run = request.getfixturevalue("kunit_boot")
    finally:  # the test's kernel, a failed one's too
        kernel_id = request.config.stash.get(KERNEL_IDS, {}).get(chosen)
        if kernel_id:
            request.node.stash[TEST_KERNEL] = kernel_id
    request.node.stash.setdefault(SESSIONS, []).append(run.session)
    return run


def test_kunit(kunit: KunitRun, kunit_case: str, figures: dict[str, object]) -> None:
    """KUnit's verdict on one case. A KUnit SKIP fails too: this module's guest is shaped to
    give every case what it needs (two nodes with memory, ZONE_DMA, ZONE_MOVABLE), so a case
    that skips means the guest or kconfigs/kunit.config no longer does."""
    case, where = kunit.find(kunit_case)
    if case is None:
        pytest.fail(kunit.missing(kunit_case), pytrace=False)
    figures["results_from"] = "debugfs" if where == RESULTS else "kernel log"
    if case.subtests:
        figures.update(params=len(case.subtests),
                       params_passed=sum(p.status == "ok" for p in case.subtests))
    if case.status == "skip":
        pytest.fail(f"KUnit skipped {SUITE}.{kunit_case} ({case.reason or 'no reason given'}): "
                    f"this guest should give it what it needs", pytrace=False)
    if case.status != "ok":
        pytest.fail(f"KUnit: not ok {case.number} {SUITE}.{kunit_case} (from {where})\n"
                    f"{case.diagnostic or '(no diagnostic printed)'}", pytrace=False)
