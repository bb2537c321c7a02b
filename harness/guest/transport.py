"""Transports: how commands reach a booted guest. Serial (a shell on ttyS1, through a unix
socket QEMU waits on) and ssh (dropbear over virtio-net, paramiko on the host) are two
implementations of one protocol: what the kernel and the image need, how QEMU is started, how
a boot is connected, and an interactive shell. Nothing outside this module asks a transport's
name what to do; ``by_name`` is the one place a name becomes a transport.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, TextIO

import pexpect.fdpexpect

from harness.errors import UsageError
from harness.guest import sshkeys, vm
from harness.guest.serial import CommandResult, Guest, Sink
from harness.guest.sshkeys import ClientKey, HostKey
from harness.progress import say


class Channel(Protocol):
    """A connected guest: what a Session drives."""

    def run(self, command: str, timeout: float, sink: Sink | None = None) -> CommandResult: ...

    def put(self, local: Path, remote: str, timeout: float) -> None: ...

    def get(self, remote: str, local: Path, timeout: float) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ControlSocket:
    """Serial: the guest's shell on ttyS1, a unix socket QEMU waits on until we connect."""

    def qemu_args(self, config: vm.VmConfig) -> list[str]:
        return ["-chardev", f"socket,id=ctl,path={config.control_socket},server=on,wait=on",
                "-serial", "chardev:ctl"]

    def kernel_args(self) -> str:
        return ""

    def bind(self) -> vm.Wiring:
        return self

    def ready(self, config: vm.VmConfig, process: subprocess.Popen) -> vm.Qemu | None:
        if not config.control_socket.exists():
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(config.control_socket))
        except OSError:
            sock.close()
            return None
        return vm.Qemu(config, process, sock)

    def awaited(self, config: vm.VmConfig) -> str:
        return "open its control socket"


@dataclass(frozen=True)
class Stdio(vm.Bare):
    """Serial's interactive shell: the guest's shell on ttyS1, on QEMU's stdio."""

    def qemu_args(self, config: vm.VmConfig) -> list[str]:
        return ["-serial", "stdio"]

    def kernel_args(self) -> str:
        return "pte_harness.interactive"


@dataclass(frozen=True)
class PortForward:
    """Ssh: no shell on a serial port; the guest's sshd (given the client's key on the
    kernel command line) behind a host port forward on 127.0.0.1 only."""

    authkey: str  # base64 of the client's ed25519 public key
    port: int = 0  # the host port forwarded to the guest's port 22; 0: a free one at start

    def qemu_args(self, config: vm.VmConfig) -> list[str]:
        return ["-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:{vm.LOOPBACK}:{self.port}-:22",
                "-device", "virtio-net-pci,netdev=n0,romfile="]

    def kernel_args(self) -> str:
        return f"pte_harness.ssh pte_harness.authkey={self.authkey}"

    def bind(self) -> vm.Wiring:
        return self if self.port else replace(self, port=vm.free_port())

    def ready(self, config: vm.VmConfig, process: subprocess.Popen) -> vm.Qemu | None:
        if (vm.LOOPBACK, self.port) in vm.listening(process.pid):
            return vm.Qemu(config, process, None)
        return None

    def awaited(self, config: vm.VmConfig) -> str:
        return f"listen on {vm.LOOPBACK}:{self.port}"


def forwarded_port(config: vm.VmConfig) -> int:
    """The host port of an ssh guest's forward."""
    assert isinstance(config.wiring, PortForward), config.wiring
    return config.wiring.port


@dataclass(frozen=True)
class BootPlan:
    """What one boot needs from its transport: how QEMU is wired, and the client key."""

    wiring: vm.Wiring
    client_key: ClientKey | None = None


class Transport(Protocol):
    name: str
    fragments: tuple[str, ...]  # kconfigs/ fragments the kernel needs, merged last
    boot_ratio_target: float | None  # bench: harness boot to first command / bare QEMU boot

    def host_key(self, build_dir: Path) -> HostKey | None:
        """What the image must serve (ssh: the build's host key), kept beside the build."""

    def plan(self) -> BootPlan: ...

    def connect(self, qemu: vm.Qemu, plan: BootPlan, host_key: HostKey | None, timeout: float,
                context: Callable[[], str], log: TextIO) -> Channel: ...

    def shell(self, boot: vm.VmConfig, start: Callable[[], Any], host_key: HostKey | None,
              print_qemu: bool) -> int:
        """An interactive shell in a guest of ``boot``'s machine (its wiring this transport's
        to choose; ``start()`` boots a session, for transports that talk to a running
        guest); its exit status."""


