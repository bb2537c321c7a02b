"""pytest plugin (entry point ``pytest11``): kernel and guest fixtures for kernel tests.

Options: every build and boot option of options.Options (--kernel-tree, --series, --kconfig,
--memory, --transport, ...; each also as PTE_HARNESS_<NAME>), a YAML file (--pte-config) and
--results; ``pte-harness run`` hands its Options over in process instead. The kernel is built
once per session; a build failure is raised
(cached by pytest) for every test that needs it. Each test gets freshly booted guests whose
console logs are kept under the results directory and attached to the JUnit report; a test
whose kernel log shows a warning, oops, BUG or lockdep report fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

import pytest

from harness.guest import crash
from harness import options, pipeline
from harness.kernel import build
from harness.errors import BootError, HarnessError, KernelCrash, UsageError
from harness.options import Options
from harness.suite import kernels as kernel_records
from harness.suite.run import HandOff
from harness.suite.summary import Outcome, Summary, TestResult
from harness.guest.session import Session

SESSIONS = pytest.StashKey[list[Session]]()
FIGURES = pytest.StashKey[dict[str, object]]()
KERNELS = pytest.StashKey[dict[str, dict]]()  # every kernel prepared: id -> its record
KERNEL_IDS = pytest.StashKey[dict[Options, str]]()  # options -> the id of their kernel
TEST_KERNEL = pytest.StashKey[str]()  # on a test: the id of the kernel its guests boot
KERNEL_USED = pytest.StashKey[bool]()
BOOT_FAILURES = pytest.StashKey[dict[tuple[Options, str], HarnessError]]()  # boot -> why
OPTIONS = pytest.StashKey[Options]()
RESULTS_ENV = "PTE_HARNESS_RESULTS"
CONFIG_ENV = "PTE_HARNESS_CONFIG"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pte-harness", "kernel under test (every option also as "
                                           "PTE_HARNESS_<NAME>, e.g. PTE_HARNESS_TREE)")
    group.addoption("--pte-config", help=f"YAML file with options [{CONFIG_ENV}]")
    options.add_arguments(group, pytest=True)
    group.addoption("--results", help=f"results directory, default ./results [{RESULTS_ENV}]")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RECORDER] = Recorder(config)
    config.pluginmanager.register(config.stash[RECORDER], "pte-harness-recorder")
    config.addinivalue_line("markers", "kernel: builds and boots a real kernel (slow)")
    config.addinivalue_line("markers", "guest(cpus=, numa=, hotplug=, memory=, kconfig=, "
                                       "append=): the shape of the guests this test boots "
                                       "(and the kernel it needs)")
    config.addinivalue_line("markers", "negative: runs a check against a kernel where the "
                                       "behaviour is broken and expects the check to fail")


def results_option(config: pytest.Config) -> str | None:
    return config.getoption("results") or os.environ.get(RESULTS_ENV) or None


def options_from_config(config: pytest.Config) -> Options:
    """The Options handed over by ``pte-harness run``, else the YAML file, environment and
    pytest options (in that order of precedence, the last winning)."""
    if OPTIONS not in config.stash:
        handed = [p for p in config.pluginmanager.get_plugins() if isinstance(p, HandOff)]
        if handed:
            config.stash[OPTIONS] = handed[0].options
        else:
            path = config.getoption("pte_config") or os.environ.get(CONFIG_ENV) or None
            config.stash[OPTIONS] = options.merge(Path(path) if path else None,
                                                  options.given(config))
    return config.stash[OPTIONS]


@pytest.fixture(scope="session")
def harness_options(pytestconfig: pytest.Config) -> Options:
    try:
        return options_from_config(pytestconfig)
    except UsageError as exc:  # a bad option value: no kernel is to blame
        pytest.exit(f"pte-harness usage error: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def results_dir(pytestconfig: pytest.Config) -> Path:
    path = Path(results_option(pytestconfig) or "results").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


KernelKey = tuple  # (BuildRequest, transport): what decides the kernel and initramfs


@pytest.fixture(scope="session")
def kernels(pytestconfig: pytest.Config) -> Callable[[Options], pipeline.Prepared]:
    """The built (or reused) kernel and initramfs for some options: each kernel is prepared
    once per session; a failure fails every test that needs that kernel. Each kernel's
    record (kernels.record) goes into the summary, a failed one's too."""
    prepared: dict[KernelKey, tuple[dict, pipeline.Prepared | HarnessError]] = {}
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def get(chosen: Options) -> pipeline.Prepared:
        pytestconfig.stash[KERNEL_USED] = True
        key: KernelKey = (chosen,)  # until the request is known (finding it may fail)
        try:
            request = pipeline.build_request(chosen)
        except HarnessError as exc:
            prepared.setdefault(key, (kernel_records.record(chosen, None, error=exc), exc))
        else:
            key = (request, chosen.transport)
            if key not in prepared:
                with capture.global_and_fixture_disabled() if capture else nullcontext():
                    prepared[key] = _prepare(chosen, request)  # its progress shown, not captured
        record, found = prepared[key]
        pytestconfig.stash.setdefault(KERNELS, {})[record["id"]] = record
        pytestconfig.stash.setdefault(KERNEL_IDS, {})[chosen] = record["id"]
        # Raised outside an except clause: the report then starts with our message, not
        # with the harness error's traceback ("During handling of the above exception...").
        if isinstance(found, UsageError):  # the harness was misused: no commit is to blame
            pytest.exit(f"pte-harness usage error: {found}", returncode=pytest.ExitCode.USAGE_ERROR)
        if isinstance(found, HarnessError):
            pytest.fail(f"kernel could not be prepared ({found.kind} error, exit {found.status}): "
                        f"{found}", pytrace=False)
        return found

    return get


