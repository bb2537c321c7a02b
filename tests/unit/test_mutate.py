"""pte-harness mutate's own logic: loading mutants, the mutated series, the verdicts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.kernel import patches
from harness.options import PATCH_DIR, Options
from harness.suite import mutate
from harness.suite.summary import Outcome, Summary, TestResult


def test_every_mutant_says_what_it_models_and_goes_last_in_the_series(tmp_path):
    # Whether its hunks apply to the real tree is judged where the tree is, by
    # tests/mutants (a mutant that does not apply is BROKEN there, and fails).
    mutants = mutate.load()
    assert len(mutants) >= 10
    for mutant in mutants:
        assert mutant.description.startswith("Mutant: "), mutant.path
        series = mutate.mutated_series(PATCH_DIR / "v6.12", mutant, tmp_path / mutant.name)
        loaded = patches.load_series(series)
        assert loaded.patches[-1].path.name == f"9999-mutant-{mutant.name}.patch"
        assert len(loaded.patches) == len(patches.load_series(PATCH_DIR / "v6.12").patches) + 1


def test_a_mutant_without_description_is_refused(tmp_path):
    (tmp_path / "bare.patch").write_text("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(UsageError, match="has no description"):
        mutate.load(tmp_path)


def test_unknown_names_are_listed():
    with pytest.raises(UsageError, match="no mutant named nope; mutants in .*neighbour-window"):
        mutate.select(mutate.load(), ["nope"])


@pytest.mark.parametrize("status, verdict", [(1, "KILLED"), (0, "SURVIVED"), (125, "BROKEN"),
                                             (200, "ERROR")])
def test_verdict_from_the_child_run(status, verdict, tmp_path, monkeypatch, cache):
    def child(command, **kwargs):
        assert command[3:5] == ["run", "--config"] and "--exitfirst" in command
        assert "--bisect-exit" in command
        results = Path(command[command.index("--results") + 1])
        results.mkdir(parents=True)
        Summary(kernel={"version": "6.12"}, tests={
            "tests/kernel/test_x.py::test_a": TestResult(outcome=Outcome.FAILED, message="boom"),
            "tests/kernel/test_x.py::test_b": TestResult()}).write(results / "summary.json")
        return subprocess.CompletedProcess(command, status)

    monkeypatch.setattr(mutate.subprocess, "run", child)
    mutant = mutate.load()[0]
    got = mutate.run_one(mutant, Options(), PATCH_DIR / "v6.12", tmp_path / "r")
    assert got.verdict == verdict
    assert got.killed_by == {"test_a": "boom"}
    assert "by test_a: boom" in mutate.report([got])


def test_killed_by_names_the_tests_to_run_first():
    mutants = {m.name: m for m in mutate.load()}
    assert all(m.killers for m in mutants.values()), [n for n, m in mutants.items() if not m.killers]
    assert mutants["shrink-count-half"].killers == ("test_shrinker_count_matches_cache_counter",
                                                    "test_reserve_topped_up_after_drain")


@pytest.mark.parametrize("first_status, runs, verdict", [
    (1, ["first"], "KILLED"),  # a named test failed: the whole suite is not needed
    (0, ["first", "run"], "SURVIVED"),  # they passed: the whole suite decides
    (125, ["first"], "BROKEN")])
def test_named_tests_run_first_then_the_whole_suite(first_status, runs, verdict, tmp_path,
                                                     monkeypatch, cache):
    seen = []

    def child(command, **kwargs):
        results = Path(command[command.index("--results") + 1])
        seen.append((results.name, command[command.index("-k") + 1] if "-k" in command else None))
        results.mkdir(parents=True)
        Summary().write(results / "summary.json")
        return subprocess.CompletedProcess(command, first_status if results.name == "first" else 0)

    monkeypatch.setattr(mutate.subprocess, "run", child)
    mutant = mutate.Mutant("m", mutate.load()[0].path, "Mutant: x", ("test_a", "test_b"))
    got = mutate.run_one(mutant, Options(), PATCH_DIR / "v6.12", tmp_path / "r")
    assert [name for name, _ in seen] == runs and got.verdict == verdict
    assert seen[0][1] == "test_a or test_b" and seen[1:] in ([], [("run", None)])
    # an explicit selection replaces the hint
    seen.clear()
    mutate.run_one(mutant, Options(), PATCH_DIR / "v6.12", tmp_path / "k", keyword="test_c")
    assert seen == [("run", "test_c")]
