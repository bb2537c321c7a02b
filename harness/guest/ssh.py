"""Stage 7 over ssh: run commands in the guest through its dropbear (paramiko client).

The guest's host key is pinned (RejectPolicy plus the known key for ``[127.0.0.1]:PORT``);
no agent, no key files. ``connect`` retries under one deadline while the guest boots (QEMU
accepts on the forward port at once and drops the connection while nothing listens in the
guest). Each command runs as ``( CMD ) </dev/null`` in the guest's PATH, from /, with stdout
and stderr in one stream, like the serial shell.

The command's output is kept in a guest file until it ends and only then sent: while a
command runs nothing crosses the network, so neither sshd nor the network stack allocates
or frees pages in the guest between two readings a test takes (streamed output woke dropbear
and the virtio-net queues mid-command, and a page freed there made the shrinker count and
the cache counter differ by one).
"""

from __future__ import annotations

import logging
import re
import secrets
import shlex
import socket
import time
from pathlib import Path
from typing import Callable, TextIO

import paramiko

from harness.errors import BootError, GuestTimeout, HarnessError
from harness.guest.serial import CommandResult, GuestGone, Sink
from harness.guest.image import GUEST_PATH
from harness.guest.sshkeys import ClientKey, HostKey

USER = "root"
HOST = "127.0.0.1"
ATTEMPT_TIMEOUT = 5.0  # one connection attempt once the banner comes (key exchange, auth)
PROBE_TIMEOUT = 0.5  # for the first bytes of the banner (see probe)
FAST_PROBES = 20  # probes before PROBE_TIMEOUT grows (a guest too slow for it)
RETRY_PAUSE = 0.05
KEEPALIVE = 15  # seconds between keepalives on an idle connection (each wakes the guest)
CHUNK = 1 << 16
NO_STATUS = 255  # a command whose shell was killed has no exit status (like OpenSSH's ssh)


# paramiko logs each refused attempt while the guest boots with a traceback; the errors
# the harness raises say what matters. Records still reach handlers the user configures.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class HostKeyMismatch(BootError):
    """The guest presented a host key other than the one generated for its image."""


def known_host(port: int) -> str:
    """The known_hosts name of the forward (OpenSSH's form for a non-default port)."""
    return f"[{HOST}]:{port}"


def new_client(host_key: HostKey, port: int) -> paramiko.SSHClient:
    """A client that accepts exactly ``host_key`` for the forward and nothing else."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.get_host_keys().add(known_host(port), host_key.pkey().get_name(), host_key.pkey())
    return client


def probe_timeout(attempt: int) -> float:
    """Short while the guest boots; growing after FAST_PROBES for a very slow guest."""
    return min(ATTEMPT_TIMEOUT, PROBE_TIMEOUT * max(1, attempt - FAST_PROBES + 1))


def probe(port: int, timeout: float) -> tuple[socket.socket | None, str]:
    """A TCP connection to the forward on which the guest's banner has begun, or None and
    why not. QEMU accepts at once whatever the guest does: the connection is closed when
    nothing listens in the guest yet, and silent when the guest's network is not up (the
    SYN QEMU forwards is lost), so wait briefly for the first byte and try again."""
    try:
        sock = socket.create_connection((HOST, port), timeout=timeout)
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    try:
        sock.settimeout(timeout)
        if sock.recv(1, socket.MSG_PEEK):
            sock.settimeout(None)
            return sock, ""
        why = "connection closed before the banner (nothing listens in the guest yet)"
    except socket.timeout:
        why = f"no banner within {timeout:.1f}s (the guest's network is not up yet?)"
    except OSError as exc:
        why = f"{type(exc).__name__}: {exc}"
    sock.close()
    return None, why


def output_file() -> str:
    """A fresh guest path for one command's output."""
    return f"/tmp/.pte-harness-out.{secrets.token_hex(6)}"


def wrap(command: str, output: str) -> str:
    """What the guest's shell runs for ``command``: same PATH, cwd and stdin as serial;
    the output (kept in the file ``output``) sent when the command has ended, then its status."""
    return (f"export PATH={GUEST_PATH}; cd /; "
            f"( {command}\n) </dev/null >{output} 2>&1; _pteh_status=$?; "
            f"cat {output}; rm -f {output}; exit $_pteh_status")


