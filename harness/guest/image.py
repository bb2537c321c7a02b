"""Stage 5: the guest's newc initramfs (static busybox, init, guest scripts, host programs)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.cache import subdir
from harness.errors import BuildError, UsageError

READY = "PTE-HARNESS-READY"
GUEST_SCRIPT_DIR = "/scripts"
GUEST_PATH = f"{GUEST_SCRIPT_DIR}:/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin"
GUEST_HOST_KEY = "/etc/dropbear/dropbear_ed25519_host_key"
GUEST_IP, GUEST_NET_PREFIX, HOST_IP = "10.0.2.15", 24, "10.0.2.2"  # QEMU user networking
DROPBEAR = Path("/usr/sbin/dropbear")

INIT_TEMPLATE = Path(__file__).with_name("init.sh")  # @NAME@ stands for the constant NAME


def init_script() -> str:
    """The guest's /init: init.sh with the constants it names filled in."""
    values = {"GUEST_PATH": GUEST_PATH, "READY": READY, "GUEST_IP": GUEST_IP,
              "GUEST_NET_PREFIX": str(GUEST_NET_PREFIX), "HOST_IP": HOST_IP,
              "GUEST_HOST_KEY": GUEST_HOST_KEY}
    text = INIT_TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    if "@" in "".join(line for line in text.splitlines() if not line.lstrip().startswith("#")):
        raise AssertionError(f"{INIT_TEMPLATE} names a constant init_script() does not fill")
    return text


# Files the ssh transport needs: an account for root with a shell, name-service files for
# glibc (dropbear is linked against it), a profile giving login shells the guest PATH.
SSH_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
    "etc/shells": "/bin/sh\n",
    "etc/nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\n",
    "etc/profile": f"export PATH={GUEST_PATH}\n",
}


@dataclass(frozen=True)
class ImageRequest:
    busybox: Path = Path("/bin/busybox")
    scripts: Path | None = None
    sources: Path | None = None  # *.c compiled statically into /usr/local/bin
    programs: tuple[Path, ...] = ()
    host_key: Path | None = None  # a dropbear host key: the image serves ssh (dropbear in it)


@dataclass(frozen=True)
class Entry:
    """One member of the initramfs."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def newc(entries: list[Entry]) -> bytes:
    """Serialise entries as a newc ("070701") cpio archive."""
    out = bytearray()
    for ino, entry in enumerate(entries + [Entry("TRAILER!!!", 0)], 1):
        name = entry.name.encode() + b"\0"
        fields = [ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0,
                  entry.rdev[0], entry.rdev[1], len(name), 0]
        out += b"070701" + b"".join(b"%08X" % value for value in fields) + name
        out += b"\0" * (-len(out) % 4)
        out += entry.data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def is_static(binary: Path) -> bool:
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    return "not a dynamic executable" in (result.stdout + result.stderr) or "statically linked" in result.stdout


def shared_libraries(binary: Path) -> list[Path]:
    """The libraries (and loader) ``ldd`` says ``binary`` needs."""
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if result.returncode != 0:
        return []
    libs = []
    for line in result.stdout.splitlines():
        match = re.search(r"(/\S+) \(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def compile_static(program: Path) -> Path:
    """A static binary of one C file, cached by the file's contents."""
    digest = hashlib.sha256(program.read_bytes()).hexdigest()[:24]
    binary = subdir("guest-bin") / f"{program.stem}-{digest}"
    if binary.is_file():
        return binary
    tmp = binary.with_name(binary.name + f".tmp{os.getpid()}")
    result = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", str(tmp),
                             str(program)], capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"guest program {program} does not compile", result.stderr)
    os.replace(tmp, binary)
    return binary


def entries_for(request: ImageRequest) -> list[Entry]:
    if not request.busybox.is_file():
        raise UsageError(f"{request.busybox} not found: install busybox-static")
    if not is_static(request.busybox):
        raise UsageError(f"{request.busybox} is dynamically linked: install busybox-static")
    dirs = ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin", "proc",
            "sys", "dev", "tmp", "root", "etc", GUEST_SCRIPT_DIR.strip("/")]
    entries = [Entry(d, stat.S_IFDIR | 0o755) for d in dirs]
    entries.append(Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(Entry("bin/busybox", stat.S_IFREG | 0o755, request.busybox.read_bytes()))
    entries.append(Entry("init", stat.S_IFREG | 0o755, init_script().encode()))
    if request.scripts and request.scripts.is_dir():
        for script in sorted(request.scripts.iterdir()):
            if script.is_file():
                entries.append(Entry(f"{GUEST_SCRIPT_DIR.strip('/')}/{script.name}",
                                     stat.S_IFREG | 0o755, script.read_bytes()))
    if request.sources and request.sources.is_dir():
        for program in sorted(request.sources.glob("*.c")):
            entries.append(Entry(f"usr/local/bin/{program.stem}", stat.S_IFREG | 0o755,
                                 compile_static(program).read_bytes()))
    programs = request.programs
    if request.host_key is not None:
        entries += ssh_entries(request.host_key)
        programs = (*programs, DROPBEAR)
    seen = {e.name for e in entries}
    for program in programs:
        entries += program_entries(program, seen)
    return entries


def ssh_entries(host_key: Path) -> list[Entry]:
    """The host key (mode 600), root's ~/.ssh (700; init writes authorized_keys) and SSH_FILES."""
    if not DROPBEAR.is_file():
        raise UsageError(f"{DROPBEAR} not found: install dropbear-bin")
    entries = [Entry("etc/dropbear", stat.S_IFDIR | 0o700),
               Entry(GUEST_HOST_KEY.strip("/"), stat.S_IFREG | 0o600, host_key.read_bytes()),
               Entry("root/.ssh", stat.S_IFDIR | 0o700)]
    entries += [Entry(name, stat.S_IFREG | 0o644, text.encode()) for name, text in SSH_FILES.items()]
    return entries


def program_entries(program: Path, seen: set[str]) -> list[Entry]:
    """A host program with the libraries ldd names, and the directories they sit in
    (names already in ``seen`` are skipped; ``seen`` is updated)."""
    resolved = Path(shutil.which(str(program)) or program)
    if not resolved.is_file():
        raise UsageError(f"host program {program} not found")
    entries = []
    for path in [resolved, *shared_libraries(resolved)]:
        real = path.resolve()
        parts = path.parent.relative_to("/").parts
        for depth in range(1, len(parts) + 1):
            directory = "/".join(parts[:depth])
            if directory not in seen:
                seen.add(directory)
                entries.append(Entry(directory, stat.S_IFDIR | 0o755))
        name = str(path.relative_to("/"))
        if name not in seen:
            seen.add(name)
            entries.append(Entry(name, stat.S_IFREG | 0o755, real.read_bytes()))
    return entries


def build_initramfs(request: ImageRequest) -> Path:
    """Write (or reuse) the initramfs for ``request`` and return its path."""
    entries = entries_for(request)
    data = newc(entries)
    path = subdir("initramfs") / (hashlib.sha256(data).hexdigest()[:32] + ".cpio")
    if not path.is_file():
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        private = request.host_key is not None  # it holds a private key: this user's only
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    return path
