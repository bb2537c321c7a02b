"""`pte-harness doctor`: each prerequisite with OK/missing and how to get it."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.cache import read_json, subdir
from harness.guest.image import is_static


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _program(name: str, package: str, required: bool = True) -> Check:
    path = shutil.which(name)
    return Check(name, path is not None, path or "not on PATH", f"apt-get install {package}", required)


def _file(name: str, path: str, package: str) -> Check:
    return Check(name, Path(path).exists(), path, f"apt-get install {package}")


def checks() -> list[Check]:
    busybox = Path("/bin/busybox")
    result = [
        Check("python >= 3.11", sys.version_info >= (3, 11), sys.version.split()[0]),
        _program("qemu-system-x86_64", "qemu-system-x86"),
        Check("static busybox", busybox.is_file() and is_static(busybox), str(busybox),
              "apt-get install busybox-static"),
        _file("linux-source-6.12", "/usr/src/linux-source-6.12.tar.xz", "linux-source-6.12"),
    ]
    for name, package in [("gcc", "gcc"), ("make", "make"), ("flex", "flex"), ("bison", "bison"),
                          ("bc", "bc"), ("patch", "patch"), ("git", "git"), ("cpio", "cpio"),
                          ("xz", "xz-utils")]:
        result.append(_program(name, package))
    result += [
        _file("libelf headers", "/usr/include/libelf.h", "libelf-dev"),
        _file("openssl headers", "/usr/include/openssl/ssl.h", "libssl-dev"),
        _program("ccache", "ccache", required=False),
        # --transport ssh only
        Check("dropbear (for --transport ssh)", Path("/usr/sbin/dropbear").is_file(),
              "/usr/sbin/dropbear", "apt-get install dropbear-bin", required=False),
        _program("dropbearkey", "dropbear-bin", required=False),
        _program("ssh", "openssh-client", required=False),
    ]
    return result


def kvm_status() -> str:
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm: guests run under TCG"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm not accessible to this user: guests run under TCG"
    verdict = read_json(subdir("state") / "kvm-verdict.json")
    if verdict:
        return f"{verdict['accel']} ({verdict['reason']})"
    return "/dev/kvm present; not probed yet (the first boot with --accel auto probes it)"


def main() -> int:
    missing = 0
    for check in checks():
        state = "OK" if check.ok else ("MISSING" if check.required else "optional, missing")
        line = f"{state:>8}  {check.name}: {check.detail}"
        if not check.ok:
            line += f"  -> {check.fix}"
            missing += check.required
        print(line)
    print(f"     KVM  {kvm_status()}")
    return 0 if missing == 0 else 240
