"""The console protocol against a real local shell (dash or busybox sh on a pty)."""

import shutil
import signal

import pexpect
import pytest

from harness.errors import GuestTimeout
from harness.guest.serial import Guest, GuestGone
from harness.guest.image import READY


# the tty as the guest's init sets ttyS1 up: no echo, no CR added to output
TTY_LIKE_GUEST = f"stty -echo -onlcr; echo {READY}; exec sh"


def spawn(argv: list[str], **kwargs) -> pexpect.spawn:
    """A local shell on a pty, written to at once as the harness writes to a guest's ttyS1
    (fdspawn has no delay before a send; pexpect's pty spawn waits 0.05 s by default)."""
    child = pexpect.spawn(argv[0], argv[1:], **kwargs)
    child.delaybeforesend = None
    return child


def close(child: pexpect.spawn) -> None:
    """Kill the shell and reap it, then close the pty: no pause for a shell that might
    still be exiting (pexpect's close waits 0.1 s, then terminates with more pauses)."""
    child.kill(signal.SIGKILL)
    child.wait()
    child.ptyproc.delayafterclose = 0
    child.close(force=True)


@pytest.fixture(params=["sh", "busybox"])
def guest(request):
    if request.param == "busybox":
        argv = ["/bin/busybox", "sh", "-c", TTY_LIKE_GUEST]
    else:
        argv = [shutil.which("sh"), "-c", TTY_LIKE_GUEST]
    child = spawn(argv, env={"PS1": "$ ", "PATH": "/usr/bin:/bin"})
    g = Guest(child, context=lambda: "kernel log tail")
    g.wait_ready(10)
    yield g
    close(child)


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
    child = spawn(["/bin/sh", "-c", f"echo {READY}; exec sh"])
    g = Guest(child)
    g.wait_ready(10)
    with pytest.raises(GuestGone, match="control channel closed"):
        g.run("kill -9 $$; sleep 5")


@pytest.mark.parametrize("shell", ["sh", "busybox sh"])
def test_put_get_byte_identical(shell, tmp_path):
    """Over a tty without echo, as the guest's init sets up ttyS1."""
    import os
    from harness.guest import serial as guest_module
    argv = shell.split() + ["-c", TTY_LIKE_GUEST]
    child = spawn([shutil.which(argv[0]), *argv[1:]], env={"PATH": "/usr/bin:/bin"})
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
    close(child)


def test_megabytes_of_output_arrive_whole_and_fast(guest):
    import time
    start = time.monotonic()
    result = guest.run("head -c 2000000 /dev/zero | tr '\\0' a; echo; echo tail", timeout=60)
    assert result.output == "a" * 2000000 + "\ntail\n"
    assert time.monotonic() - start < 10  # linear: the markers are searched in a window


def test_output_is_byte_exact(guest):
    """Invalid UTF-8 and CRs pass unchanged (issue 17, fault 11: they became U+FFFD and
    vanished); ``output`` is the decoded view."""
    result = guest.run("printf 'a\\377b\\rc\\n'; printf '\\r\\n'")
    assert result.data == b"a\xffb\rc\n\r\n"
    assert result.output == "a\ufffdb\rc\n\r\n"
    assert guest.run("echo after").data == b"after\n"  # the markers still frame each command


def test_a_text_channel_is_refused():
    child = spawn(["/bin/sh", "-c", "exec sh"], encoding="utf-8")
    with pytest.raises(ValueError, match="read as bytes"):
        Guest(child)
    close(child)


def test_output_is_handed_on_as_it_arrives(guest, tmp_path):
    """A sink gets the output while the command still runs (issue 17, fault 10: exec wrote
    it all at the end), and the end marker never reaches it: the command waits for a file
    that the sink makes when "first" reaches it."""
    flag = tmp_path / "first-arrived"
    arrived: list[bytes] = []

    def sink(piece: bytes) -> None:
        arrived.append(piece)
        if b"first" in b"".join(arrived):
            flag.touch()

    result = guest.run(f"echo first; while [ ! -e {flag} ]; do sleep 0.01; done; echo second",
                       timeout=10, sink=sink)
    assert b"".join(arrived) == result.data == b"first\nsecond\n"


def test_a_timeout_hands_on_what_arrived(guest):
    pieces: list[bytes] = []
    with pytest.raises(GuestTimeout, match="timed out after 0.3s") as info:
        guest.run("echo partial; printf 'no newline'; sleep 5", timeout=0.3, sink=pieces.append)
    assert b"".join(pieces) == b"partial\nno newline"
    assert "partial\nno newline" in str(info.value)


def test_output_that_never_stops_still_times_out(guest):
    import time
    start = time.monotonic()
    with pytest.raises(GuestTimeout):
        guest.run("yes", timeout=0.3, sink=lambda piece: None)
    assert time.monotonic() - start < 5


def test_only_a_possible_start_of_the_end_line_is_held_back():
    from harness.guest.serial import may_begin
    end = b"PTEH0123456789ab-end-"
    assert may_begin(b"output", end) == 6
    assert may_begin(b"outputPTEH01", end) == 6
    assert may_begin(b"outputPTEH0123456789ab-end-12\r", end) == 6
    assert may_begin(b"outputPTEH0123456789ab-end-1x", end) == 29  # not the end line
    assert may_begin(b"PTEH0123456789ab-end-\n", end) == 22
