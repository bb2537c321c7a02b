import os
import stat
import sys
import time

import pytest

from harness.guest import transport, vm
from harness.errors import BootError, UsageError

MACHINE = dict(accel="tcg", memory="1G", cpus=1, cpu="max", append="", numa=0, hotplug="")


def config(tmp_path, **kw):
    values = {**MACHINE, "wiring": transport.ControlSocket(), **kw}
    return vm.VmConfig(tmp_path / "bzImage", tmp_path / "initrd.cpio", tmp_path / "run", **values)


def ssh(port=0, authkey="AAAAkey"):
    return transport.PortForward(authkey, port)


def test_command_line(tmp_path):
    command = config(tmp_path, accel="tcg", memory="2G", cpus=1, append="pte_mapped_cache=off").command()
    assert command[:2] == ["qemu-system-x86_64", "-accel"]
    joined = " ".join(command)
    for part in ["-accel tcg", "-m 2G", "-smp 1", "-cpu max", "-no-reboot", "-nodefaults",
                 "-display none", f"-kernel {tmp_path}/bzImage", f"-initrd {tmp_path}/initrd.cpio",
                 f"-serial file:{tmp_path}/run/console.log", "-serial chardev:ctl"]:
        assert part in joined
    append = command[command.index("-append") + 1]
    assert append.startswith("console=ttyS0 panic=-1") and append.endswith("pte_mapped_cache=off")
    assert "server=on,wait=on" in joined


def test_numa_and_hotplug_memory(tmp_path):
    command = config(tmp_path, memory="1G", cpus=3, numa=2, hotplug="512M").command()
    joined = " ".join(command)
    assert "-m 1G,slots=4,maxmem=1536M" in joined
    assert "-object memory-backend-ram,id=ram-node0,size=512M" in joined
    assert "-numa node,nodeid=0,memdev=ram-node0,cpus=0,cpus=2" in joined
    assert "-numa node,nodeid=1,memdev=ram-node1,cpus=1" in joined
    assert "-smp 3,sockets=3,cores=1,threads=1" in joined  # no LLC shared across nodes
    assert f"-qmp unix:{config(tmp_path).qmp_socket},server=on,wait=off" in joined
    uneven = " ".join(config(tmp_path, memory="1000M", numa=3).command())
    assert "size=333M" in uneven and "id=ram-node2,size=334M" in uneven


def test_one_node_guest_has_no_numa_options(tmp_path):
    command = config(tmp_path).command()
    assert "-numa" not in command and command[command.index("-m") + 1] == "1G"


@pytest.mark.parametrize("size, mib", [("512M", 512), ("1G", 1024), ("2048", 2048), ("1g", 1024),
                                       ("2GB", 2048)])
def test_sizes(size, mib):
    assert vm.mebibytes(size, "memory") == mib


@pytest.mark.parametrize("size", ["", "0", "1.5G", "G", "12K", "lots"])
def test_bad_sizes_name_the_option(size):
    with pytest.raises(UsageError, match="--hotplug"):
        vm.mebibytes(size, "hotplug")


def test_interactive_uses_stdio(tmp_path):
    command = config(tmp_path, wiring=transport.Stdio()).command()
    assert command[-2:] == ["-serial", "stdio"]
    assert "pte_harness.interactive" in command[command.index("-append") + 1]


def test_bare_has_no_control_channel(tmp_path):
    command = config(tmp_path, wiring=vm.BARE).command()
    assert "-chardev" not in command and command.count("-serial") == 1
    assert "pte_harness.bare" in command[command.index("-append") + 1]


def test_shell_command_quotes(tmp_path):
    assert "'console=ttyS0 panic=-1" in config(tmp_path).shell_command()


