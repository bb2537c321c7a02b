"""Cached pages and the kernel's own ways of taking memory away: memory offline and
hardware poisoning (mm review of v1, finding 1). These need a guest with hotpluggable
memory and memory_failure(), the shape the topology tests use (one kernel for both)."""

from __future__ import annotations

import pytest

from harness.errors import GuestTimeout
from tests.kernel.ptecache import CACHED, lift_cache_bound, meminfo, ptm

pytestmark = pytest.mark.kernel

# 2 CPUs, 2 NUMA nodes, room to hot-add 1G: tests/integration/test_topology.py's kernel.
MACHINE = {"cpus": 2, "numa": 2, "hotplug": "1G", "memory": "2G"}
PAGE = 4096
HELD = 250_000  # pages: 1 GiB of the 2, so that some memory blocks are wholly held
CHUNK = 1 << 24  # the driver's addresses are counted per 16 MiB, by their hex text


def held_per_block(session, base: int, block: int) -> dict[int, int]:
    """How many of the driver's held pages lie in each memory block. Counted in the guest
    per 16 MiB (the address text less its last 6 hex digits), so that only a few lines
    cross the serial line rather than one per page."""
    result = session.run("sed 's/......$//' /sys/kernel/debug/pte_mapped_test/addrs "
                         "| sort | uniq -c", timeout=300)
    assert result.status == 0, result.output
    counts: dict[int, int] = {}
    for line in result.output.split("\n"):
        if line.strip():
            count, prefix = line.split()
            number = ((int(prefix, 16) * CHUNK) - base) // block
            counts[number] = counts.get(number, 0) + int(count)
    return counts


@pytest.mark.guest(**MACHINE)
def test_memory_holding_cached_pages_goes_offline(guest, figures):
    """A memory block whose every page sits in the cache goes offline at once, and the
    cache hands none of its pages out afterwards. (v1: offline_pages() retried until the
    write was killed, because cached pages are neither in use nor PageBuddy.)"""
    block = guest.hotplug.block_size()
    # The cache must hold every page of the block: lift its bound (series v3 has one, a
    # sixteenth of memory by default).
    lift_cache_bound(guest)
    trace = ptm(guest, f"map before alloc {HELD}", timeout=600)
    assert trace.results[0].succeeded == HELD, trace
    counts = held_per_block(guest, trace.maps["before"].base, block)
    full = sorted(n for n, count in counts.items() if count == block // PAGE)
    figures["blocks_wholly_held"] = len(full)
    assert full, f"no memory block is wholly held by the driver's {HELD} pages: {counts}"
    victim = guest.hotplug.boot_block(full[len(full) // 2])
    freed = ptm(guest, "free all state")
    figures["cached_before_offline"] = freed.states[0][CACHED]
    try:
        guest.hotplug.offline(victim, timeout=30)
    except GuestTimeout as exc:
        pytest.fail(f"{exc}: a block of {block >> 20} MiB holding only cached pages",
                    pytrace=False)
    after = ptm(guest, "state")
    figures["cached_after_offline"] = after.states[0][CACHED]
    released = freed.states[0][CACHED] - after.states[0][CACHED]
    figures["released"] = released
    assert released >= block // PAGE, (
        f"the cache gave back {released} pages for a block of {block // PAGE}")
    taken = ptm(guest, f"alloc {after.states[0][CACHED]}", timeout=600)
    figures["served_after_offline"] = taken.results[0].succeeded
    number = victim.address // block
    inside = held_per_block(guest, trace.maps["before"].base, block).get(number, 0)
    assert not inside, f"{inside} pages handed out from memory block {number}, offline"


@pytest.mark.guest(**MACHINE)
def test_poisoned_cached_page_is_never_handed_out(guest, figures):
    """A page poisoned (memory_failure(), through the hwpoison injector) while it sits in
    the cache is never handed out again."""
    trace = ptm(guest, "map m alloc 4096 addrs free all state")
    victim = trace.addrs[len(trace.addrs) // 2]
    pfn = (victim - trace.maps["m"].base) // PAGE
    before = meminfo(guest)["HardwareCorrupted"]
    # memory_failure() cannot take a cached page (refcount 0, not PageBuddy): it marks it
    # poisoned, counts it and says EBUSY (the injector's write fails).
    result = guest.run(f"echo {pfn} > /sys/kernel/debug/hwpoison/corrupt-pfn")
    figures["injector_said"] = result.output.strip() or "ok"
    assert meminfo(guest)["HardwareCorrupted"] - before == 4, (
        f"the page was not poisoned: {result.output}")
    cached = ptm(guest, "state").states[0][CACHED]
    taken = ptm(guest, f"alloc {cached + 512}")
    figures.update(cached=cached, served=taken.results[0].succeeded)
    assert taken.results[0].succeeded == cached + 512, taken
    found = guest.run(f"grep -cx {victim:#x} /sys/kernel/debug/pte_mapped_test/addrs")
    assert found.output.strip() == "0", (
        f"the poisoned page {victim:#x} (pfn {pfn:#x}) was handed out again by the cache")
