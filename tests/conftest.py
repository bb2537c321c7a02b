"""Shared fixtures: unit tests get a private cache directory; no test leaves a process
running (QEMU, make, or anything else a test started)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.processes import descendants

DATA = Path(__file__).parent / "data"
UNIT = Path(__file__).parent / "unit"
PR_SET_CHILD_SUBREAPER = 36


def pytest_configure(config: pytest.Config) -> None:
    """Make this pytest the subreaper of what its tests start: a process orphaned by a
    test (QEMU whose harness died, say) becomes our child instead of init's, so the checks
    below see it."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``pytest tests/unit`` (only unit tests asked for, no ``-n`` given) runs on two
    pytest-xdist workers where there are two CPUs: the unit tests are small and many, and
    half of their time is waiting on local processes. Kernel and integration tests never
    run in parallel (one kernel build at a time); ``-n 0`` runs the unit tests serially."""
    if (not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput")
            or config.getoption("numprocesses", None) is not None
            or config.getoption("collectonly") or (os.cpu_count() or 1) < 2):
        return
    paths = [(config.invocation_params.dir / arg.split("::")[0]).resolve() for arg in config.args]
    if paths and all(path == UNIT or UNIT in path.parents for path in paths):
        config.option.numprocesses = 2
        config.option.dist = "load"


def leftovers(wait: float) -> dict[int, str]:
    """Descendants still running after up to ``wait`` seconds (a process being stopped
    gets that long); they are then killed, so that one leak is reported once."""
    deadline, empty = time.monotonic() + wait, 0
    while empty < 2:  # twice: one look can miss a process being forked
        left = descendants()
        empty = 0 if left else empty + 1
        if left and time.monotonic() > deadline:
            break
        if left:
            time.sleep(0.02)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


@pytest.fixture(autouse=True)
def _no_process_left(request: pytest.FixtureRequest):
    """A unit test ends with no process of its own still running. (Kernel and integration
    tests share booted guests across tests: checked once, at the end of the session.)"""
    yield
    if UNIT in request.node.path.parents:
        left = leftovers(wait=2.0)
        assert not left, f"processes left running by the test (now killed): {left}"


def ours(command: str) -> bool:
    """QEMU, make or the harness itself (not, say, a ``git gc`` that git detached)."""
    words = command.split()
    names = [Path(w).name for w in words[:3]]
    return any(n.startswith("qemu-system") or n == "make" or n == "pte-harness" for n in names) \
        or "harness.cli" in words[:4]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No QEMU, make or harness process outlives the session's fixtures; anything else
    left is reported (and killed) without failing the session."""
    left = leftovers(wait=5.0)
    if left:
        session.config.get_terminal_writer().line(
            f"processes left running by the tests (now killed): {left}", red=True)
    if any(ours(command) for command in left.values()):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private PTE_HARNESS_CACHE (and build lock: a unit test never waits for a real
    build elsewhere on the machine) for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("PTE_HARNESS_CACHE", str(path))
    monkeypatch.setenv("PTE_HARNESS_BUILD_LOCK", str(tmp_path / "build.lock"))
    return path


@pytest.fixture
def fake_tree(tmp_path: Path) -> Path:
    """A directory that looks like a kernel tree to the harness (no real kernel)."""
    tree = tmp_path / "linux"
    for directory in ("mm", "arch/x86", "scripts/kconfig"):
        (tree / directory).mkdir(parents=True)
    (tree / "Makefile").write_text("# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\n")
    (tree / "Kconfig").write_text("source \"arch/$(SRCARCH)/Kconfig\"\n")
    (tree / "arch" / "x86" / "Kconfig").write_text("config X86\n\tdef_bool y\n")
    (tree / "scripts" / "kconfig" / "Makefile").write_text("# kconfig\n")
    (tree / "mm" / "cache.c").write_text("int a;\nint b;\nint c;\nint d;\n")
    return tree

pytest_plugins = ["pytester"]
