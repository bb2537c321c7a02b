"""QMP, QEMU's JSON control protocol, on a unix socket: a small synchronous client.

Written here rather than taken from ``qemu.qmp`` (PyPI): that library is asyncio-only (its
synchronous wrapper is marked legacy), and the harness needs a handful of commands and one
event, with a deadline on every read, from the same thread that drives the guest's shell.
Every wait here ends by its timeout; a QEMU that goes away is an error naming the command.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Callable

from harness.errors import BootError, GuestTimeout

GREETING_TIMEOUT = 10.0
COMMAND_TIMEOUT = 10.0
MAX_MESSAGE = 1 << 20  # a line longer than this is not QMP


class QmpError(BootError):
    """QEMU refused a QMP command, or the QMP connection failed."""


class Qmp:
    """One QMP connection: ``execute()`` returns a command's ``return`` value; events that
    arrive meanwhile are kept for ``wait_event()``."""

    def __init__(self, path: Path, timeout: float = GREETING_TIMEOUT) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self._next_id = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(str(path))
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise QmpError(f"cannot connect to QEMU's QMP socket {path}: {exc}") from None
                time.sleep(0.02)
        try:
            greeting = self._read(deadline, "the QMP greeting")
            if "QMP" not in greeting:
                raise QmpError(f"{path} is not a QMP socket: it said {_short(greeting)}")
            self.execute("qmp_capabilities", timeout=timeout)
        except BaseException:
            self.sock.close()
            raise

    def execute(self, command: str, timeout: float = COMMAND_TIMEOUT, **arguments: Any) -> Any:
        """Run ``command``; QEMU's error (class and description) becomes QmpError."""
        self._next_id += 1
        ident = f"pte-{self._next_id}"
        message: dict[str, Any] = {"execute": command, "id": ident}
        if arguments:
            message["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise QmpError(f"QMP {command}: QEMU's socket is gone ({exc})") from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline, f"the reply to QMP {command}")
            if "event" in reply:
                self.events.append(reply)
            elif reply.get("id") == ident:
                if "error" in reply:
                    error = reply["error"]
                    raise QmpError(f"QEMU refused {command} {_short(arguments)}: "
                                   f"{error.get('class', '?')}: {error.get('desc', '')}")
                return reply.get("return")

    def wait_event(self, names: str | tuple[str, ...], timeout: float,
                   match: Callable[[dict[str, Any]], bool] = lambda event: True) -> dict[str, Any]:
        """The first event named in ``names`` (received earlier or within ``timeout``)
        that matches."""
        wanted = (names,) if isinstance(names, str) else names
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("event") in wanted and match(event):
                    self.events.remove(event)
                    return event
            message = self._read(deadline, f"QMP event {' or '.join(wanted)}")
            if "event" in message:
                self.events.append(message)

    def _read(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GuestTimeout(f"no {waiting_for} from QEMU within the timeout "
                                   f"(QMP socket {self.path})")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as exc:
                raise QmpError(f"QMP socket {self.path} failed waiting for {waiting_for}: "
                               f"{exc}") from None
            if not chunk:
                raise QmpError(f"QEMU closed its QMP socket while the harness waited for "
                               f"{waiting_for}")
            self._buffer += chunk
            if len(self._buffer) > MAX_MESSAGE:
                raise QmpError(f"QMP socket {self.path}: a message longer than "
                               f"{MAX_MESSAGE} bytes")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            raise QmpError(f"QMP socket {self.path} sent something that is not JSON: "
                           f"{line[:200]!r}") from None
        if not isinstance(message, dict):
            raise QmpError(f"QMP socket {self.path} sent {_short(message)}, not an object")
        return message

    def close(self) -> None:
        self.sock.close()


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 200 else text[:200] + "..."
