"""A booted guest: QEMU + control shell (serial) or sshd (ssh) + crash checks, as one
object with ``run()``, ``put()`` and ``get()``; the kernel log is on ttyS0 either way."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pexpect.fdpexpect

from harness.guest import crash, vm
from harness.progress import say
from harness.errors import BootError, GuestTimeout, KernelCrash, UsageError
from harness.guest.serial import CommandResult, Guest, GuestGone
from harness.guest.ssh import SshGuest
from harness.guest.sshkeys import HostKey, new_client_key

TRANSPORTS = ("serial", "ssh")


_announced: set[vm.AccelVerdict] = set()


@dataclass(frozen=True)
class BootOptions:
    accel: str = "auto"
    memory: str = "1G"
    cpus: int = 1
    cpu: str = "max"
    append: str = ""
    boot_timeout: float = 60.0
    transport: str = "serial"
    timeout: float = 600.0  # a guest command's, unless the caller gives its own


class Session:
    """Use as a context manager; the VM is stopped on exit, logs stay in ``run_dir``.

    ``host_key`` (ssh only) is the key the guest's image serves; the boot has to show it."""

    def __init__(self, kernel: Path, initrd: Path, run_dir: Path, options: BootOptions,
                 host_key: HostKey | None = None) -> None:
        if options.transport not in TRANSPORTS:
            raise UsageError(f"transport must be serial or ssh, not {options.transport!r}")
        if options.transport == "ssh" and host_key is None:
            raise UsageError("the ssh transport needs an image built for it (a host key)")
        self.run_dir = run_dir
        self.options = options
        self.transport = options.transport
        self.direct_maps: dict[str, list] = {}  # label -> DirectMap.strip(), for the report
        self.verdict = vm.choose_accel(options.accel, kernel, initrd)
        if options.accel == "auto" and self.verdict not in _announced:
            _announced.add(self.verdict)
            say(f"accelerator: {self.verdict.accel} ({self.verdict.reason})")
        client_key = new_client_key() if options.transport == "ssh" else None
        self.client_key = client_key
        self.config = vm.VmConfig(kernel, initrd, run_dir, accel=self.verdict.accel,
                                  memory=options.memory, cpus=options.cpus, cpu=options.cpu,
                                  append=options.append,
                                  mode="ssh" if client_key else "control",
                                  ssh_authkey=client_key.public_blob if client_key else "")
        self.qemu = vm.start(self.config)
        self.config = self.qemu.config  # with the forward port chosen
        self._control_log = (run_dir / "control.log").open("w")
        self.guest: Guest | SshGuest | None = None
        try:
            if client_key and host_key:
                self.guest = SshGuest.connect(
                    self.config.ssh_port, host_key, client_key, options.boot_timeout,
                    alive=lambda: self.qemu.exited() is None, context=self.console_tail,
                    log=self._control_log)
            else:
                assert self.qemu.channel is not None
                channel = pexpect.fdpexpect.fdspawn(self.qemu.channel.fileno(), encoding="utf-8",
                                                    codec_errors="replace")
                channel.logfile_read = self._control_log
                self.guest = Guest(channel, context=self.console_tail)
                self.guest.wait_ready(options.boot_timeout)
        except (GuestGone, GuestTimeout) as exc:
            self.close()
            raise self._explain(exc, "while booting") from None
        except BaseException:
            self.close()
            raise

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

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        try:
            return self._guest().run(command, timeout or self.options.timeout)
        except (GuestGone, GuestTimeout) as exc:
            raise self._explain(exc, f"running {command!r}") from None

    def put(self, local: Path, remote: str, timeout: float | None = None) -> None:
        """Copy a host file into the guest (ssh: over a channel; serial: base64 on the shell)."""
        try:
            self._guest().put(local, remote, timeout or self.options.timeout)
        except (GuestGone, GuestTimeout) as exc:
            raise self._explain(exc, f"copying {local} to {remote}") from None

    def get(self, remote: str, local: Path, timeout: float | None = None) -> None:
        """Copy a guest file to the host."""
        try:
            self._guest().get(remote, local, timeout or self.options.timeout)
        except (GuestGone, GuestTimeout) as exc:
            raise self._explain(exc, f"copying {remote} to {local}") from None

    def _guest(self) -> Guest | SshGuest:
        assert self.guest is not None
        return self.guest

    def check(self) -> None:
        """Raise KernelCrash if the kernel log holds any report so far."""
        findings = self.findings()
        if findings:
            raise KernelCrash(f"kernel log shows {findings[0].summary()} "
                              f"({len(findings)} report(s); console: {self.config.console_log})",
                              crash.report(findings))

    def _explain(self, exc: GuestGone | GuestTimeout, doing: str) -> Exception:
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
        if isinstance(self.guest, SshGuest):
            self.guest.close()
        self.qemu.stop()
        if not self._control_log.closed:
            self._control_log.close()
