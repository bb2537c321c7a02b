import os
import stat
import sys
import time

import pytest

from harness import vm
from harness.errors import BootError, UsageError


def config(tmp_path, **kw):
    return vm.VmConfig(tmp_path / "bzImage", tmp_path / "initrd.cpio", tmp_path / "run", **kw)


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


def test_interactive_uses_stdio(tmp_path):
    command = config(tmp_path, mode="interactive").command()
    assert command[-2:] == ["-serial", "stdio"]
    assert "pte_harness.interactive" in command[command.index("-append") + 1]


def test_bare_has_no_control_channel(tmp_path):
    command = config(tmp_path, mode="bare").command()
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


@pytest.mark.parametrize("body, accel", [(HANGS, "tcg"), (BOOTS, "kvm")])
def test_auto_probe_boots_and_caches(cache, tmp_path, monkeypatch, body, accel):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    qemu = fake_qemu(tmp_path, body)
    start = time.monotonic()
    verdict = vm.choose_accel("auto", tmp_path / "k", tmp_path / "i", qemu=qemu, probe_timeout=1.5)
    assert verdict.accel == accel
    assert time.monotonic() - start < 5
    cached = vm.choose_accel("auto", tmp_path / "k", tmp_path / "i", qemu=qemu, probe_timeout=1.5)
    assert cached.accel == accel and "cached" in cached.reason
