"""A booted guest: QEMU + control shell + crash checks, as one object with ``run()``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pexpect.fdpexpect

from . import crash, vm
from .cache import say
from .errors import BootError, GuestTimeout, KernelCrash
from .guest import CommandResult, Guest, GuestGone


_announced: set[vm.AccelVerdict] = set()


@dataclass(frozen=True)
class BootOptions:
    accel: str = "auto"
    memory: str = "1G"
    cpus: int = 1
    cpu: str = "max"
    append: str = ""
    boot_timeout: float = 60.0


class Session:
    """Use as a context manager; the VM is stopped on exit, logs stay in ``run_dir``."""

    def __init__(self, kernel: Path, initrd: Path, run_dir: Path, options: BootOptions) -> None:
        self.run_dir = run_dir
        self.direct_maps: dict[str, list] = {}  # label -> DirectMap.strip(), for the report
        self.verdict = vm.choose_accel(options.accel, kernel, initrd)
        if options.accel == "auto" and self.verdict not in _announced:
            _announced.add(self.verdict)
            say(f"accelerator: {self.verdict.accel} ({self.verdict.reason})")
        self.config = vm.VmConfig(kernel, initrd, run_dir, accel=self.verdict.accel,
                                  memory=options.memory, cpus=options.cpus, cpu=options.cpu,
                                  append=options.append)
        self.qemu = vm.start(self.config)
        channel = pexpect.fdpexpect.fdspawn(self.qemu.channel.fileno(), encoding="utf-8",
                                            codec_errors="replace")
        self._control_log = (run_dir / "control.log").open("w")
        channel.logfile_read = self._control_log
        self.guest = Guest(channel, context=self.console_tail)
        try:
            self.guest.wait_ready(options.boot_timeout)
        except (GuestGone, GuestTimeout) as exc:
            self.close()
            raise self._explain(exc, "while booting") from None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def console(self) -> str:
        try:
            return self.config.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def console_tail(self, lines: int = 25) -> str:
        return "\n".join(self.console().splitlines()[-lines:])

    def findings(self) -> list[crash.Finding]:
        return crash.scan(self.console())

    def run(self, command: str, timeout: float = 60.0) -> CommandResult:
        try:
            return self.guest.run(command, timeout)
        except (GuestGone, GuestTimeout) as exc:
            raise self._explain(exc, f"running {command!r}") from None

    def check(self) -> None:
        """Raise KernelCrash if the kernel log holds any report so far."""
        findings = self.findings()
        if findings:
            raise KernelCrash(f"kernel log shows {findings[0].summary()} "
                              f"({len(findings)} report(s); console: {self.config.console_log})",
                              crash.report(findings))

    def _explain(self, exc: Exception, doing: str) -> Exception:
        """Turn a lost or silent guest into a crash, boot failure or timeout with evidence."""
        if isinstance(exc, GuestGone):
            self._wait_exit(2.0)
        console = self.console()
        findings = crash.scan(console)
        where = f"console: {self.config.console_log}"
        if findings:
            return KernelCrash(f"kernel crashed {doing}: {findings[0].summary()} ({where})",
                               crash.report(findings))
        if isinstance(exc, GuestTimeout):
            return exc
        reboot = ("unexpected reboot; " if "reboot: Restarting system" in console
                  or crash.restarts(console) else "")
        stderr = self.qemu.stderr_text().strip()
        return BootError(f"guest went away {doing}: {reboot}QEMU exit status "
                         f"{self.qemu.exited()} ({where})",
                         f"{exc.detail}\n--- qemu stderr ---\n{stderr}")

    def _wait_exit(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.qemu.exited() is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.qemu.stop()
        if not self._control_log.closed:
            self._control_log.close()
