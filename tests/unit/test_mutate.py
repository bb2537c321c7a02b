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


def test_every_mutant_says_what_it_models_and_applies_to_the_series(tmp_path):
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
