"""Memory hotplug in a running guest: QEMU's pc-dimm devices through QMP, the guest's memory
blocks through sysfs. Every step has a timeout; a refusal names the device or memory block
and what the kernel said."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness.errors import GuestTimeout, HarnessError, UsageError
from harness.guest import vm
from harness.guest.qmp import Qmp
from harness.guest.serial import CommandResult

MEMORY_SYSFS = "/sys/devices/system/memory"
ONLINE_STATES = ("online", "online_kernel", "online_movable")
POLL = 0.1  # seconds between the guest's looks at sysfs
SLACK = 15.0  # the harness's wait on a guest command beyond the guest's own timeout
OST_EJECT = 3  # ACPI_DEVICE_OST source: an eject request
OST_OK = (0, 0x84)  # _OST status: success, ejection in progress (ACPI 6.5, 6.3.5)


class HotplugError(HarnessError):
    """The guest refused a hotplug step: the kernel's behaviour, so a test failure."""

    status = 1
    kind = "hotplug"


@dataclass(frozen=True)
class Dimm:
    """One hotplugged DIMM: QEMU's device and memory backend, where the guest sees it."""

    name: str  # QEMU device id; its backend is "<name>-ram"
    size: int  # bytes
    node: int
    address: int  # guest physical address
    blocks: tuple[int, ...]  # memory block numbers: /sys/devices/system/memory/memoryN


Runner = Callable[[str, float], CommandResult]  # a guest command with its timeout