def fake_qemu(tmp_path, body):
    path = tmp_path / "fake-qemu"
    path.write_text(f"#!{sys.executable}\nimport sys, time\nargs = sys.argv[1:]\n"
                    "if args == ['--version']:\n    print('QEMU emulator version 0-fake'); sys.exit(0)\n"
                    + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_qemu_exiting_at_once_reports_stderr(tmp_path):
    qemu = fake_qemu(tmp_path, "sys.stderr.write('qemu: could not load kernel\\n'); sys.exit(1)\n")
    with pytest.raises(BootError, match="QEMU exited at once") as info:
        vm.start(config(tmp_path, qemu=qemu))
    assert "could not load kernel" in str(info.value)


def test_qemu_missing(tmp_path):
    with pytest.raises(UsageError, match="install qemu-system-x86"):
        vm.start(config(tmp_path, qemu="no-such-qemu-binary"))


def test_accel_requested_tcg(tmp_path):
    assert vm.choose_accel("tcg", tmp_path / "k", tmp_path / "i").accel == "tcg"


def test_accel_auto_without_kvm(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    verdict = vm.choose_accel("auto", tmp_path / "k", tmp_path / "i")
    assert verdict.accel == "tcg" and "/dev/kvm" in verdict.reason


HANGS = "time.sleep(60)\n"
BOOTS = ("console = [a for a in args if a.startswith('file:')][0][5:]\n"
         "open(console, 'w').write('Linux version\\nPTE-HARNESS-READY\\n')\ntime.sleep(60)\n")


# a hanging probe waits its whole timeout; a booting one ends at the ready line
@pytest.mark.parametrize("body, accel, timeout", [(HANGS, "tcg", 0.2), (BOOTS, "kvm", 5.0)])
def test_auto_probe_boots_and_caches(cache, tmp_path, monkeypatch, body, accel, timeout):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    qemu = fake_qemu(tmp_path, body)
    start = time.monotonic()
    verdict = vm.choose_accel("auto", tmp_path / "k", tmp_path / "i", qemu=qemu,
                              probe_timeout=timeout)
    assert verdict.accel == accel
    assert time.monotonic() - start < 5
    cached = vm.choose_accel("auto", tmp_path / "k", tmp_path / "i", qemu=qemu,
                             probe_timeout=timeout)
    assert cached.accel == accel and "cached" in cached.reason


def test_ssh_command_line(tmp_path):
    cfg = config(tmp_path, wiring=ssh(40022))
    command = cfg.command()
    assert "-chardev" not in command and command.count("-serial") == 1  # kernel log only
    netdev = command[command.index("-netdev") + 1]
    assert netdev == "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"
    assert command[command.index("-device") + 1] == "virtio-net-pci,netdev=n0,romfile="
    append = command[command.index("-append") + 1]
    assert " pte_harness.ssh pte_harness.authkey=AAAAkey" in append


def test_serial_command_line_has_no_network(tmp_path):
    command = config(tmp_path).command()
    assert "-netdev" not in command and "-device" not in command
    assert "pte_harness.ssh" not in command[command.index("-append") + 1]


def test_parse_proc_address():
    assert vm.parse_proc_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert vm.parse_proc_address("00000000:0016") == ("0.0.0.0", 22)
    assert vm.parse_proc_address("00000000000000000000000001000000:0016") == ("::1", 22)


def test_listening_finds_own_socket():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert ("127.0.0.1", port) in vm.listening(os.getpid())
    assert ("127.0.0.1", port) not in vm.listening(os.getpid())


# A fake QEMU that listens where its -netdev hostfwd says, or fails like QEMU when told to.
LISTENS = ("import re, socket\n"
           "netdev = args[args.index('-netdev') + 1]\n"
           "port = int(re.search(r'127.0.0.1:(\\d+)-', netdev).group(1))\n"
           "if port in TAKEN:\n"
           "    sys.stderr.write(f\"qemu: -netdev {netdev}: Could not set up host forwarding rule 'tcp:127.0.0.1:{port}-:22'\\n\"); sys.exit(1)\n"
           "s = socket.socket(); s.bind(('127.0.0.1', port)); s.listen(); time.sleep(60)\n")


def test_ssh_start_waits_for_forward(tmp_path):
    qemu = fake_qemu(tmp_path, "TAKEN = ()\n" + LISTENS)
    started = vm.start(config(tmp_path, qemu=qemu, wiring=ssh()))
    try:
        port = transport.forwarded_port(started.config)
        assert port > 0 and started.channel is None
        assert ("127.0.0.1", port) in vm.listening(started.process.pid)
        assert f"127.0.0.1:{port}-:22" in (tmp_path / "run" / "qemu-cmdline.txt").read_text()
    finally:
        started.stop()


def test_ssh_start_retries_a_taken_port(tmp_path, monkeypatch):
    ports = iter([41001, 41002, 41003])
    monkeypatch.setattr(vm, "free_port", lambda: next(ports))
    qemu = fake_qemu(tmp_path, "TAKEN = (41001, 41002)\n" + LISTENS)
    started = vm.start(config(tmp_path, qemu=qemu, wiring=ssh()))
    try:
        assert transport.forwarded_port(started.config) == 41003
    finally:
        started.stop()


def test_ssh_fixed_port_taken_is_an_error(tmp_path):
    qemu = fake_qemu(tmp_path, "TAKEN = (41005,)\n" + LISTENS)
    with pytest.raises(BootError, match="QEMU exited at once") as info:
        vm.start(config(tmp_path, qemu=qemu, wiring=ssh(41005)))
    assert "host forwarding rule" in str(info.value)


def test_missing_qemu_is_a_usage_error_not_a_traceback(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    with pytest.raises(UsageError, match="not-a-qemu not found: install qemu-system-x86"):
        vm.choose_accel("auto", tmp_path / "k", tmp_path / "i", qemu="not-a-qemu")
    with pytest.raises(UsageError, match="not found"):
        vm.start(config(tmp_path, qemu="not-a-qemu"))
