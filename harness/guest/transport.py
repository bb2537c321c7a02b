"""Transports: how commands reach a booted guest. Serial (a shell on ttyS1, through a unix
socket QEMU waits on) and ssh (dropbear over virtio-net, paramiko on the host) are two
implementations of one protocol: what the kernel and the image need, how QEMU is started, how
a boot is connected, and an interactive shell. Nothing outside this module asks a transport's
name what to do; ``by_name`` is the one place a name becomes a transport.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, TextIO

import pexpect.fdpexpect

from harness.errors import UsageError
from harness.guest import sshkeys, vm
from harness.guest.serial import CommandResult, Guest
from harness.guest.ssh import SshGuest, known_host
from harness.guest.sshkeys import ClientKey, HostKey
from harness.progress import say


class Channel(Protocol):
    """A connected guest: what a Session drives."""

    def run(self, command: str, timeout: float) -> CommandResult: ...

    def put(self, local: Path, remote: str, timeout: float) -> None: ...

    def get(self, remote: str, local: Path, timeout: float) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BootPlan:
    """What one boot needs from its transport: QEMU's mode and the kernel's authorized key."""

    mode: str  # vm.VmConfig mode
    client_key: ClientKey | None = None

    @property
    def authkey(self) -> str:
        return self.client_key.public_blob if self.client_key else ""


class Transport(Protocol):
    name: str
    fragments: tuple[str, ...]  # kconfigs/ fragments the kernel needs, merged last

    def host_key(self, build_dir: Path) -> HostKey | None:
        """What the image must serve (ssh: the build's host key), kept beside the build."""

    def plan(self) -> BootPlan: ...

    def connect(self, qemu: vm.Qemu, plan: BootPlan, host_key: HostKey | None, timeout: float,
                context: Callable[[], str], log: TextIO) -> Channel: ...

    def shell(self, boot: vm.VmConfig, start: Callable[[], Any], host_key: HostKey | None,
              print_qemu: bool) -> int:
        """An interactive shell in a guest booted as ``boot`` says (``start()`` boots a
        session, for transports that talk to a running guest); its exit status."""


class Serial:
    name = "serial"
    fragments: tuple[str, ...] = ()

    def host_key(self, build_dir: Path) -> HostKey | None:
        return None

    def plan(self) -> BootPlan:
        return BootPlan("control")

    def connect(self, qemu: vm.Qemu, plan: BootPlan, host_key: HostKey | None, timeout: float,
                context: Callable[[], str], log: TextIO) -> Channel:
        assert qemu.channel is not None
        channel = pexpect.fdpexpect.fdspawn(qemu.channel.fileno(), encoding="utf-8",
                                            codec_errors="replace")
        channel.logfile_read = log
        guest = Guest(channel, context=context)
        guest.wait_ready(timeout)
        return guest

    def shell(self, boot: vm.VmConfig, start: Callable[[], Any], host_key: HostKey | None,
              print_qemu: bool) -> int:
        config = replace(boot, mode="interactive")
        config.run_dir.mkdir(parents=True, exist_ok=True)
        if print_qemu:
            say(f"QEMU command line: {config.shell_command()}")
        say(f"guest shell ({config.accel}); kernel log in {config.console_log}; "
            "'exit' or Ctrl-a x ends it")
        return subprocess.run(config.command()).returncode


class Ssh:
    name = "ssh"
    fragments: tuple[str, ...] = ("net.config",)

    def host_key(self, build_dir: Path) -> HostKey | None:
        return sshkeys.host_key(build_dir / "ssh")

    def plan(self) -> BootPlan:
        return BootPlan("ssh", sshkeys.new_client_key())

    def connect(self, qemu: vm.Qemu, plan: BootPlan, host_key: HostKey | None, timeout: float,
                context: Callable[[], str], log: TextIO) -> Channel:
        if host_key is None or plan.client_key is None:
            raise UsageError("the ssh transport needs an image built for it (a host key)")
        return SshGuest.connect(qemu.config.ssh_port, host_key, plan.client_key, timeout,
                                alive=lambda: qemu.exited() is None, context=context, log=log)

    def shell(self, boot: vm.VmConfig, start: Callable[[], Any], host_key: HostKey | None,
              print_qemu: bool) -> int:
        """Boot an ssh guest and hand the terminal to OpenSSH's client, pinned to the guest's
        host key, with this boot's client key in a private temporary directory."""
        if shutil.which("ssh") is None:
            raise UsageError("ssh not found: install openssh-client")
        with start() as session, \
                tempfile.TemporaryDirectory(prefix="pte-harness-ssh-") as tmp:
            if print_qemu:
                say(f"QEMU command line: {session.config.shell_command()}")
            assert host_key is not None and session.plan.client_key is not None
            port = session.config.ssh_port
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
