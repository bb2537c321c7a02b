"""Stage 6: QEMU command lines, the accelerator probe and the QEMU process."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cache import read_json, subdir, write_json_atomic
from .errors import BootError, UsageError
from .image import READY

BASE_APPEND = "console=ttyS0 panic=-1 nopti no5lvl"
PROBE_TIMEOUT = 8.0


@dataclass(frozen=True)
class VmConfig:
    kernel: Path
    initrd: Path
    run_dir: Path
    accel: str = "tcg"
    memory: str = "1G"
    cpus: int = 1
    cpu: str = "max"
    append: str = ""
    qemu: str = "qemu-system-x86_64"
    mode: str = "control"  # control: shell on a socket; interactive: on stdio; bare: none

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def control_socket(self) -> Path:
        """In /tmp: a unix socket path must stay under 108 bytes, a run dir may not."""
        tag = hashlib.sha256(str(self.run_dir.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"pte-harness-{tag}.sock"

    def kernel_cmdline(self) -> str:
        extra = {"control": "", "interactive": " pte_harness.interactive",
                 "bare": " pte_harness.bare"}[self.mode]
        return f"{BASE_APPEND}{extra} {self.append}".strip()

    def command(self) -> list[str]:
        """The full QEMU command line: kernel log on ttyS0 (a file), the shell on ttyS1
        (a unix socket QEMU waits on, or stdio); a bare guest only prints its ready line."""
        control = {
            "control": ["-chardev", f"socket,id=ctl,path={self.control_socket},server=on,wait=on",
                        "-serial", "chardev:ctl"],
            "interactive": ["-serial", "stdio"],
            "bare": [],
        }[self.mode]
        return [
            self.qemu, "-accel", self.accel, "-cpu", self.cpu, "-m", self.memory,
            "-smp", str(self.cpus), "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(self.kernel), "-initrd", str(self.initrd),
            "-append", self.kernel_cmdline(),
            "-serial", f"file:{self.console_log}", *control,
        ]

    def shell_command(self) -> str:
        """The command line quoted for a person to paste into a shell."""
        return shlex.join(self.command())


@dataclass
class Qemu:
    """A running QEMU whose ttyS1 is connected to ``channel``."""

    config: VmConfig
    process: subprocess.Popen
    channel: socket.socket
    started: float = field(default_factory=time.monotonic)

    def stderr_text(self) -> str:
        try:
            return (self.config.run_dir / "qemu-stderr.log").read_text(errors="replace")
        except OSError:
            return ""

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout: float = 5.0) -> None:
        self.channel.close()
        self.config.control_socket.unlink(missing_ok=True)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def start(config: VmConfig, connect_timeout: float = 10.0) -> Qemu:
    """Start QEMU and connect to its control socket; QEMU's own errors become BootError."""
    if shutil.which(config.qemu) is None:
        raise UsageError(f"{config.qemu} not found: install qemu-system-x86")
    config.run_dir.mkdir(parents=True, exist_ok=True)
    config.control_socket.unlink(missing_ok=True)
    (config.run_dir / "qemu-cmdline.txt").write_text(config.shell_command() + "\n")
    stderr = (config.run_dir / "qemu-stderr.log").open("w")
    process = subprocess.Popen(config.command(), stdin=subprocess.DEVNULL,
                               stdout=stderr, stderr=stderr)
    stderr.close()
    deadline = time.monotonic() + connect_timeout
    while True:
        if process.poll() is not None:
            text = (config.run_dir / "qemu-stderr.log").read_text(errors="replace")
            raise BootError(f"QEMU exited at once (status {process.returncode})",
                            f"{text.strip()}\ncommand: {config.shell_command()}")
        if config.control_socket.exists():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(config.control_socket))
                return Qemu(config, process, sock)
            except OSError:
                sock.close()
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise BootError(f"QEMU did not open its control socket within {connect_timeout:.0f}s",
                            f"command: {config.shell_command()}")
        time.sleep(0.01)


@dataclass(frozen=True)
class AccelVerdict:
    accel: str
    reason: str


def kvm_fingerprint(qemu: str) -> str:
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    return f"{os.uname().release}|{version.splitlines()[0] if version else qemu}"


def choose_accel(requested: str, kernel: Path, initrd: Path, qemu: str = "qemu-system-x86_64",
                 probe_timeout: float = PROBE_TIMEOUT) -> AccelVerdict:
    """tcg, kvm, or for auto: KVM only when a probe boot really reached the guest's init."""
    if requested == "tcg":
        return AccelVerdict("tcg", "requested")
    if requested not in ("kvm", "auto"):
        raise UsageError(f"--accel must be auto, kvm or tcg, not {requested!r}")
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if requested == "kvm":
        if not usable:
            raise UsageError("--accel kvm: /dev/kvm is missing or not accessible")
        return AccelVerdict("kvm", "requested")
    if not usable:
        return AccelVerdict("tcg", "/dev/kvm is missing or not accessible")
    fingerprint = kvm_fingerprint(qemu)
    verdict_path = subdir("state") / "kvm-verdict.json"
    cached = read_json(verdict_path)
    if cached and cached.get("fingerprint") == fingerprint:
        return AccelVerdict(cached["accel"], cached["reason"] + " (cached verdict)")
    verdict = probe_kvm(kernel, initrd, qemu, probe_timeout)
    write_json_atomic(verdict_path, {"fingerprint": fingerprint, "accel": verdict.accel,
                                     "reason": verdict.reason})
    return verdict


def probe_kvm(kernel: Path, initrd: Path, qemu: str, timeout: float) -> AccelVerdict:
    """Boot once under KVM and watch the console for the guest's ready line."""
    run_dir = subdir("state") / "kvm-probe"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    config = VmConfig(kernel, initrd, run_dir, accel="kvm", cpu="host", memory="256M",
                      qemu=qemu, mode="bare")
    console = config.console_log
    with (run_dir / "qemu-stderr.log").open("w") as err:
        process = subprocess.Popen(config.command(), stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            text = console.read_text(errors="replace") if console.exists() else ""
            if READY in text:
                return AccelVerdict("kvm", "a KVM probe boot reached the guest")
            if process.poll() is not None:
                err_text = (run_dir / "qemu-stderr.log").read_text(errors="replace").strip()
                return AccelVerdict("tcg", f"KVM probe QEMU exited ({process.returncode}): "
                                           f"{err_text.splitlines()[-1] if err_text else 'no output'}")
            time.sleep(0.05)
        return AccelVerdict("tcg", f"a KVM probe boot did not reach the guest within {timeout:.0f}s "
                                   "(/dev/kvm opens but guests hang)")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
