"""memfd_secret() as a user of the cache (series patch 21): every secret page leaves the
direct map, which without the cache splits one 2M mapping per region a secret touches.
The workload is guest-src/pte-workload.c (``secrets``, ``secret-hold``)."""

from __future__ import annotations

import pytest

from tests.kernel.ptecache import KB_PER_PMD, SETTLED_DROP, SPLITS, ptm

from .checks import fragment

pytestmark = pytest.mark.kernel

PAGE = 4096
# 6.1 keeps memfd_secret() off unless asked; 6.12 takes the parameter as well.
SECRETMEM = "secretmem.enable=1"
SECRET_PAGES = 512


def secret_splits(session) -> int:
    """Level-2 splits while SECRET_PAGES secret pages are faulted in, on fragmented memory
    (free pages scattered over many 2M regions, as on a long-running system)."""
    fragment(session)
    before = ptm(session, "state").states[0]
    result = session.run(f"pte-workload secrets {SECRET_PAGES} 1", timeout=300)
    assert result.status == 0, f"secrets workload failed:\n{result.output}"
    after = ptm(session, "state").states[0]
    return (after - before)[SPLITS]


def test_secretmem_splits_with_the_cache_and_without(boot, figures):
    """Secret pages come from regions that are split already: with the cache, a few
    splits; without it (pte_mapped_cache=off, each page splits its own region), many."""
    with_cache = secret_splits(boot(SECRETMEM))
    without = secret_splits(boot(f"{SECRETMEM} pte_mapped_cache=off"))
    figures.update(splits_with_cache=with_cache, splits_without_cache=without)
    assert with_cache * 8 <= without, (
        f"{SECRET_PAGES} secret pages: {with_cache} level-2 splits with the cache, {without} "
        f"without; expected at most an eighth")


def test_secretmem_direct_map_heals(boot, figures):
    """After many secrets come and go, the direct map is split while the cache holds
    their pages and whole again (DirectMap4k within one region of the start) once the
    cache is dropped."""
    guest = boot(SECRETMEM)
    start = ptm(guest, f"{SETTLED_DROP} state").states[0]
    result = guest.run("pte-workload secrets 2048 10", timeout=600)
    assert result.status == 0, f"secrets workload failed:\n{result.output}"
    after = ptm(guest, f"state {SETTLED_DROP} state map after")
    used, dropped = after.states
    figures.update(directmap4k_start_kb=start["DirectMap4k"],
                   directmap4k_after_workload_kb=used["DirectMap4k"],
                   directmap4k_after_drop_kb=dropped["DirectMap4k"])
    assert used["DirectMap4k"] > start["DirectMap4k"], (
        f"2048 secret pages split nothing: the workload did not take them out of the "
        f"direct map\n{after}")
    assert dropped["DirectMap4k"] <= start["DirectMap4k"] + KB_PER_PMD, (
        f"DirectMap4k {start['DirectMap4k']} kB at the start, {used['DirectMap4k']} kB "
        f"after the secrets, {dropped['DirectMap4k']} kB after drop_caches\n{after}")


def test_secretmem_page_is_not_in_the_direct_map(boot, figures):
    """While a secret is mapped, the page-table dump shows each of its pages not present
    in the direct map (the address the kernel would read it through), inside a 4K run;
    once it is closed, they are mapped again."""
    guest = boot(SECRETMEM)
    result = guest.run("bg-start secret secret-hold 64", timeout=300)
    assert result.status == 0, result.output
    lines = guest.run("cat /tmp/secret.out").output.splitlines()
    pfns = [int(line.split()[1], 16) for line in lines if line.startswith("pfn ")]
    assert len(pfns) == 64 and all(pfns), f"no pfns from /proc/self/pagemap:\n{lines}"
    held = ptm(guest, "map held").maps["held"]
    readable = [hex(pfn) for pfn in pfns if held.level_of(held.base + pfn * PAGE) is not None]
    figures.update(secret_pages=len(pfns), readable_through_direct_map=len(readable))
    assert not readable, (f"{len(readable)} of 64 secret pages are present in the direct map "
                          f"while in use: pfns {readable[:8]}")
    result = guest.run("bg-stop secret", timeout=120)
    assert result.status == 0, result.output
    back = ptm(guest, "map back").maps["back"]
    gone = [hex(pfn) for pfn in pfns if back.level_of(back.base + pfn * PAGE) is None]
    assert not gone, f"{len(gone)} freed secret pages are still missing from the direct map"
