"""The ssh transport's client against a fake sshd (a paramiko server running local ``sh``)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest

from harness.guest import ssh
from harness.errors import BootError, GuestTimeout
from harness.guest.serial import GuestGone
from harness.guest.sshkeys import ClientKey, HostKey, new_client_key


def host_key_of(key: ClientKey) -> HostKey:
    return HostKey(Path("/nonexistent"), key.public_line)


def kill_group(process: subprocess.Popen) -> None:
    """Kill the process group a command was started in (its children too), if it is there:
    the command may end, and its group with it, at any moment."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class FakeSshd(paramiko.ServerInterface):
    """Listens on 127.0.0.1; drops the first ``drop`` connections (or all with drop=-1),
    like QEMU's forward while the guest's sshd is not up; runs exec requests with sh."""

    def __init__(self, host: ClientKey, authorized: ClientKey, drop: int = 0) -> None:
        self.host, self.authorized, self.drop = host, authorized, drop
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.first_output: list[float] = []  # when each exec sent its first byte
        self.commands: list[str] = []
        self.transports: list[paramiko.Transport] = []
        self.processes: list[subprocess.Popen] = []
        self.stopping = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.drop < 0 or self.accepted <= self.drop:
                conn.close()
                continue
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host.pkey)
            self.transports.append(transport)
            try:
                transport.start_server(server=self)
            except (paramiko.SSHException, EOFError, OSError):  # the client went away
                transport.close()  # mid-negotiation, or this server was closed

    def close(self) -> None:
        self.stopping = True
        self.sock.close()
        for transport in self.transports:
            transport.close()
        for process in self.processes:  # a command whose client went away, like sshd's
            kill_group(process)
            process.wait()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key == self.authorized.pkey
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=self._exec, args=(channel, command.decode()), daemon=True).start()
        return True

    def output_files_left(self) -> list[str]:
        files = [f for command in self.commands
                 for f in re.findall(r">(/tmp/\.pte-harness-out\.\w+)", command)]
        return [f for f in files if Path(f).exists()]

    def _exec(self, channel: paramiko.Channel, command: str) -> None:
        self.commands.append(command)
        process = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        self.processes.append(process)

        def feed() -> None:
            try:
                while data := channel.recv(65536):
                    process.stdin.write(data)
                process.stdin.close()
            except OSError:  # the client or the command went away
                pass

        def errors() -> None:
            try:
                while data := process.stderr.read1(65536):
                    channel.sendall_stderr(data)
            except OSError:
                pass

        threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=errors, daemon=True)]
        for thread in threads:
            thread.start()
        first = True
        try:
            while data := process.stdout.read1(65536):
                if first:
                    self.first_output.append(time.monotonic())
                    first = False
                channel.sendall(data)
            threads[1].join()
            status = process.wait()
            channel.send_exit_status(status if status >= 0 else 128 - status)
        except OSError:  # the client went away (a timeout test closes the connection)
            kill_group(process)
            process.wait()
        channel.close()


@pytest.fixture
def keys():
    return new_client_key(), new_client_key()  # host, client


@pytest.fixture
def sshd(keys):
    server = FakeSshd(*keys)
    yield server
    server.close()


@pytest.fixture
def guest(sshd, keys):
    g = ssh.SshGuest.connect(sshd.port, host_key_of(keys[0]), keys[1], timeout=10,
                             context=lambda: "kernel log tail")
    yield g
    g.close()


def test_status_output_and_stderr_in_one_stream(guest):
    result = guest.run("echo out; echo err >&2; exit 7")
    assert (result.status, result.output) == (7, "out\nerr\n")
    assert guest.run("true").status == 0


def test_stdin_is_dev_null_and_cwd_is_root(guest):
    result = guest.run("cat; pwd")
    assert result.output == "/\n"


def test_signal_status_like_the_shell(guest):
    assert guest.run("sh -c 'kill -9 $$'").status == 137  # as the serial shell reports it