class SshGuest:
    """A connected ssh client with the serial Guest's interface: run, put, get."""

    def __init__(self, client: paramiko.SSHClient, port: int,
                 context: Callable[[], str] = lambda: "", log: TextIO | None = None) -> None:
        self.client = client
        self.port = port
        self.context = context  # kernel-log tail for error messages
        self.log = log
        self.broken: str | None = None

    @classmethod
    def connect(cls, port: int, host_key: HostKey, client_key: ClientKey, timeout: float,
                alive: Callable[[], bool] = lambda: True,
                context: Callable[[], str] = lambda: "", log: TextIO | None = None) -> SshGuest:
        """Connect within ``timeout`` seconds, retrying while the guest's sshd is not up.

        A wrong host key or a refused client key ends it at once (HostKeyMismatch,
        BootError); ``alive()`` turning false (QEMU exited) raises GuestGone; the deadline
        raises GuestTimeout with the last error and the kernel-log tail."""
        start = time.monotonic()
        deadline = start + timeout
        attempts, last, logged = 0, "no attempt made", ""
        while True:
            if not alive():
                raise GuestGone(f"the guest went away while connecting to its sshd "
                                f"({known_host(port)}; last error: {last})", _tail(context))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GuestTimeout(
                    f"timed out after {timeout:g}s waiting for the guest's sshd on "
                    f"{known_host(port)} ({attempts} attempts; last error: {last})", _tail(context))
            attempts += 1
            sock, why = probe(port, min(probe_timeout(attempts), remaining))
            if log is not None and (why or "banner begun") != logged:
                logged = why or "banner begun"  # the same outcome again is not logged
                log.write(f"# attempt {attempts} at {time.monotonic() - start:.2f}s: {logged}\n")
            if sock is None:
                last = why
                time.sleep(min(RETRY_PAUSE, max(0.0, deadline - time.monotonic())))
                continue
            client = new_client(host_key, port)
            wait = max(0.1, min(ATTEMPT_TIMEOUT, deadline - time.monotonic()))
            try:
                client.connect(HOST, port=port, username=USER, pkey=client_key.pkey, sock=sock,
                               look_for_keys=False, allow_agent=False, timeout=wait,
                               banner_timeout=wait, auth_timeout=wait, channel_timeout=wait)
            except paramiko.BadHostKeyException as exc:
                client.close()
                sock.close()
                raise HostKeyMismatch(
                    f"the guest on {known_host(port)} presented host key "
                    f"{exc.key.get_name()} {exc.key.fingerprint}, not the key pinned for this "
                    f"image ({exc.expected_key.fingerprint}): refused", _tail(context)) from None
            except paramiko.AuthenticationException as exc:
                client.close()
                sock.close()
                raise BootError(f"the guest's sshd on {known_host(port)} refused the "
                                f"harness's client key: {exc}", _tail(context)) from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                client.close()
                sock.close()
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                time.sleep(min(RETRY_PAUSE, max(0.0, deadline - time.monotonic())))
                continue
            transport = client.get_transport()
            assert transport is not None
            transport.set_keepalive(KEEPALIVE)
            guest = cls(client, port, context, log)
            guest._log(f"# connected to {known_host(port)} after {attempts} attempt(s), "
                       f"{time.monotonic() - start:.2f}s\n")
            return guest

    def run(self, command: str, timeout: float = 60.0, sink: Sink | None = None) -> CommandResult:
        """Run ``command``; its output (byte for byte) goes to ``sink`` as it arrives (after
        the command ends, see above; on a timeout, what it had written) and into the result."""
        start = time.monotonic()
        output, status = self._exec(wrap(command, output_file()), command, timeout, sink=sink)
        text = output.decode(errors="replace")
        self._log(f"$ {command}\n{text}{'' if text.endswith(chr(10)) or not text else chr(10)}"
                  f"# exit {status}\n")
        return CommandResult(command, status, text, time.monotonic() - start, output)

    def put(self, local: Path, remote: str, timeout: float = 60.0) -> None:
        """Copy a host file into the guest (``cat > remote``), byte for byte."""
        data = Path(local).read_bytes()
        output, status = self._exec(f"export PATH={GUEST_PATH}; cat > {shlex.quote(remote)}",
                                    f"put {remote}", timeout, stdin=data)
        self._log(f"# put {local} -> {remote}: {len(data)} bytes, exit {status}\n")
        if status != 0:
            raise HarnessError(f"put {local} -> guest {remote} failed (exit {status})",
                               output.decode(errors="replace"))

    def get(self, remote: str, local: Path, timeout: float = 60.0) -> None:
        """Copy a guest file to the host (``cat remote``), byte for byte."""
        command = f"cat {shlex.quote(remote)}"
        output, status = self._exec(f"export PATH={GUEST_PATH}; {command} 2>/dev/null",
                                    f"get {remote}", timeout)
        self._log(f"# get {remote} -> {local}: {len(output)} bytes, exit {status}\n")
        if status != 0:
            raise HarnessError(f"get guest {remote} -> {local} failed (exit {status})")
        Path(local).write_bytes(output)

    def close(self) -> None:
        self.client.close()

    def _exec(self, remote: str, what: str, timeout: float, stdin: bytes | None = None,
              sink: Sink | None = None) -> tuple[bytes, int]:
        """Run ``remote`` on a new channel: (stdout+stderr, exit status); each piece read
        also goes to ``sink``."""
        hand_on = sink or (lambda piece: None)
        if self.broken:
            raise HarnessError(f"guest is broken and cannot be reused: {self.broken}")
        deadline = time.monotonic() + timeout
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise self._gone(f"the ssh connection was closed before {what!r}")
        try:
            channel = transport.open_session(timeout=min(timeout, ATTEMPT_TIMEOUT))
            channel.settimeout(max(0.1, deadline - time.monotonic()))
            channel.set_combine_stderr(True)
            channel.exec_command(remote)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
        except socket.timeout:
            self.broken = f"timed out after {timeout:g}s starting {what!r}"
            raise GuestTimeout(self.broken, self._tails([])) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._gone(f"the ssh connection failed starting {what!r}: {exc}") from None
        chunks: list[bytes] = []
        with channel:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if not chunks:
                        chunks = self._partial_output(remote)
                        for piece in chunks:
                            hand_on(piece)
                    self.broken = f"timed out after {timeout:g}s waiting for {what!r} to finish"
                    raise GuestTimeout(self.broken, self._tails(chunks))
                channel.settimeout(min(remaining, 0.5))
                try:
                    data = channel.recv(CHUNK)
                except socket.timeout:
                    if not transport.is_active():
                        raise self._gone(f"the ssh connection closed while waiting for "
                                         f"{what!r}", chunks) from None
                    continue
                if not data:
                    break
                chunks.append(data)
                hand_on(data)
            if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                self.broken = f"timed out after {timeout:g}s waiting for {what!r} to finish"
                raise GuestTimeout(self.broken, self._tails(chunks))
            status = channel.exit_status
        if status < 0:
            if not transport.is_active():  # no exit status because the connection died
                raise self._gone(f"the ssh connection closed while waiting for {what!r}", chunks)
            status = NO_STATUS  # the guest's shell itself was killed (exit-signal)
        return b"".join(chunks), status

    def _partial_output(self, remote: str) -> list[bytes]:
        """What a timed-out command has written so far (best effort, on a new channel)."""
        match = re.search(r">(/tmp/\.pte-harness-out\.[0-9a-f]+) ", remote)
        if not match:
            return []
        try:
            output, _ = self._exec(f"cat {match.group(1)}", "reading the output so far", 3.0)
        except HarnessError:
            return []
        return [output]

    def _gone(self, message: str, chunks: list[bytes] | None = None) -> GuestGone:
        self.broken = message
        return GuestGone(message, self._tails(chunks or []))

    def _tails(self, chunks: list[bytes]) -> str:
        output = b"".join(chunks).decode(errors="replace")
        shell = "\n".join(output.splitlines()[-15:])
        return f"--- command output (tail) ---\n{shell}\n{_tail(self.context)}"

    def _log(self, text: str) -> None:
        if self.log is not None and not self.log.closed:
            self.log.write(text)
            self.log.flush()


def _tail(context: Callable[[], str]) -> str:
    return f"--- kernel log (tail) ---\n{context()}"
