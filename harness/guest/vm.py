"""Stage 6: QEMU command lines, the accelerator probe and the QEMU process."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from harness.cache import read_json, runtime_dir, subdir, write_json_atomic
from harness.errors import BootError, UsageError
from harness.guest.image import READY

BASE_APPEND = "console=ttyS0 panic=-1 nopti no5lvl"
PROBE_TIMEOUT = 8.0
LOOPBACK = "127.0.0.1"
PORT_ATTEMPTS = 5
HOTPLUG_SLOTS = 4  # pc-dimm slots of a guest with hotpluggable memory
SIZE_UNITS = {"": 1, "M": 1, "G": 1024, "T": 1024 * 1024}  # QEMU's -m: a bare number is MiB


class Wiring(Protocol):
    """How a transport joins a boot (transport.py: serial's control socket or stdio, ssh's
    port forward): its QEMU arguments, its kernel command-line words, and when a started
    QEMU is ready for it. Nothing here asks which transport it is."""

    def qemu_args(self, config: VmConfig) -> list[str]: ...

    def kernel_args(self) -> str: ...

    def bind(self) -> Wiring:
        """This wiring with its host resources chosen (ssh: a free port); itself when it has
        none to choose, or they were given."""

    def ready(self, config: VmConfig, process: subprocess.Popen) -> Qemu | None:
        """The started QEMU once it is ready for the transport (connected), else None."""

    def awaited(self, config: VmConfig) -> str:
        """What ``ready`` waits for, as in "QEMU did not ...", for a timeout's message."""


@dataclass(frozen=True)
class Bare:
    """No transport: the guest's init prints its ready line and idles (the KVM probe,
    bench's bare boot)."""

    def qemu_args(self, config: VmConfig) -> list[str]:
        return []

    def kernel_args(self) -> str:
        return "pte_harness.bare"

    def bind(self) -> Wiring:
        return self

    def ready(self, config: VmConfig, process: subprocess.Popen) -> Qemu | None:
        return Qemu(config, process, None)

    def awaited(self, config: VmConfig) -> str:
        return "start"


BARE = Bare()


@dataclass(frozen=True)
class VmConfig:
    """One QEMU boot. The machine's values have no defaults here: they come from the
    options (options.Options, through session.BootOptions) or, for the KVM probe, from it."""

    kernel: Path
    initrd: Path
    run_dir: Path
    accel: str
    memory: str
    cpus: int
    cpu: str
    append: str
    numa: int  # NUMA nodes sharing memory and CPUs out (0: no -numa at all)
    hotplug: str  # hotpluggable memory beyond ``memory`` (slots and maxmem), e.g. "1G"
    wiring: Wiring  # the transport's QEMU arguments, kernel arguments and readiness
    qemu: str = "qemu-system-x86_64"

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def control_socket(self) -> Path:
        """In this user's runtime directory (a unix socket path must stay under 108 bytes, a
        run dir may not; nobody else can plant one there), named for the run directory and
        this process: two harnesses never share one."""
        tag = hashlib.sha256(f"{self.run_dir.resolve()}\0{os.getpid()}".encode()).hexdigest()[:16]
        return runtime_dir() / f"{tag}.sock"

    @property
    def qmp_socket(self) -> Path:
        return self.control_socket.with_suffix(".qmp")

    def memory_args(self) -> list[str]:
        """-m with hotplug slots, and for NUMA one RAM backend and -numa node per node
        (memory shared out evenly, the rest to the last node; CPU i on node i mod N)."""
        total = mebibytes(self.memory, "memory")
        memory = self.memory
        if self.hotplug:
            memory += f",slots={HOTPLUG_SLOTS},maxmem={total + mebibytes(self.hotplug, 'hotplug')}M"
        args = ["-m", memory]
        for node in range(self.numa):
            size = total // self.numa + (total % self.numa if node == self.numa - 1 else 0)
            cpus = "".join(f",cpus={cpu}" for cpu in range(node, self.cpus, self.numa))
            args += ["-object", f"memory-backend-ram,id=ram-node{node},size={size}M",
                     "-numa", f"node,nodeid={node},memdev=ram-node{node}{cpus}"]
        return args

    def smp(self) -> str:
        """-smp: with NUMA, one socket per CPU, so that no cache is shared across nodes
        (a CPU whose LLC sibling sits on another node makes the kernel warn)."""
        return f"{self.cpus},sockets={self.cpus},cores=1,threads=1" if self.numa else str(self.cpus)

    def kernel_cmdline(self) -> str:
        return " ".join(part for part in (BASE_APPEND, self.wiring.kernel_args(),
                                          self.append.strip()) if part)

    def command(self) -> list[str]:
        """The full QEMU command line: kernel log on ttyS0 (a file), then what the
        transport's wiring adds (serial: the shell on ttyS1; ssh: a port forward)."""
        return [
            self.qemu, "-accel", self.accel, "-cpu", self.cpu, *self.memory_args(),
            "-smp", self.smp(), "-nodefaults", "-display", "none", "-no-reboot",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-kernel", str(self.kernel), "-initrd", str(self.initrd),
            "-append", self.kernel_cmdline(),
            "-serial", f"file:{self.console_log}", *self.wiring.qemu_args(self),
        ]

    def shell_command(self) -> str:
        """The command line quoted for a person to paste into a shell."""
        return shlex.join(self.command())