def _prepare(chosen: Options, request: build.BuildRequest
             ) -> tuple[dict, pipeline.Prepared | HarnessError]:
    """Build (or reuse) the kernel, then its initramfs: the kernel's record and the result,
    or the error that stopped it (one making the initramfs leaves the kernel's record clean)."""
    start = time.monotonic()
    try:
        result = build.build(request)
    except HarnessError as exc:
        return kernel_records.record(chosen, request, error=exc,
                                     seconds=time.monotonic() - start), exc
    record = kernel_records.record(chosen, request, result)
    try:
        return record, pipeline.with_initramfs(chosen, result)
    except HarnessError as exc:
        return record, exc


@pytest.fixture(scope="session")
def kernel(pytestconfig: pytest.Config, harness_options: Options, results_dir: Path,
           kernels: Callable[[Options], pipeline.Prepared]) -> pipeline.Prepared:
    """The kernel of the session's options (the one the summary names)."""
    prepared = kernels(harness_options)
    shutil.copyfile(prepared.build.config, results_dir / "kernel.config")
    kernel_id = pytestconfig.stash[KERNEL_IDS][harness_options]
    pytestconfig.stash[KERNELS][kernel_id]["config"] = str(results_dir / "kernel.config")
    return prepared


GUEST_MARKER_KEYS = ("cpus", "numa", "hotplug", "memory", "kconfig", "append")


def guest_options(node: pytest.Item, chosen: Options) -> Options:
    """The session's options with a test's ``@pytest.mark.guest(...)`` applied: cpus, numa,
    hotplug, memory and append replace the session's; kconfig (a fragment name, or a list
    of them) adds fragments, so the test gets its own kernel, built once per session."""
    marker = node.get_closest_marker("guest")
    if marker is None:
        return chosen
    unknown = sorted(set(marker.kwargs) - set(GUEST_MARKER_KEYS))
    if marker.args or unknown:
        raise UsageError(f"{node.nodeid}: @pytest.mark.guest takes keywords "
                         f"{', '.join(GUEST_MARKER_KEYS)}; got {list(marker.args) + unknown}")
    values = dict(marker.kwargs)
    if "kconfig" in values:
        extra = values["kconfig"]
        values["kconfig"] = chosen.kconfig + ((extra,) if isinstance(extra, str) else tuple(extra))
    return replace(chosen, **values)


