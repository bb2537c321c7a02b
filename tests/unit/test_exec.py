"""`pte-harness exec` against a local shell standing in for the guest (issue 17, faults 6, 10
and 11): output byte for byte and as it arrives, what arrived on a timeout, one harness per
run directory, and sockets of the harness's own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness import pipeline
from harness.errors import UsageError
from harness.guest import vm

# `exec` with the build and boot replaced by a local shell on a pty set up as the guest's
# ttyS1 (no echo, no CR added), driven by the real serial Guest
SCRIPT = """
import shutil, sys
import pexpect
from harness import cli, pipeline
from harness.guest.image import READY
from harness.guest.serial import Guest

class LocalSession:
    def __init__(self):
        self.child = pexpect.spawn(shutil.which("sh"),
                                   ["-c", f"stty -echo -onlcr; echo {READY}; exec sh"])
        self.child.delaybeforesend = None  # as fdspawn writes to ttyS1: at once
        self.guest = Guest(self.child)
        self.guest.wait_ready(10)
    def __enter__(self):
        return self
    def __exit__(self, *exc):  # no pexpect pauses: kill, reap, close
        self.child.kill(9)
        self.child.wait()
        self.child.ptyproc.delayafterclose = 0
        self.child.close(force=True)
    def run(self, command, timeout=None, sink=None):
        return self.guest.run(command, timeout, sink)
    def check(self):
        pass

pipeline.prepare = lambda options, programs=(): None
pipeline.boot = lambda prepared, options, run_dir=None, append="": LocalSession()
sys.exit(cli.main(["exec", "--run-dir", sys.argv[1], *sys.argv[2:]]))
"""


def exec_(run_dir: Path, *argv: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(run_dir), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def test_exec_writes_the_commands_bytes_unchanged(tmp_path):
    """Invalid UTF-8 and CRs reach stdout as the command wrote them (they became U+FFFD and
    were deleted), and the status is the command's."""
    process = exec_(tmp_path / "run", "--", "sh", "-c", r"printf 'a\377b\rc\n'; exit 3")
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out) == (3, b"a\xffb\rc\n"), err


def test_exec_streams_the_output_as_it_arrives(tmp_path):
    """The first line is on stdout while the command still runs (exec wrote all of it at
    the end): the command goes on only once this test has read it."""
    flag = tmp_path / "first-read"
    process = exec_(tmp_path / "run", "--", "sh", "-c",
                    f"echo first; while [ ! -e {flag} ]; do sleep 0.01; done; echo second")
    assert process.stdout is not None
    try:
        first = process.stdout.readline()
        flag.touch()
        rest = process.stdout.read()
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.communicate()
    assert (first, rest) == (b"first\n", b"second\n")


def test_exec_timeout_gives_what_arrived(tmp_path):
    process = exec_(tmp_path / "run", "--timeout", "0.3", "--",
                    "sh", "-c", "echo partial; printf 'no newline'; sleep 10")
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out) == (247, b"partial\nno newline")
    assert b"timed out after 0.3s" in err and str(tmp_path / "run").encode() in err


def test_a_run_directory_in_use_is_refused(tmp_path):
    """A second exec given the run directory of a running one is a usage error naming the
    holder (the two shared a socket and mixed their logs); once it is free, it is usable."""
    run_dir = tmp_path / "run"
    first = exec_(run_dir, "--", "sleep", "3")
    try:
        lock = run_dir / pipeline.RUN_LOCK
        deadline = time.monotonic() + 20
        while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        second = exec_(run_dir, "--", "true")
        out, err = second.communicate(timeout=30)
        assert second.returncode == 240 and out == b""
        assert (f"usage error: run directory {run_dir} is in use by another pte-harness "
                f"(pid {first.pid})").encode() in err
    finally:
        first.kill()
        first.communicate()
    again = exec_(run_dir, "--", "true")
    again.communicate(timeout=30)
    assert again.returncode == 0


def test_the_run_lock_follows_no_link(tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / pipeline.RUN_LOCK).symlink_to(precious)
    with pytest.raises(UsageError, match="cannot open the run directory.s lock"):
        with pipeline.claimed(run_dir):
            pass
    assert precious.read_text() == "keep me"


def test_sockets_are_the_harnesss_own_and_per_process(tmp_path, monkeypatch):
    """The control and QMP sockets are in this user's runtime directory (not predictable
    names in /tmp), and two harnesses with the same run directory get different ones."""
    xdg = Path(tempfile.mkdtemp(prefix="xdg-", dir="/tmp"))  # as short as /run/user/0
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    config = vm.VmConfig(tmp_path / "bzImage", tmp_path / "initrd", tmp_path / ("run" * 40),
                         accel="tcg", memory="1G", cpus=1, cpu="max", append="", numa=0,
                         hotplug="", wiring=vm.BARE)
    sockets = config.control_socket, config.qmp_socket
    shutil.rmtree(xdg)
    assert all(s.parent == xdg / "pte-harness" for s in sockets)
    assert all(len(str(s)) < 108 for s in sockets)
    monkeypatch.setattr(os, "getpid", lambda: 1)
    assert config.control_socket not in sockets
