"""Stage 7: run commands on the guest's control shell (kept apart from the kernel log).

Each command is framed by markers: ``echo <m>-begin; ( CMD ) </dev/null; echo <m>-end-$?``.
The marker is typed split in two quotes, so an echo of the typed line never matches it.
The channel is read as bytes and the shell's tty does not translate them (the guest's init
sets ``-onlcr``), so a command's output arrives byte for byte, and can be handed on as it
arrives (``sink``).
"""

from __future__ import annotations

import base64
import re
import secrets
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pexpect

from harness.errors import GuestTimeout, HarnessError
from harness.guest.image import READY


START_TIMEOUT = 30.0  # the shell echoes the begin marker at once when it is alive
PUT_CHUNK = 48 * 1024  # bytes of a file per put command (as base64 lines of 76 characters)
# Markers are looked for in the last SEARCH_WINDOW characters only (pexpect searched the whole
# buffer at every read: big outputs were quadratic). pexpect searches after every read of at
# most maxread (2000) characters, so a marker always lies inside the window when it is searched.
SEARCH_WINDOW = 4096
END_HOLD = 64  # longest start of the end line (marker, status, CR) that output is held for


class GuestGone(HarnessError):
    """The control channel closed: the guest rebooted, panicked or QEMU exited."""

    status = 245
    kind = "boot"


@dataclass(frozen=True)
class CommandResult:
    command: str
    status: int
    output: str  # ``data`` decoded (invalid UTF-8 replaced), for reading in tests
    seconds: float
    data: bytes = b""  # the command's output (stdout and stderr) exactly as it wrote it


Sink = Callable[[bytes], None]  # takes a command's output piece by piece, as it arrives


def may_begin(data: bytes, end_line: bytes) -> int:
    """Where the end of ``data`` that may be the start of the line ``end_line`` STATUS
    begins (``len(data)`` when none may)."""
    for start in range(max(0, len(data) - END_HOLD), len(data)):
        tail = data[start:]
        if end_line.startswith(tail) or (tail.startswith(end_line) and
                                         re.fullmatch(rb"\d*\r?", tail[len(end_line):])):
            return start
    return len(data)