def _safe(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


@pytest.fixture
def boot(request: pytest.FixtureRequest, harness_options: Options, results_dir: Path,
         kernels: Callable[[Options], pipeline.Prepared]) -> Iterator[Callable[..., Session]]:
    """Factory: ``boot(append="...")`` boots a fresh guest for this test, shaped by the
    test's ``@pytest.mark.guest(...)`` if it has one (see ``guest_options``)."""
    sessions = request.node.stash.setdefault(SESSIONS, [])
    failures = request.config.stash.setdefault(BOOT_FAILURES, {})
    test_dir = results_dir / _safe(request.node.nodeid)
    marker_error = None
    try:
        chosen = guest_options(request.node, harness_options)
    except UsageError as exc:
        marker_error = str(exc)
    if marker_error is not None:
        pytest.fail(marker_error, pytrace=False)
    try:
        kernel = (request.getfixturevalue("kernel") if chosen == harness_options
                  else kernels(chosen))
    finally:  # the test's kernel, a failed one's too
        kernel_id = request.config.stash.get(KERNEL_IDS, {}).get(chosen)
        if kernel_id:
            request.node.stash[TEST_KERNEL] = kernel_id

    def start(append: str = "") -> Session:
        if (chosen, append) in failures:
            pytest.fail(f"an earlier boot with the same arguments failed: "
                        f"{failures[chosen, append]}", pytrace=False)
        run_dir = test_dir / f"boot{len(sessions)}"
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            session = pipeline.boot(kernel, chosen, run_dir, append)
        except UsageError as exc:  # QEMU missing, say: the harness, not the kernel
            pytest.exit(f"pte-harness usage error: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
        except (BootError, KernelCrash) as exc:  # boots that fail once fail again
            failures[chosen, append] = exc
            raise
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


@pytest.fixture
def guest(boot: Callable[..., Session]) -> Session:
    """A freshly booted guest with the default kernel command line."""
    return boot()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, object]:
    """Measured figures of this test: reported in JUnit properties and the JSON summary."""
    return request.node.stash.setdefault(FIGURES, {})


class Recorder:
    """Each test's outcome, seconds, figures and consoles for the JSON summary (per run)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: dict[str, TestResult] = {}
        self.crashed: set[str] = set()  # tests whose guest crashed (KernelCrash raised)
        self.finished: set[str] = set()  # tests whose teardown was reported
        self.kernels: dict[str, str] = {}  # test -> the id of its kernel
        self.excerpts: dict[str, str] = {}  # test -> its kernel log's report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)
        if report.when == "teardown":
            write_summary(self.config, None)

    def _record(self, report: pytest.TestReport) -> None:
        entry = self.results.setdefault(report.nodeid, TestResult())
        entry.seconds = round(entry.seconds + report.duration, 2)
        entry.kernel = self.kernels.get(report.nodeid, entry.kernel)
        if report.when == "teardown":
            self.finished.add(report.nodeid)
        if report.failed:
            if report.nodeid in self.crashed:
                entry.outcome = Outcome.CRASHED
            elif entry.outcome != Outcome.CRASHED:
                entry.outcome = Outcome.FAILED if report.when == "call" else Outcome.ERROR
            if not entry.message:
                entry.message = _first_error_line(str(report.longrepr) if report.longrepr else "")
            entry.excerpt = entry.excerpt or self.excerpts.get(report.nodeid, "")
        elif report.skipped and entry.outcome == Outcome.PASSED:
            entry.outcome = Outcome.SKIPPED
        props = {name: str(value) for name, value in report.user_properties}
        entry.figures.update({k: json.loads(v) for k, v in props.items()
                              if not k.startswith(("console", "transport", MAP_PREFIX))})
        entry.direct_maps.update({k[len(MAP_PREFIX):]: json.loads(v) for k, v in props.items()
                                  if k.startswith(MAP_PREFIX)})
        entry.consoles = [v for k, v in props.items() if k.startswith("console")] or entry.consoles
        entry.transports = ([v for k, v in props.items() if k.startswith("transport")]
                            or entry.transports)


RECORDER = pytest.StashKey[Recorder]()
MAP_PREFIX = "direct_map:"  # user property: one direct-map snapshot (see ptecache.ptm)


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("E "):
            return line[1:].strip()[:300]
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    write_summary(session.config, int(exitstatus))


def write_summary(config: pytest.Config, exitstatus: int | None) -> None:
    """Write results/summary.json (atomically) when kernel tests ran: after each test with
    ``finished`` false, so a run killed half-way leaves what it had, and at the end."""
    if not config.stash.get(KERNEL_USED, False):
        return
    results = Path(results_option(config) or "results").resolve()
    recorder = config.stash[RECORDER]
    if exitstatus is not None:  # the run ends: a test that never reached its teardown was cut off
        for nodeid, entry in recorder.results.items():
            if nodeid not in recorder.finished:
                entry.outcome = Outcome.INTERRUPTED
                entry.message = entry.message or "the run was interrupted while this test ran"
    records = config.stash.get(KERNELS, {})
    session_kernel = config.stash.get(KERNEL_IDS, {}).get(options_from_config(config))
    Summary(kernel=records.get(session_kernel or ""),
            transport=options_from_config(config).transport,
            finished=exitstatus is not None, exit_status=exitstatus,
            tests=recorder.results, kernels=records).write(results / "summary.json")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                               call: pytest.CallInfo) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    recorder = item.config.stash[RECORDER]
    if TEST_KERNEL in item.stash:
        recorder.kernels[item.nodeid] = item.stash[TEST_KERNEL]
    crashed = call.excinfo.value if call.excinfo is not None else None
    if isinstance(crashed, KernelCrash):
        recorder.crashed.add(item.nodeid)
        recorder.excerpts.setdefault(item.nodeid, crashed.detail or str(crashed))
    if report.when != "call":
        return
    sessions = item.stash.get(SESSIONS, [])
    for index, session in enumerate(sessions):
        report.user_properties.append((f"console{index}", str(session.config.console_log)))
        report.user_properties.append((f"transport{index}", session.transport))
        for label, runs in session.direct_maps.items():
            append = session.config.append
            name = f"{MAP_PREFIX}boot{index}" + (f" ({append})" if append else "")
            report.user_properties.append((f"{name} {label}", json.dumps(runs)))
        findings = session.findings()
        if findings:
            text = crash.report(findings)
            report.sections.append((f"kernel log reports (boot {index})", text))
            recorder.excerpts.setdefault(item.nodeid, text)
            if report.passed:
                report.outcome = "failed"
                report.longrepr = (f"kernel log of boot {index} shows {findings[0].summary()}\n"
                                   f"console: {session.config.console_log}\n\n{text}")
        if report.failed:
            report.sections.append((f"console tail (boot {index})", session.console_tail(40)))
    for name, value in item.stash.get(FIGURES, {}).items():
        report.user_properties.append((name, json.dumps(value)))
