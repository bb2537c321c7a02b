"""The whole path on the real default tree: Debian's linux-source-6.12 with the series.

These use the default kernel, the one the kernel suite tests (built once, reused here), and
boot it under QEMU; two build variants that fail early check the build's errors.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.kernel import patches, source
from harness.options import PATCH_DIR
from tests.processes import descendants, gone

pytestmark = pytest.mark.kernel

HARNESS = [sys.executable, "-m", "harness.cli"]


def harness(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> Path:
    result = harness("build")
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


def test_second_build_reuses_image(image):
    start = time.monotonic()
    result = harness("build")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip().splitlines()[-1]) == image
    assert "reused" in result.stderr and "building" not in result.stderr
    assert time.monotonic() - start < 30


def test_exec_prints_guest_version(image):
    result = harness("exec", "--", "cat", "/proc/version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Linux version 6.12.")
    assert "accelerator" not in result.stdout  # harness messages stay on stderr


def test_exec_passes_exit_status(image):
    result = harness("exec", "--", "sh", "-c", "echo out; exit 7")
    assert result.returncode == 7, result.stderr
    assert result.stdout == "out\n"


def test_guest_sees_debugfs_and_vmstat(image):
    result = harness("exec", "--", "sh", "-c",
                     "grep -c . /sys/kernel/debug/page_tables/kernel; grep direct_map_level2 /proc/vmstat")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert int(lines[0]) > 10 and lines[1].startswith("direct_map_level2_splits ")


def test_panic_is_a_crash_not_a_hang(image):
    start = time.monotonic()
    result = harness("exec", "--", "sh", "-c", "echo c > /proc/sysrq-trigger")
    assert result.returncode == 246, result.stderr
    assert "Kernel panic - not syncing: sysrq triggered crash" in result.stderr
    assert time.monotonic() - start < 60


def test_command_timeout(image):
    result = harness("exec", "--timeout", "3", "--", "sleep", "30")
    assert result.returncode == 247, result.stderr
    assert "timed out after 3s" in result.stderr and "kernel log (tail)" in result.stderr


def test_qemu_that_cannot_start_is_a_boot_error(image):
    """A QEMU that refuses its command line (an unknown -cpu model) is a boot error (245)
    quoting QEMU, not a hang or a traceback."""
    result = harness("exec", "--cpu", "no-such-cpu-model", "--", "true", timeout=120)
    assert result.returncode == 245, result.stderr
    assert "boot error: guest went away while booting: QEMU exit status 1" in result.stderr
    assert "unable to find CPU model 'no-such-cpu-model'" in result.stderr  # QEMU's own words


def test_a_guest_that_stops_answering_times_out_and_qemu_is_stopped(image, tmp_path):
    """QEMU frozen (SIGSTOP) mid-command: the guest neither answers nor crashes. The
    command times out (247) within its deadline and the frozen QEMU is killed."""
    process = subprocess.Popen([*HARNESS, "exec", "--timeout", "10", "--run-dir", str(tmp_path),
                                "--", "sh", "-c", "echo started; sleep 1000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        assert process.stdout.readline() == "started\n"
        qemus = [pid for pid, command in descendants(process.pid).items()
                 if Path(command.split()[0]).name.startswith("qemu-system")]
        assert len(qemus) == 1, qemus
        os.kill(qemus[0], signal.SIGSTOP)
        start = time.monotonic()
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 247, errors
        assert "timed out after 10s" in errors
        assert time.monotonic() - start < 60
        assert gone(qemus[0], wait=10), "the frozen QEMU was left running"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_option_that_cannot_be_set(image, tmp_path):
    fragment = tmp_path / "i915.config"
    fragment.write_text("CONFIG_DRM_I915=y\n")
    result = harness("build", "--kconfig", str(fragment))
    assert result.returncode == 243, result.stderr
    assert "CONFIG_DRM_I915=y" in result.stderr and "PCI=n" in result.stderr


def prepend_patch(tree: Path, relpath: str, line: str) -> str:
    """A unified diff that puts ``line`` before the first three lines of ``relpath``."""
    context = (tree / relpath).read_text().splitlines()[:3]
    return (f"--- a/{relpath}\n+++ b/{relpath}\n@@ -1,3 +1,4 @@\n+{line}\n"
            + "".join(f" {text}\n" for text in context))


def test_compile_error(image, tmp_path):
    series = tmp_path / "broken"
    series.mkdir()
    (series / "0001-break.patch").write_text(prepend_patch(
        source.resolve(source.parse_spec("debian:6.12")).path, "arch/x86/kernel/asm-offsets.c",
        "#error pte-harness deliberate compile error"))
    (series / "series").write_text("0001-break.patch\n")
    result = harness("build", "--series", str(series), "--no-default-kconfig")
    assert result.returncode == 244, result.stderr
    assert "error: #error pte-harness deliberate compile error" in result.stderr
    assert "build.log" in result.stderr


PROBE = ("dmesg | grep -o '[0-9a-f]*:\\?enabled for'; "
         "cat /sys/kernel/debug/pte_mapped_test/result")


def test_a_changed_patch_changes_the_kernel(image, tmp_path):
    """Builds share one source and object directory per release, so each of these is
    incremental. A one-line change in one patch must reach the kernel; so must undoing it in
    the next series (mm/pte_mapped.c goes back to older bytes while another file changes).
    The edits carry a fresh token, so no earlier run's cached image can stand in for them."""
    token = secrets.token_hex(4)
    series = PATCH_DIR / "v6.12"
    first = patches.edited_copy(series, tmp_path / "first",  # mm/pte_mapped.c
                                'pr_info("enabled for', f'pr_info("{token}:enabled for')
    second = patches.edited_copy(series, tmp_path / "second",  # lib/test_pte_mapped.c
                                 '"requested %lu succeeded', f'"{token}:requested %lu succeeded')
    outputs = []
    for edited in (first, second):
        result = harness("exec", "--series", str(edited), "--", "sh", "-c", PROBE)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "objects compiled (incremental build)" in result.stderr, result.stderr[-3000:]
        outputs.append(result.stdout)
    assert outputs[0].startswith(f"{token}:enabled for\nrequested "), outputs[0]
    assert outputs[1].startswith(f"enabled for\n{token}:requested "), outputs[1]