@dataclass
class Qemu:
    """A running QEMU; ``channel`` is the socket its wiring connected (serial's ttyS1)."""

    config: VmConfig
    process: subprocess.Popen
    channel: socket.socket | None  # None when the transport connects otherwise (ssh)
    started: float = field(default_factory=time.monotonic)

    def stderr_text(self) -> str:
        try:
            return (self.config.run_dir / "qemu-stderr.log").read_text(errors="replace")
        except OSError:
            return ""

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout: float = 5.0) -> None:
        if self.channel is not None:
            self.channel.close()
        self.config.control_socket.unlink(missing_ok=True)
        self.config.qmp_socket.unlink(missing_ok=True)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def mebibytes(size: str, what: str) -> int:
    """QEMU's size syntax (``512M``, ``1G``, ``2048``: MiB) in MiB; anything else is a
    usage error naming the option."""
    text = size.strip().upper().removesuffix("B")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in SIZE_UNITS else (text, "")
    if not number.isdigit() or int(number) == 0:
        raise UsageError(f"--{what} {size!r}: expected a size such as 512M or 1G")
    return int(number) * SIZE_UNITS[unit]


def start(config: VmConfig, connect_timeout: float = 10.0) -> Qemu:
    """Start QEMU and wait until it is ready for the transport; QEMU's own errors become
    BootError.

    A wiring that chooses a host resource (ssh: a free loopback port, one the kernel just
    handed out) chooses again when QEMU finds it taken in between (it names the port and
    exits); one that was given its resource fails."""
    if shutil.which(config.qemu) is None:
        raise UsageError(f"{config.qemu} not found: install qemu-system-x86")
    config.run_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, PORT_ATTEMPTS + 1):
        candidate = replace(config, wiring=config.wiring.bind())
        try:
            return _start(candidate, connect_timeout)
        except PortTaken:
            if candidate.wiring == config.wiring or attempt == PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


class PortTaken(BootError):
    """QEMU could not listen on the chosen forward port."""


def free_port() -> int:
    """A loopback port nobody listens on now (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def listening(pid: int) -> list[tuple[str, int]]:
    """The TCP (IPv4 and IPv6) addresses process ``pid`` listens on, from /proc."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: TCP_LISTEN
                found.append(parse_proc_address(fields[1]))
    return found


def parse_proc_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` (/proc/net/tcp, host byte order) -> ("127.0.0.1", 8080)."""
    address, port = text.split(":")
    raw = bytes.fromhex(address)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        host = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
    return host, int(port, 16)


def _start(config: VmConfig, connect_timeout: float) -> Qemu:
    config.control_socket.unlink(missing_ok=True)
    config.qmp_socket.unlink(missing_ok=True)
    (config.run_dir / "qemu-cmdline.txt").write_text(config.shell_command() + "\n")
    stderr = (config.run_dir / "qemu-stderr.log").open("w")
    process = subprocess.Popen(config.command(), stdin=subprocess.DEVNULL,
                               stdout=stderr, stderr=stderr)
    stderr.close()
    deadline = time.monotonic() + connect_timeout
    while True:
        if process.poll() is not None:
            text = (config.run_dir / "qemu-stderr.log").read_text(errors="replace")
            error = PortTaken if "host forwarding rule" in text else BootError
            raise error(f"QEMU exited at once (status {process.returncode})",
                        f"{text.strip()}\ncommand: {config.shell_command()}")
        qemu = config.wiring.ready(config, process)
        if qemu is not None:
            return qemu
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise BootError(f"QEMU did not {config.wiring.awaited(config)} within "
                            f"{connect_timeout:.0f}s", f"command: {config.shell_command()}")
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
    if shutil.which(qemu) is None:  # a missing prerequisite (usage), never the kernel's fault
        raise UsageError(f"{qemu} not found: install qemu-system-x86")
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
    config = VmConfig(kernel, initrd, run_dir, accel="kvm", memory="256M", cpus=1, cpu="host",
                      append="", numa=0, hotplug="", wiring=BARE, qemu=qemu)
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
