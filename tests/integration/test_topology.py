"""Guests shaped like machines, booted for real: several CPUs, NUMA nodes, hotpluggable
memory and the hwpoison injector. Each shape's kernel is built once per session; every
test here but the first shares one (base + numa.config + hotplug.config)."""

from __future__ import annotations

import pytest

from harness.guest.hotplug import HotplugError
from tests.kernel.ptecache import meminfo

pytestmark = pytest.mark.kernel

MACHINE = {"cpus": 2, "numa": 2, "hotplug": "1G"}  # 2 CPUs, 2 nodes of 512M, 1G to plug in


@pytest.mark.guest(cpus=2)
def test_smp_guest_has_its_cpus_online(guest):
    """The default kernel (ACPI in base.config) brings up every CPU QEMU gives it."""
    assert guest.run("cat /sys/devices/system/cpu/online").output.strip() == "0-1"
    assert guest.run("nproc").output.strip() == "2"


@pytest.mark.guest(**MACHINE)
def test_numa_guest_has_its_nodes_with_their_memory_and_cpus(guest):
    assert guest.run("cat /sys/devices/system/node/online").output.strip() == "0-1"
    for node in (0, 1):
        cpus = guest.run(f"cat /sys/devices/system/node/node{node}/cpulist").output.strip()
        assert cpus == str(node)
        total = meminfo(guest, f"/sys/devices/system/node/node{node}/meminfo")["MemTotal"]
        # 512 MiB each, less what firmware and the kernel reserve before counting
        assert 350 * 1024 < total <= 512 * 1024, (node, total)


@pytest.mark.guest(**MACHINE)
def test_memory_hotplug_add_online_offline_remove(guest):
    before = meminfo(guest)["MemTotal"]
    dimm = guest.hotplug.add("512M", node=1)
    assert set(guest.hotplug.states(dimm).values()) == {"offline"}
    assert meminfo(guest)["MemTotal"] == before  # added, not yet online
    guest.hotplug.online(dimm, "online_movable")
    assert set(guest.hotplug.states(dimm).values()) == {"online"}
    assert meminfo(guest)["MemTotal"] - before == 512 * 1024
    guest.hotplug.offline(dimm)
    assert meminfo(guest)["MemTotal"] == before
    guest.hotplug.remove(dimm)
    gone = guest.run(f"ls -d /sys/devices/system/memory/memory{dimm.blocks[0]}")
    assert gone.status != 0, gone.output


@pytest.mark.guest(**MACHINE)
def test_hotplug_offline_the_kernel_refuses_is_a_clear_error(guest):
    """The block that holds the kernel's code cannot go offline: the error names the block
    and what the kernel said, at once, and the guest goes on answering."""
    code = guest.run("grep 'Kernel code' /proc/iomem").output.strip()
    start = int(code.split("-")[0], 16)
    block = guest.hotplug.boot_block(start // guest.hotplug.block_size())
    with pytest.raises(HotplugError, match=rf"refused offline of memory block {block.blocks[0]} "
                                           r"\(boot memory block \d+\): (Invalid argument|Device or resource busy)"):
        guest.hotplug.offline(block, timeout=20)
    assert guest.run("true").status == 0


@pytest.mark.guest(**MACHINE)
def test_hwpoison_injector_poisons_a_free_page(guest):
    """The guest image can poison a page (memory_failure() through debugfs): here a free
    page of hotplugged memory; HardwareCorrupted counts it."""
    dimm = guest.hotplug.add("128M")
    guest.hotplug.online(dimm, "online_movable")
    before = meminfo(guest)["HardwareCorrupted"]
    pfn = (dimm.address >> 12) + 100
    result = guest.run(f"echo {pfn} > /sys/kernel/debug/hwpoison/corrupt-pfn")
    assert result.status == 0, result.output
    assert meminfo(guest)["HardwareCorrupted"] - before == 4
