import pytest

from tests.kernel import directmap
from tests.conftest import DATA


def test_direct_map_from_real_dump():
    direct = directmap.DirectMap.from_dump((DATA / "ptdump-6.12-tinyconfig.txt").read_text())
    totals = direct.bytes_by_level()
    assert totals["pmd"] == (14 + 4 + 998) << 20
    assert totals["pte"] == (612 + 4 + 4 + 1428 + 780 + 2636 + 4 + 676 + 1920) << 10
    assert direct.level_of(0xFFFF888000200000) == "pmd"
    assert direct.level_of(0xFFFF888000001000) == "pte"
    assert direct.level_of(0xFFFF88803FFE0000) is None  # not present
    assert direct.level_of(0xFFFFC90000000000) is None  # outside the section
    assert direct.runs[1].flags == ("ro", "GLB", "NX")


def test_missing_section():
    with pytest.raises(ValueError, match="no 'Low Kernel Mapping' section"):
        directmap.DirectMap.from_dump("---[ User Space ]---\n")


def test_levels_of_many_addresses_in_one_pass():
    Run = directmap.Run
    dmap = directmap.DirectMap((Run(0x1000, 0x3000, "pte", ("RW",)), Run(0x3000, 0x5000, "pmd", ("RW",)),
                                Run(0x5000, 0x6000, "pte", ()), Run(0x6000, 0x8000, "pte", ("RW",))))
    assert dmap.base == 0x1000
    addresses = [0x7fff, 0x1000, 0x2fff, 0x3000, 0x5800, 0x9000, 0x6000]
    assert dmap.levels(addresses) == {"pte": 4, "pmd": 1, "unmapped": 2}
    assert dmap.levels(addresses) == {level: sum(1 for a in addresses if (dmap.level_of(a) or "unmapped") == level)
                                      for level in ("pte", "pmd", "unmapped")}
