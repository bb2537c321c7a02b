from tests.kernel import ptecache

OUTPUT = """state shrinkers=1 shrinker_count=0 nr_pte_mapped_cached=0 direct_map_level2_splits=3 MemFree=100
result alloc 2048 requested 2048 succeeded 2047 failed 1
state shrinkers=1 shrinker_count=512 nr_pte_mapped_cached=512 direct_map_level2_splits=8 MemFree=90
addr 0xffff888001000000
"""


def test_parse_trace_states_results_addrs():
    trace = ptecache.parse_trace("ptm x", OUTPUT)
    before, after = trace.states
    assert (after - before)[ptecache.SPLITS] == 5 and (after - before)["MemFree"] == -10
    assert trace.results == [ptecache.OpResult("alloc", "2048", 2048, 2047, 1)]
    assert trace.addrs == [0xFFFF888001000000]
    text = str(trace)
    assert "direct_map_level2_splits" in text and "failed 1" in text


def test_missing_figure_is_named():
    import pytest
    state = ptecache.parse_trace("ptm", OUTPUT).states[0]
    with pytest.raises(KeyError, match="pte_mapped_alloc not read by ptm state"):
        state["pte_mapped_alloc"]


def test_grouping_bound():
    assert ptecache.grouping_bound(2048) == 5 and ptecache.grouping_bound(1) == 2


MAP_OUTPUT = """map before 0xffff888000000000-0xffff888000001000           4K     RW                     NX pte
map before 0xffff888000001000-0xffff888000200000        2044K     RW                     NX pte
map before 0xffff888000200000-0xffff888000400000           2M                               pmd
map before 0xffff888000400000-0xffff888040000000        1020M     RW         PSE         NX pmd
map after 0xffff888000000000-0xffff888000200000           2M     RW                     NX pte
map after 0xffff888000200000-0xffff888000400000           2M     RW                     NX pte
"""


def test_map_steps_parse_into_direct_maps_and_strips():
    trace = ptecache.parse_trace("ptm map before map after", MAP_OUTPUT)
    assert sorted(trace.maps) == ["after", "before"]
    before = trace.maps["before"]
    assert before.level_of(0xffff888000000000) == "pte"
    assert before.level_of(0xffff888000300000) is None  # not present
    assert before.strip() == [[0, 0x200000, "pte"], [0x400000, 0x40000000, "pmd"]]
    assert trace.maps["after"].strip() == [[0, 0x400000, "pte"]]


class FakeSession:
    def __init__(self, output):
        self.output = output
        self.direct_maps = {}

    def run(self, command, timeout):
        from harness.guest.serial import CommandResult
        return CommandResult(command, 0, self.output, 0.1)


def test_ptm_keeps_map_snapshots_on_the_session():
    session = FakeSession(MAP_OUTPUT)
    ptecache.ptm(session, "map before map after")
    assert session.direct_maps["after"] == [[0, 0x400000, "pte"]]


def test_parse_zeroed_result_and_injections():
    trace = ptecache.parse_trace("ptm x", "result alloc_zero 8 requested 8 succeeded 8 failed 0 "
                                          "nonzero 3\nfailcpa left 0\nfailcpa left 1\n")
    assert trace.results == [ptecache.OpResult("alloc_zero", "8", 8, 8, 0, 3)]
    assert trace.injections_left == [0, 1]
    assert "nonzero 3" in str(trace)


def test_parse_types():
    trace = ptecache.parse_trace("ptm types", "types Unmovable 2491 Movable 5701 Reclaimable 0 "
                                              "HighAtomic 0\nstopped frag\n")
    assert trace.types == [{"Unmovable": 2491, "Movable": 5701, "Reclaimable": 0,
                            "HighAtomic": 0}]