class Serial:
    name = "serial"
    fragments: tuple[str, ...] = ()
    boot_ratio_target: float | None = 1.3

    def host_key(self, build_dir: Path) -> HostKey | None:
        return None

    def plan(self) -> BootPlan:
        return BootPlan(ControlSocket())

    def connect(self, qemu: vm.Qemu, plan: BootPlan, host_key: HostKey | None, timeout: float,
                context: Callable[[], str], log: TextIO) -> Channel:
        assert qemu.channel is not None
        channel = pexpect.fdpexpect.fdspawn(qemu.channel.fileno())  # bytes: output unchanged
        channel.logfile_read = log.buffer
        guest = Guest(channel, context=context)
        guest.wait_ready(timeout)
        return guest

    def shell(self, boot: vm.VmConfig, start: Callable[[], Any], host_key: HostKey | None,
              print_qemu: bool) -> int:
        config = replace(boot, wiring=Stdio())
        config.run_dir.mkdir(parents=True, exist_ok=True)
        if print_qemu:
            say(f"QEMU command line: {config.shell_command()}")
        say(f"guest shell ({config.accel}); kernel log in {config.console_log}; "
            "'exit' or Ctrl-a x ends it")
        return subprocess.run(config.command()).returncode


class Ssh:
    name = "ssh"
    fragments: tuple[str, ...] = ("net.config",)
    boot_ratio_target: float | None = None  # its boot starts a daemon too: no target

    def host_key(self, build_dir: Path) -> HostKey | None:
        return sshkeys.host_key(build_dir / "ssh")

    def plan(self) -> BootPlan:
        key = sshkeys.new_client_key()
        return BootPlan(PortForward(key.public_blob), key)

    def connect(self, qemu: vm.Qemu, plan: BootPlan, host_key: HostKey | None, timeout: float,
                context: Callable[[], str], log: TextIO) -> Channel:
        if host_key is None or plan.client_key is None:
            raise UsageError("the ssh transport needs an image built for it (a host key)")
        from harness.guest.ssh import SshGuest  # paramiko: imported only for ssh boots

        return SshGuest.connect(forwarded_port(qemu.config), host_key, plan.client_key, timeout,
                                alive=lambda: qemu.exited() is None, context=context, log=log)

    def shell(self, boot: vm.VmConfig, start: Callable[[], Any], host_key: HostKey | None,
              print_qemu: bool) -> int:
        """Boot an ssh guest and hand the terminal to OpenSSH's client, pinned to the guest's
        host key, with this boot's client key in a private temporary directory."""
        if shutil.which("ssh") is None:
            raise UsageError("ssh not found: install openssh-client")
        from harness.guest.ssh import known_host

        with start() as session, \
                tempfile.TemporaryDirectory(prefix="pte-harness-ssh-") as tmp:
            if print_qemu:
                say(f"QEMU command line: {session.config.shell_command()}")
            assert host_key is not None and session.plan.client_key is not None
            port = forwarded_port(session.config)
            identity, known = Path(tmp) / "id_ed25519", Path(tmp) / "known_hosts"
            identity.write_text(session.plan.client_key.private_openssh)
            identity.chmod(0o600)
            known.write_text(f"{known_host(port)} {host_key.public}\n")
            say(f"guest shell over ssh ({session.verdict.accel}, {known_host(port)}); kernel "
                f"log in {session.config.console_log}; 'exit' ends it")
            return subprocess.run(["ssh", "-p", str(port), "-i", str(identity),
                                   "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                                   "-o", f"UserKnownHostsFile={known}",
                                   "-o", "GlobalKnownHostsFile=/dev/null",
                                   "-o", "StrictHostKeyChecking=yes", "-o", "ServerAliveInterval=5",
                                   f"root@{vm.LOOPBACK}"]).returncode


TRANSPORTS: dict[str, Transport] = {"serial": Serial(), "ssh": Ssh()}


def by_name(name: str) -> Transport:
    try:
        return TRANSPORTS[name]
    except KeyError:
        raise UsageError(f"transport must be one of {', '.join(TRANSPORTS)}, not {name!r}") from None