def test_put_get_byte_identical(guest, tmp_path):
    data = os.urandom(300_000) + bytes(range(256))
    (tmp_path / "a").write_bytes(data)
    guest.put(tmp_path / "a", str(tmp_path / "remote"))
    guest.get(str(tmp_path / "remote"), tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == data
    with pytest.raises(Exception, match="failed"):
        guest.get(str(tmp_path / "missing"), tmp_path / "c")


def test_command_timeout_breaks_guest(guest):
    start = time.monotonic()
    with pytest.raises(GuestTimeout, match=r"timed out after 0\.2s") as info:
        guest.run("echo so far; sleep 10", timeout=0.2)
    assert time.monotonic() - start < 5
    assert "kernel log tail" in str(info.value)
    assert "--- command output (tail) ---\nso far\n" in str(info.value)  # read from the guest
    with pytest.raises(Exception, match="broken"):
        guest.run("true")


def test_lost_connection_is_guest_gone(guest, sshd):
    running = threading.Event()  # the server goes away once the command runs
    serve = sshd._exec

    def exec_and_tell(channel: paramiko.Channel, command: str) -> None:
        if "sleep 10" in command:
            running.set()
        serve(channel, command)

    def close_while_running() -> None:
        if running.wait(10):
            time.sleep(0.2)  # the exec request acknowledged: not "failed starting"
            sshd.close()

    sshd._exec = exec_and_tell
    threading.Thread(target=close_while_running, daemon=True).start()
    with pytest.raises(GuestGone, match="closed"):
        guest.run("sleep 10", timeout=20)


def test_retries_while_sshd_comes_up(keys):
    server = FakeSshd(*keys, drop=3)
    try:
        g = ssh.SshGuest.connect(server.port, host_key_of(keys[0]), keys[1], timeout=20)
        assert g.run("echo hi").output == "hi\n"
        assert server.accepted == 4
        g.close()
    finally:
        server.close()


def test_sshd_never_up_times_out_within_deadline(keys):
    server = FakeSshd(*keys, drop=-1)
    try:
        start = time.monotonic()
        with pytest.raises(GuestTimeout) as info:
            ssh.SshGuest.connect(server.port, host_key_of(keys[0]), keys[1], timeout=0.3,
                                 context=lambda: "kernel log tail")
        assert 0.3 <= time.monotonic() - start < 1.3
        text = str(info.value)
        assert "waiting for the guest's sshd on [127.0.0.1]:" in text
        assert "last error" in text and "kernel log tail" in text
        assert server.accepted > 1
    finally:
        server.close()


def test_wrong_host_key_refused_at_once(sshd, keys):
    start = time.monotonic()
    with pytest.raises(ssh.HostKeyMismatch, match="refused"):
        ssh.SshGuest.connect(sshd.port, host_key_of(new_client_key()), keys[1], timeout=10)
    assert time.monotonic() - start < 5
    assert sshd.accepted == 1  # not retried


def test_client_key_refused(sshd, keys):
    with pytest.raises(BootError, match="refused the harness's client key"):
        ssh.SshGuest.connect(sshd.port, host_key_of(keys[0]), new_client_key(), timeout=10)


def test_guest_gone_while_connecting(keys):
    with pytest.raises(GuestGone, match="went away"):
        ssh.SshGuest.connect(1, host_key_of(keys[0]), keys[1], timeout=10, alive=lambda: False)


def test_no_agent_no_key_files_pinned_host(sshd, keys, monkeypatch):
    seen = {}
    original = paramiko.SSHClient.connect

    def connect(self, *args, **kwargs):
        seen.update(kwargs, policy=type(self._policy).__name__,
                    known=list(self.get_host_keys().keys()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(paramiko.SSHClient, "connect", connect)
    ssh.SshGuest.connect(sshd.port, host_key_of(keys[0]), keys[1], timeout=10).close()
    assert seen["look_for_keys"] is False and seen["allow_agent"] is False
    assert seen["policy"] == "RejectPolicy"
    assert seen["known"] == [f"[127.0.0.1]:{sshd.port}"]


def test_wrap_keeps_serial_semantics():
    wrapped = ssh.wrap("echo a # comment", "/tmp/out")
    assert "( echo a # comment\n) </dev/null >/tmp/out 2>&1;" in wrapped
    assert "export PATH=/scripts:" in wrapped and "cd /;" in wrapped
    assert ssh.output_file() != ssh.output_file()


def test_output_sent_only_when_the_command_ends(guest, sshd):
    """Nothing crosses the connection while a command runs (a quiet guest for readings)."""
    start = time.monotonic()
    result = guest.run("echo early; sleep 0.1; echo late")
    assert result.output == "early\nlate\n"
    assert sshd.first_output[-1] - start >= 0.1
    assert not sshd.output_files_left()


def test_output_is_byte_exact_and_handed_on(guest):
    """Invalid UTF-8 and CRs pass unchanged (issue 17, fault 11), to the result's ``data``
    and to a sink (exec's stdout); ``output`` is the decoded view."""
    pieces: list[bytes] = []
    result = guest.run("printf 'a\\377b\\rc\\n'", sink=pieces.append)
    assert result.data == b"".join(pieces) == b"a\xffb\rc\n"
    assert result.output == "a\ufffdb\rc\n"


def test_a_timeout_hands_on_what_the_command_wrote(guest):
    pieces: list[bytes] = []
    with pytest.raises(GuestTimeout):
        guest.run("echo so far; sleep 10", timeout=0.2, sink=pieces.append)
    assert b"".join(pieces) == b"so far\n"
