"""The ssh transport on real guests: the patched default kernel with kconfigs/net.config.

The first test builds that kernel when the cache lacks it (a few minutes); every test boots
fresh guests under QEMU.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness import pipeline
from harness.guest import sshkeys, transport, vm
from harness.errors import GuestTimeout
from harness.options import Options
from harness.guest.session import Session
from harness.guest.ssh import HostKeyMismatch

pytestmark = pytest.mark.kernel

HARNESS = [sys.executable, "-m", "harness.cli"]
SSH = Options(transport="ssh")


def harness(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def prepared() -> pipeline.Prepared:
    return pipeline.prepare(SSH)


def boot(prepared: pipeline.Prepared, run_dir: Path, append: str = "",
         boot_timeout: float = 60.0, host_key: sshkeys.HostKey | None = None) -> Session:
    options = pipeline.boot_options(replace(SSH, boot_timeout=boot_timeout), append)
    return Session(prepared.build.image, prepared.initrd, run_dir, options,
                   host_key or prepared.host_key)


SSH_SELECTION = "grouping or reuse or direct_map_accounting"


def test_kernel_suite_over_ssh(prepared, tmp_path):
    """What CI runs over ssh: `pte-harness run --transport ssh -k SSH_SELECTION`. Not the
    shrinker tests: over ssh (since the kernels of 2026-12-02) 10-200 pages move in and out
    of the cache and MemFree while one ptm run reads them, and their exact checks fail."""
    results = tmp_path / "results"
    run = harness("run", "--transport", "ssh", "-k", SSH_SELECTION, "--results", str(results))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((results / "summary.json").read_text())
    assert summary["transport"] == "ssh"
    assert "net.config" in " ".join(summary["kernel"]["fragments"])
    tests = summary["tests"]
    assert len(tests) >= 4 and all(("grouping" in nodeid or "reuse" in nodeid
                                    or "direct_map_accounting" in nodeid) for nodeid in tests)
    for nodeid, entry in tests.items():
        assert entry["outcome"] == "passed", (nodeid, entry)
        assert entry["transports"] and set(entry["transports"]) == {"ssh"}, (nodeid, entry)
        for console in entry["consoles"]:  # the guest's sshd saw the harness log in
            assert "Pubkey auth succeeded for 'root'" in Path(console).read_text(errors="replace")
            control = (Path(console).parent / "control.log").read_text()
            assert "# connected to [127.0.0.1]:" in control and "$ ptm " in control


@pytest.mark.parametrize("transport, size", [("ssh", 1 << 20), ("serial", 64 << 10)])
def test_put_get_byte_identical(transport, size, tmp_path):
    options = replace(Options(), transport=transport)
    ready = pipeline.prepare(options)
    data = os.urandom(size)
    (tmp_path / "sent").write_bytes(data)
    with pipeline.boot(ready, options, tmp_path / "run") as session:
        session.put(tmp_path / "sent", "/tmp/copy")
        result = session.run("sha256sum /tmp/copy")
        assert result.output.split()[0] == hashlib.sha256(data).hexdigest()
        session.get("/tmp/copy", tmp_path / "back")
        session.check()
    assert (tmp_path / "back").read_bytes() == data


def test_sshd_that_never_starts_times_out_clearly(prepared, tmp_path):
    start = time.monotonic()
    with pytest.raises(GuestTimeout) as info:
        boot(prepared, tmp_path / "run", append="pte_harness.sshd=off", boot_timeout=15)
    elapsed = time.monotonic() - start
    assert 15 <= elapsed < 25, elapsed
    text = str(info.value)
    assert "timed out after 15s waiting for the guest's sshd on [127.0.0.1]:" in text
    assert "--- kernel log (tail) ---" in text and "sshd=off, dropbear not started" in text
    assert GuestTimeout.status == 247


def test_wrong_host_key_is_refused(prepared, tmp_path):
    other = sshkeys.host_key(tmp_path / "other-key")
    start = time.monotonic()
    with pytest.raises(HostKeyMismatch, match="not the key pinned for this image") as info:
        boot(prepared, tmp_path / "run", host_key=other)
    assert time.monotonic() - start < 30  # refused, not retried until the deadline
    assert other.pkey().fingerprint in str(info.value)  # the pinned (wrong) key is named
    assert prepared.host_key.pkey().fingerprint in str(info.value)  # the key the guest showed


def non_loopback_address() -> str | None:
    """This machine's address towards the outside (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: only selects a route
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") else address


def test_forward_listens_on_loopback_only(prepared, tmp_path):
    with boot(prepared, tmp_path / "run") as session:
        port = transport.forwarded_port(session.config)
        cmdline = (tmp_path / "run" / "qemu-cmdline.txt").read_text()
        assert f"hostfwd=tcp:127.0.0.1:{port}-:22" in cmdline
        assert vm.listening(session.qemu.process.pid) == [("127.0.0.1", port)]
        address = non_loopback_address()
        if address is not None:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, port), timeout=5).close()
        assert session.run("echo still here").output == "still here\n"


def test_exec_over_ssh_status_and_output(prepared):
    result = harness("exec", "--transport", "ssh", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert result.returncode == 7, result.stderr
    assert result.stdout == "out\nerr\n"


def test_panic_over_ssh_is_a_crash(prepared):
    start = time.monotonic()
    result = harness("exec", "--transport", "ssh", "--", "sh", "-c", "echo c > /proc/sysrq-trigger")
    assert result.returncode == 246, result.stderr
    assert "Kernel panic - not syncing: sysrq triggered crash" in result.stderr
    assert time.monotonic() - start < 60


def test_command_timeout_over_ssh(prepared):
    result = harness("exec", "--transport", "ssh", "--timeout", "3", "--",
                     "sh", "-c", "echo so far; sleep 30")
    assert result.returncode == 247, result.stderr
    assert "timed out after 3s" in result.stderr and "kernel log (tail)" in result.stderr
    assert "--- command output (tail) ---\nso far\n" in result.stderr
