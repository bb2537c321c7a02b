import pytest

from harness import readers
from tests.conftest import DATA


def test_direct_map_from_real_dump():
    direct = readers.DirectMap.from_dump((DATA / "ptdump-6.12-tinyconfig.txt").read_text())
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
        readers.DirectMap.from_dump("---[ User Space ]---\n")


def test_vmstat_and_meminfo():
    assert readers.parse_vmstat("nr_free_pages 1000\ndirect_map_level2_splits 3\n") == {
        "nr_free_pages": 1000, "direct_map_level2_splits": 3}
    assert readers.parse_meminfo("MemFree:          100 kB\nHugePages_Total:       0\n") == {
        "MemFree": 100, "HugePages_Total": 0}


@pytest.mark.parametrize("text, total", [("", 0), ("0 12\n", 12), ("0 3 4\n", 7)])
def test_shrinker_count(text, total):
    assert readers.parse_shrinker_count(text) == total
