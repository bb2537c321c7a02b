"""Every mutant in this directory must be killed: the kernel suite, run on the series with
the mutant's bug added, has a failing test. A survivor fails here with the bug it models."""

from __future__ import annotations

import pytest

from harness.options import PATCH_DIR, Options
from harness.suite import mutate

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("mutant", mutate.load(), ids=lambda m: m.name)
def test_mutant_is_killed(mutant, tmp_path):
    verdict = mutate.run_one(mutant, Options(), PATCH_DIR / "v6.12", tmp_path / mutant.name)
    assert verdict.verdict == "KILLED", (
        f"{mutant.name} {verdict.verdict} the kernel suite ({verdict.seconds:.0f}s; "
        f"log {verdict.results}/run.log)\n{mutant.description}")
    print(mutate.report([verdict]))
