"""A booted guest: QEMU + the transport's channel (transport.py: serial or ssh) + crash
checks, as one object with ``run()``, ``put()`` and ``get()``; the kernel log is on ttyS0
either way."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import BootError, GuestTimeout, KernelCrash, UsageError
from harness.guest import crash, vm
from harness.guest.hotplug import Hotplug
from harness.guest.qmp import Qmp
from harness.guest.serial import CommandResult, GuestGone, Sink
from harness.guest.sshkeys import HostKey
from harness.guest.transport import Channel, by_name
from harness.progress import say


_announced: set[vm.AccelVerdict] = set()


@dataclass(frozen=True)
class BootOptions:
    """The guest's part of options.Options (pipeline.boot_options), whose defaults these are:
    none here."""

    accel: str
    memory: str
    cpus: int
    numa: int
    hotplug: str
    cpu: str
    append: str
    boot_timeout: float
    transport: str
    timeout: float  # a guest command's, unless the caller gives its own


def vm_config(kernel: Path, initrd: Path, run_dir: Path, options: BootOptions, accel: str,
              wiring: vm.Wiring) -> vm.VmConfig:
    return vm.VmConfig(kernel, initrd, run_dir, accel=accel, memory=options.memory,
                       cpus=options.cpus, cpu=options.cpu, append=options.append,
                       numa=options.numa, hotplug=options.hotplug, wiring=wiring)


class Session:
    """Use as a context manager; the VM is stopped on exit, logs stay in ``run_dir``.

    ``host_key`` (ssh only) is the key the guest's image serves; the boot has to show it."""

    def __init__(self, kernel: Path, initrd: Path, run_dir: Path, options: BootOptions,
                 host_key: HostKey | None = None) -> None:
        transport = by_name(options.transport)
        self.run_dir = run_dir
        self.options = options
        self.transport = transport.name
        self.direct_maps: dict[str, list] = {}  # label -> DirectMap.strip(), for the report
        self.verdict = vm.choose_accel(options.accel, kernel, initrd)
        if options.accel == "auto" and self.verdict not in _announced:
            _announced.add(self.verdict)
            say(f"accelerator: {self.verdict.accel} ({self.verdict.reason})")
        self.plan = transport.plan()
        self.config = vm_config(kernel, initrd, run_dir, options, self.verdict.accel,
                                self.plan.wiring)
        self.qemu = vm.start(self.config)
        self.config = self.qemu.config  # with its wiring's resources chosen (ssh: the port)
        self._control_log = (run_dir / "control.log").open("w")
        self.guest: Channel | None = None
        self._qmp: Qmp | None = None
        self._hotplug: Hotplug | None = None
        try:
            self.guest = transport.connect(self.qemu, self.plan, host_key, options.boot_timeout,
                                           context=self.console_tail, log=self._control_log)
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

    def run(self, command: str, timeout: float | None = None,
            sink: Sink | None = None) -> CommandResult:
        """Run ``command`` in the guest; its output also goes to ``sink`` as it arrives."""
        guest, timeout = self._guest(), timeout or self.options.timeout
        try:  # a channel is asked to stream only when someone listens
            return guest.run(command, timeout, sink) if sink else guest.run(command, timeout)
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

    def qmp(self) -> Qmp:
        """QEMU's QMP connection (made on first use)."""
        if self._qmp is None:
            self._qmp = Qmp(self.config.qmp_socket)
        return self._qmp

    @property
    def hotplug(self) -> Hotplug:
        """Memory hotplug: ``add(size, node)``, ``online``, ``offline``, ``remove``."""
        if not self.options.hotplug:
            raise UsageError("this guest has no hotpluggable memory: boot it with --hotplug "
                             "SIZE (a test: @pytest.mark.guest(hotplug=\"1G\"))")
        if self._hotplug is None:
            self._hotplug = Hotplug(self.qmp(), lambda command, timeout: self.run(command, timeout))
        return self._hotplug

    def _guest(self) -> Channel:
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
        if self._qmp is not None:
            self._qmp.close()
        if self.guest is not None:
            self.guest.close()
        self.qemu.stop()
        if not self._control_log.closed:
            self._control_log.close()
