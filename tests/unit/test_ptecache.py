from harness import ptecache

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
