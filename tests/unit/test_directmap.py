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
