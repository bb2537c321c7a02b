"""SIGTERM (what a CI job's timeout sends) unwinds like Ctrl-C: nothing is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.processes import gone
from tests.unit.test_plugin import FAKE_KERNEL

SCRIPT = """
import contextlib, subprocess, sys
from harness import cli, pipeline

class FakeSession:
    def __init__(self):
        self.child = subprocess.Popen(["sleep", "1000"])
        print("child", self.child.pid, flush=True)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.child.kill()
        self.child.wait()
    def run(self, command, timeout=None, sink=None):
        import time
        print("running", flush=True)
        time.sleep(1000)

pipeline.prepare = lambda options, programs=(): None
pipeline.boot = lambda prepared, options, run_dir=None, append="": FakeSession()
sys.exit(cli.main(["exec", "--run-dir", sys.argv[1], "--", "true"]))
"""


def test_sigterm_stops_the_guest_and_exits_interrupted(tmp_path: Path):
    errors = tmp_path / "stderr"
    with errors.open("w") as err:  # a file, not a pipe: a surviving child must not hold it
        process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "run")],
                                   stdout=subprocess.PIPE, stderr=err, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("child "), (line, errors.read_text())
    child = int(line.split()[1])
    try:
        assert process.stdout.readline() == "running\n"  # inside the session
        os.kill(process.pid, signal.SIGTERM)
        status = process.wait(timeout=20)
        assert gone(child, wait=5)  # the session's exit stopped it
        assert status == 130, errors.read_text()
    finally:
        if not gone(child):
            os.kill(child, signal.SIGKILL)


RUN_SCRIPT = """
import sys
from pathlib import Path
from harness import cli
from harness.suite import run

run.SUITE = Path(sys.argv[1])  # a fake kernel suite: a "built" kernel, one test that hangs
sys.exit(cli.main(["run", "--results", sys.argv[2]]))
"""

FAKE_SUITE = {
    "conftest.py": textwrap.dedent(FAKE_KERNEL),
    "test_fake.py": """
import time

def test_first(kernel):
    pass

def test_hangs(kernel):
    open(__file__ + ".started", "w").close()
    time.sleep(1000)
""",
}


def test_sigterm_during_run_keeps_summary_and_junit(tmp_path: Path):
    """A CI job's timeout (SIGTERM) during a test: 130, and summary.json and junit.xml
    say what ran, the cut-off test as interrupted (not passed)."""
    suite, results = tmp_path / "suite", tmp_path / "results"
    suite.mkdir()
    for name, text in FAKE_SUITE.items():
        (suite / name).write_text(text)
    process = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(suite), str(results)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (suite / "test_fake.py.started").exists() and process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 130, rest
    from harness.suite.summary import Outcome, Summary
    summary = Summary.read(results)
    assert summary is not None
    outcomes = {k.split("::")[-1]: v.outcome for k, v in summary.tests.items()}
    assert outcomes == {"test_first": Outcome.PASSED, "test_hangs": Outcome.INTERRUPTED}
    junit = (results / "junit.xml").read_text()
    assert 'name="test_first"' in junit