class Guest:
    """A shell reached through a pexpect spawn in bytes mode (fdspawn on QEMU's socket, or
    a local sh)."""

    def __init__(self, channel: pexpect.spawnbase.SpawnBase,
                 context: Callable[[], str] = lambda: "") -> None:
        if channel.maxread > SEARCH_WINDOW // 2:  # each read must fall inside the window
            raise ValueError(f"pexpect maxread {channel.maxread} is too large for the "
                             f"search window ({SEARCH_WINDOW})")
        if channel.encoding is not None:  # decoding would replace bytes (no byte-exact output)
            raise ValueError("the control channel must be read as bytes (pexpect encoding=None)")
        self.channel = channel
        self.context = context  # kernel-log tail for error messages
        self.broken: str | None = None

    def wait_ready(self, timeout: float) -> float:
        """Wait for the guest init's ready line; return seconds waited."""
        start = time.monotonic()
        self._expect(READY, timeout, "the guest's ready line")
        return time.monotonic() - start

    def run(self, command: str, timeout: float = 60.0, sink: Sink | None = None) -> CommandResult:
        """Run ``command``; its output goes to ``sink`` as it arrives (up to the end marker;
        on a timeout, all that arrived) and into the result whole."""
        if self.broken:
            raise HarnessError(f"guest is broken and cannot be reused: {self.broken}")
        mark = "PTEH" + secrets.token_hex(6)
        typed_mark = f"'{mark[:6]}''{mark[6:]}'"
        start = time.monotonic()
        self.channel.send(f"echo {typed_mark}-begin; ( {command}\n) </dev/null; "
                          f"echo {typed_mark}-end-$?\n")
        self._expect(re.escape(mark) + r"-begin\r?\n", min(timeout, START_TIMEOUT),
                     f"the start of {command!r}")
        data, status = self._output(mark.encode() + b"-end-", start + timeout,
                                    f"{command!r} to finish", timeout, sink or (lambda piece: None))
        return CommandResult(command, status, data.decode(errors="replace"),
                             time.monotonic() - start, data)

    def _output(self, end_line: bytes, deadline: float, what: str, said: float,
                sink: Sink) -> tuple[bytes, int]:
        """Read up to the line ``end_line`` STATUS: (the output before it, the status). All
        that cannot be the start of that line is handed to ``sink`` at once, so each search
        covers only a possible start of it and what arrived since (linear in the output)."""
        end = re.compile(re.escape(end_line) + rb"(\d+)\r?\n")
        pieces: list[bytes] = []

        def hand_on(piece: bytes) -> None:
            if piece:
                pieces.append(piece)
                sink(piece)

        pending = self.channel.buffer  # read with the begin marker, not yet looked at
        self.channel.buffer = b""
        while True:
            if match := end.search(pending):
                hand_on(pending[:match.start()])
                self.channel.buffer = pending[match.end():]
                return b"".join(pieces), int(match.group(1))
            held = may_begin(pending, end_line)
            hand_on(pending[:held])
            pending = pending[held:]
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:  # checked here too: output that never stops never times out
                    raise pexpect.TIMEOUT(what)
                pending += self.channel.read_nonblocking(self.channel.maxread, remaining)
            except pexpect.TIMEOUT:
                hand_on(pending)  # what arrived, all of it
                self.broken = f"timed out after {said:g}s waiting for {what}"
                raise GuestTimeout(self.broken, self._tails(b"".join(pieces))) from None
            except pexpect.EOF:
                hand_on(pending)
                self.broken = f"control channel closed while waiting for {what}"
                raise GuestGone(self.broken, self._tails(b"".join(pieces))) from None

    def put(self, local: Path, remote: str, timeout: float = 60.0) -> None:
        """Copy a host file into the guest: base64 in here-documents, decoded by the guest's
        base64 (lines stay short for the tty's line discipline)."""
        data = Path(local).read_bytes()
        target = shlex.quote(remote)
        for offset in range(0, max(len(data), 1), PUT_CHUNK):
            text = base64.encodebytes(data[offset:offset + PUT_CHUNK]).decode()
            redirect = ">" if offset == 0 else ">>"
            result = self.run(f"base64 -d {redirect} {target} <<'PTEH_EOF'\n{text}PTEH_EOF", timeout)
            if result.status != 0:
                raise HarnessError(f"put {local} -> guest {remote} failed (exit {result.status})",
                                   result.output)

    def get(self, remote: str, local: Path, timeout: float = 60.0) -> None:
        """Copy a guest file to the host: the guest's base64 of it, decoded here."""
        result = self.run(f"base64 {shlex.quote(remote)}", timeout)
        if result.status != 0:
            raise HarnessError(f"get guest {remote} -> {local} failed (exit {result.status})",
                               result.output)
        Path(local).write_bytes(base64.b64decode(result.data))

    def close(self) -> None:
        """Nothing to close: the shell ends with QEMU (the socket is QEMU's)."""

    def _expect(self, pattern: str, timeout: float, what: str, said: float | None = None) -> None:
        """Wait ``timeout`` seconds for ``pattern``; a timeout names ``said`` (the caller's
        whole timeout) when given."""
        try:  # only the tail is searched: the patterns are short markers at the end of the
            # output, and searching the whole buffer at each read made big outputs quadratic
            self.channel.expect(pattern, timeout=timeout, searchwindowsize=SEARCH_WINDOW)
        except pexpect.TIMEOUT:
            self.broken = f"timed out after {said or timeout:g}s waiting for {what}"
            raise GuestTimeout(self.broken, self._tails()) from None
        except pexpect.EOF:
            self.broken = f"control channel closed while waiting for {what}"
            raise GuestGone(self.broken, self._tails()) from None

    def _tails(self, output: bytes | None = None) -> str:
        """The last lines of ``output`` (default: what the channel read last) and of the
        kernel log."""
        if output is None:
            output = self.channel.before or b""
        shell = "\n".join(output.decode(errors="replace").splitlines()[-15:])
        return f"--- control shell output (tail) ---\n{shell}\n--- kernel log (tail) ---\n{self.context()}"
