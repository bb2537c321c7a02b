"""Stage 7: run commands on the guest's control shell (kept apart from the kernel log).

Each command is framed by markers: ``echo <m>-begin; ( CMD ) </dev/null; echo <m>-end-$?``.
The marker is typed split in two quotes, so an echo of the typed line never matches it.
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


class GuestGone(HarnessError):
    """The control channel closed: the guest rebooted, panicked or QEMU exited."""

    status = 245
    kind = "boot"


@dataclass(frozen=True)
class CommandResult:
    command: str
    status: int
    output: str
    seconds: float


class Guest:
    """A shell reached through a pexpect spawn (fdspawn on QEMU's socket, or a local sh)."""

    def __init__(self, channel: pexpect.spawnbase.SpawnBase,
                 context: Callable[[], str] = lambda: "") -> None:
        if channel.maxread > SEARCH_WINDOW // 2:  # each read must fall inside the window
            raise ValueError(f"pexpect maxread {channel.maxread} is too large for the "
                             f"search window ({SEARCH_WINDOW})")
        self.channel = channel
        self.context = context  # kernel-log tail for error messages
        self.broken: str | None = None

    def wait_ready(self, timeout: float) -> float:
        """Wait for the guest init's ready line; return seconds waited."""
        start = time.monotonic()
        self._expect(READY, timeout, "the guest's ready line")
        return time.monotonic() - start

    def run(self, command: str, timeout: float = 60.0) -> CommandResult:
        if self.broken:
            raise HarnessError(f"guest is broken and cannot be reused: {self.broken}")
        mark = "PTEH" + secrets.token_hex(6)
        typed_mark = f"'{mark[:6]}''{mark[6:]}'"
        start = time.monotonic()
        self.channel.send(f"echo {typed_mark}-begin; ( {command}\n) </dev/null; "
                          f"echo {typed_mark}-end-$?\n")
        self._expect(re.escape(mark) + r"-begin\r?\n", min(timeout, START_TIMEOUT),
                     f"the start of {command!r}")
        remaining = max(0.1, timeout - (time.monotonic() - start))
        self._expect(re.escape(mark) + r"-end-(\d+)\r?\n", remaining, f"{command!r} to finish",
                     said=timeout)
        status = int(self.channel.match.group(1))
        before = self.channel.before
        output = (before.decode(errors="replace") if isinstance(before, bytes) else before)
        result = CommandResult(command, status, output.replace("\r", ""),
                               time.monotonic() - start)
        return result

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
        Path(local).write_bytes(base64.b64decode(result.output))

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

    def _tails(self) -> str:
        before = self.channel.before or b""
        if isinstance(before, bytes):
            before = before.decode(errors="replace")
        shell = "\n".join(before.replace("\r", "").splitlines()[-15:])
        return f"--- control shell output (tail) ---\n{shell}\n--- kernel log (tail) ---\n{self.context()}"