class Hotplug:
    """Add, online, offline and remove memory in one guest (``Session.hotplug``)."""

    def __init__(self, qmp: Qmp, run: Runner) -> None:
        self.qmp = qmp
        self.run = run
        self.dimms: list[Dimm] = []
        self._block_size = 0
        self._added = 0

    def block_size(self) -> int:
        """The guest's memory block size in bytes (block_size_bytes, hex)."""
        if not self._block_size:
            result = self.run(f"cat {MEMORY_SYSFS}/block_size_bytes", 30.0)
            if result.status != 0:
                raise HotplugError(f"the guest has no {MEMORY_SYSFS} (a kernel without "
                                   f"MEMORY_HOTPLUG?): {result.output.strip()}")
            self._block_size = int(result.output.strip(), 16)
        return self._block_size

    def add(self, size: int | str, node: int = 0, timeout: float = 30.0) -> Dimm:
        """Plug a pc-dimm of ``size`` (bytes, or "512M") into ``node`` and wait until the
        guest shows its memory blocks (offline: onlining is ``online()``'s job)."""
        if isinstance(size, str):
            size = vm.mebibytes(size, "hotplug") << 20
        block = self.block_size()
        if size % block:
            raise UsageError(f"a hotplugged DIMM must be a multiple of the guest's memory "
                             f"block size ({block >> 20}M), not {size >> 20}M")
        self._added += 1
        name = f"hp-dimm{self._added}"
        backend: dict[str, Any] = {"qom-type": "memory-backend-ram", "id": f"{name}-ram",
                                   "size": size}
        self.qmp.execute("object-add", **backend)
        try:
            self.qmp.execute("device_add", driver="pc-dimm", id=name, memdev=f"{name}-ram",
                             node=node)
        except HarnessError:
            self.qmp.execute("object-del", id=f"{name}-ram")
            raise
        found = [d["data"] for d in self.qmp.execute("query-memory-devices")
                 if d.get("data", {}).get("id") == name]
        if not found:
            raise HotplugError(f"QEMU added {name} but query-memory-devices does not list it")
        address = found[0]["addr"]
        dimm = Dimm(name, size, node, address,
                    tuple(range(address // block, (address + size) // block)))
        self.dimms.append(dimm)
        paths = " ".join(f"{MEMORY_SYSFS}/memory{n}" for n in dimm.blocks)
        command = (f"for i in $(seq {int(timeout / POLL)}); do ok=1; for b in {paths}; do "
                   f"[ -e $b ] || ok=0; done; [ $ok = 1 ] && exit 0; sleep {POLL}; done; exit 1")
        if self.run(command, timeout + SLACK).status != 0:
            raise GuestTimeout(f"the guest did not show the memory blocks of {name} "
                               f"({_blocks(dimm)}) within {timeout:.0f}s of QEMU adding it "
                               "(ACPI memory hotplug in the kernel?)")
        return dimm

    def boot_block(self, block: int) -> Dimm:
        """Memory block ``block`` of the guest's boot memory, to online and offline like a
        DIMM's blocks (it cannot be removed; its node is not looked up: -1)."""
        size = self.block_size()
        return Dimm(f"boot memory block {block}", size, -1, block * size, (block,))

    def states(self, dimm: Dimm) -> dict[int, str]:
        """Each block's state as the guest reports it (online, offline, ...)."""
        paths = " ".join(f"{MEMORY_SYSFS}/memory{n}/state" for n in dimm.blocks)
        result = self.run(f"cat {paths}", 30.0)
        if result.status != 0:
            raise HotplugError(f"cannot read the state of {dimm.name}'s memory blocks: "
                               f"{result.output.strip()}")
        return dict(zip(dimm.blocks, result.output.split()))

    def online(self, dimm: Dimm, how: str = "online", timeout: float = 30.0) -> None:
        """Online every block of ``dimm``: ``how`` is online, online_kernel or online_movable."""
        if how not in ONLINE_STATES:
            raise ValueError(f"how must be one of {', '.join(ONLINE_STATES)}, not {how!r}")
        self._write(dimm, how, timeout)

    def offline(self, dimm: Dimm, timeout: float = 30.0) -> None:
        """Offline every block of ``dimm``. The kernel refusing (EBUSY, say) is a
        HotplugError; an offline still running after ``timeout`` seconds (the kernel retries
        until a signal comes) is killed and is a GuestTimeout naming the block."""
        self._write(dimm, "offline", timeout)

    def _write(self, dimm: Dimm, state: str, timeout: float) -> None:
        for block in dimm.blocks:
            path = f"{MEMORY_SYSFS}/memory{block}/state"
            result = self.run(f"timeout -s KILL {max(1, int(timeout))} "
                              f"sh -c 'echo {state} > {path}' 2>&1", timeout + SLACK)
            if result.status == 137:  # killed by timeout's SIGKILL
                raise GuestTimeout(f"{state} of memory block {block} ({dimm.name}) did not "
                                   f"finish within {timeout:.0f}s; the write was killed")
            if result.status != 0:
                said = result.output.strip().rsplit(":", 1)[-1].strip() or "no message"
                raise HotplugError(f"the guest refused {state} of memory block {block} "
                                   f"({dimm.name}): {said}", result.output.strip())

    def remove(self, dimm: Dimm, timeout: float = 30.0) -> None:
        """Unplug ``dimm``: QEMU asks the guest to eject it (the guest offlines what is
        still online) and reports DEVICE_DELETED once the guest let go; a refusal comes back
        as an ACPI _OST status and is a HotplugError, silence is a GuestTimeout."""
        self.qmp.execute("device_del", id=dimm.name)

        def about_dimm(event: dict) -> bool:
            data = event.get("data", {})
            return data.get("device") == dimm.name or data.get("info", {}).get("device") == dimm.name

        try:
            while True:
                event = self.qmp.wait_event(("DEVICE_DELETED", "ACPI_DEVICE_OST"), timeout,
                                            about_dimm)
                if event["event"] == "DEVICE_DELETED":
                    break
                info = event["data"]["info"]
                if info.get("source") == OST_EJECT and info.get("status", 0) not in OST_OK:
                    raise HotplugError(f"the guest refused to eject {dimm.name} "
                                       f"({_blocks(dimm)}): ACPI _OST status "
                                       f"{info['status']:#x}")
        except GuestTimeout:
            raise GuestTimeout(f"the guest did not release {dimm.name} ({_blocks(dimm)}) "
                               f"within {timeout:.0f}s of device_del") from None
        self.qmp.execute("object-del", id=f"{dimm.name}-ram")
        self.dimms.remove(dimm)


def _blocks(dimm: Dimm) -> str:
    return f"memory blocks {dimm.blocks[0]}-{dimm.blocks[-1]}" if dimm.blocks else "no blocks"
