"""The console protocol against a real local shell (dash or busybox sh on a pty)."""

import shutil

import pexpect
import pytest

from harness.errors import GuestTimeout
from harness.guest.serial import Guest, GuestGone
from harness.guest.image import READY


@pytest.fixture(params=["sh", "busybox"])
def guest(request):
    if request.param == "busybox":
        argv = ["/bin/busybox", "sh", "-c", f"echo {READY}; exec sh"]
    else:
        argv = [shutil.which("sh"), "-c", f"echo {READY}; exec sh"]
    child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", env={"PS1": "$ ", "PATH": "/usr/bin:/bin"})
    g = Guest(child, context=lambda: "kernel log tail")
    g.wait_ready(10)
    yield g
    child.close(force=True)


def test_status_and_output(guest):
    result = guest.run("echo hello; echo world")
    assert (result.status, result.output) == (0, "hello\nworld\n")
    assert guest.run("sh -c 'exit 7'").status == 7
    assert guest.run("exit 3").status == 3  # runs in a subshell: the shell survives
    assert guest.run("printf 'no newline'").output == "no newline"


def test_output_that_looks_like_a_marker(guest):
    result = guest.run("echo PTEH-end-0; echo 'quote''d'")
    assert result.output == "PTEH-end-0\nquoted\n"


def test_command_reading_stdin_does_not_eat_next_command(guest):
    assert guest.run("cat").output == ""
    assert guest.run("echo after").output == "after\n"


def test_large_output(guest):
    result = guest.run("seq 1 20000")
    assert result.output.splitlines()[-1] == "20000" and len(result.output.splitlines()) == 20000


def test_timeout_breaks_guest(guest):
    with pytest.raises(GuestTimeout) as info:
        guest.run("sleep 5", timeout=0.2)
    assert "kernel log tail" in str(info.value)
    with pytest.raises(Exception, match="broken"):
        guest.run("echo again")


def test_eof_is_guest_gone():
    child = pexpect.spawn("/bin/sh", ["-c", f"echo {READY}; exec sh"], encoding="utf-8")
    g = Guest(child)
    g.wait_ready(10)
    with pytest.raises(GuestGone, match="control channel closed"):
        g.run("kill -9 $$; sleep 5")


@pytest.mark.parametrize("shell", ["sh", "busybox sh"])
def test_put_get_byte_identical(shell, tmp_path):
    """Over a tty without echo, as the guest's init sets up ttyS1."""
    import os
    from harness.guest import serial as guest_module
    argv = shell.split() + ["-c", f"stty -echo -onlcr; echo {READY}; exec sh"]
    child = pexpect.spawn(shutil.which(argv[0]), argv[1:], encoding="utf-8",
                          env={"PATH": "/usr/bin:/bin"})
    guest = Guest(child)
    guest.wait_ready(10)
    data = os.urandom(guest_module.PUT_CHUNK * 2 + 1000) + bytes(range(256))
    (tmp_path / "a").write_bytes(data)
    guest.put(tmp_path / "a", str(tmp_path / "remote file"))
    guest.get(str(tmp_path / "remote file"), tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == data
    (tmp_path / "empty").write_bytes(b"")
    guest.put(tmp_path / "empty", str(tmp_path / "e"))
    assert (tmp_path / "e").read_bytes() == b""
    child.close(force=True)


def test_megabytes_of_output_arrive_whole_and_fast(guest):
    import time
    start = time.monotonic()
    result = guest.run("head -c 2000000 /dev/zero | tr '\\0' a; echo; echo tail", timeout=60)
    assert result.output == "a" * 2000000 + "\ntail\n"
    assert time.monotonic() - start < 10  # linear: the markers are searched in a window
