"""`pte-harness mutate`: build each mutant (the series plus one small, realistic bug from
tests/mutants/), run the kernel suite on it, and say whether the suite KILLED it (a test
failed, naming the tests and their messages) or it SURVIVED (every test passed).

Each mutant runs as ``pte-harness run --bisect-exit -x`` in a child process, so its
verdict is bisect's: 1 (a test failed or the kernel crashed) is KILLED, 0 is SURVIVED,
125 (patch, config, build or boot failed: nothing was judged) is BROKEN, anything else is
an ERROR of the harness.

A mutant's description may name the tests that killed it before (``Killed-by: test_a
test_b``): those run first, and only when none of them fails does the whole suite run. The
hint only orders the work; a mutant is KILLED only by a test that failed on it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.cache import new_results_dir, subdir
from harness.errors import UsageError
from harness.kernel import patches
from harness.options import PROJECT_ROOT, Options, write_yaml
from harness.progress import say
from harness.suite.run import BISECT_BAD, BISECT_GOOD, BISECT_SKIP
from harness.suite.summary import Summary

MUTANT_DIR = PROJECT_ROOT / "tests" / "mutants"
MUTANT_PATCH = "9999-mutant-{name}.patch"
RUN_TIMEOUT = 3600.0  # one mutant: an incremental build and the suite
KILLED_BY = "Killed-by:"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: Path
    description: str  # the paragraph before the diff: the bug it models
    killers: tuple[str, ...] = ()  # its "Killed-by:" line: tests to run first


@dataclass
class Verdict:
    name: str
    verdict: str  # KILLED, SURVIVED, BROKEN, ERROR
    seconds: float
    results: str
    killed_by: dict[str, str] = field(default_factory=dict)  # test -> its message


def load(directory: Path = MUTANT_DIR) -> list[Mutant]:
    """Every ``*.patch`` in ``directory``: its name, and the text before ``---`` as the
    description (which must say what bug it models)."""
    found = []
    for path in sorted(directory.glob("*.patch")):
        text = path.read_text()
        description = text.split("\n---\n", 1)[0].strip()
        if not description or description.startswith(("---", "diff ")):
            raise UsageError(f"mutant {path} has no description before its diff")
        killers = tuple(word for line in description.splitlines()
                        if line.startswith(KILLED_BY) for word in line[len(KILLED_BY):].split())
        found.append(Mutant(path.stem, path, description, killers))
    return found


def select(mutants: list[Mutant], names: list[str]) -> list[Mutant]:
    if not names:
        return mutants
    known = {m.name: m for m in mutants}
    missing = [n for n in names if n not in known]
    if missing:
        raise UsageError(f"no mutant named {', '.join(missing)}; mutants in {MUTANT_DIR}: "
                         f"{', '.join(sorted(known))}")
    return [known[n] for n in names]


def mutated_series(series: Path, mutant: Mutant, dest: Path) -> Path:
    """A copy of ``series`` with the mutant's patch applied last."""
    patches.load_series(series)  # a broken series is the series' error, not the mutant's
    shutil.copytree(series, dest)
    name = MUTANT_PATCH.format(name=mutant.name)
    shutil.copyfile(mutant.path, dest / name)
    with (dest / "series").open("a") as listing:
        listing.write(f"{name}\n")
    return dest


def run_one(mutant: Mutant, options: Options, series: Path, results: Path,
            keyword: str | None = None) -> Verdict:
    """Build and test one mutant in a child ``pte-harness run``: with ``keyword``, the tests
    it selects; otherwise the tests the mutant names first (``results/first``), then, unless
    one of them killed it, the whole suite (``results/run``). Output goes to ``run.log``."""
    results.mkdir(parents=True, exist_ok=True)
    work = Path(subdir("scratch")) / f"mutant-{mutant.name}-{time.monotonic_ns()}"
    start = time.monotonic()
    try:
        mutated = mutated_series(series, mutant, work)
        config = write_yaml(options, results / "mutant-options.yaml", skip=("series",))
        command = [sys.executable, "-m", "harness.cli", "run", "--config", str(config),
                   "--series", str(mutated), "--bisect-exit", "--exitfirst"]
        passes: list[tuple[str | None, str]] = [(keyword, "run")]
        if not keyword and mutant.killers:
            passes.insert(0, (" or ".join(mutant.killers), "first"))
        with (results / "run.log").open("w") as log:
            for selection, name in passes:
                log.write(f"== {name}: {selection or 'the whole suite'}\n")
                log.flush()
                status = subprocess.run(
                    command + ["--results", str(results / name)]
                    + (["-k", selection] if selection else []),
                    stdout=log, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT).returncode
                if status != BISECT_GOOD:
                    break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = round(time.monotonic() - start, 1)
    verdict = {BISECT_BAD: "KILLED", BISECT_GOOD: "SURVIVED", BISECT_SKIP: "BROKEN"}.get(
        status, "ERROR")
    summary = Summary.read(results / name) or Summary()
    killed_by = {nodeid.split("::", 1)[-1]: entry.message
                 for nodeid, entry in summary.tests.items() if entry.outcome.kernel_is_wrong}
    return Verdict(mutant.name, verdict, seconds, str(results), killed_by)


def report(verdicts: list[Verdict]) -> str:
    lines = []
    for v in verdicts:
        lines.append(f"{v.verdict:<8} {v.name}  ({v.seconds:.0f}s, {v.results})")
        for test, message in v.killed_by.items():
            lines.append(f"           by {test}: {message[:200]}")
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    lines.append(", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())))
    return "\n".join(lines)


def main(options: Options, names: list[str], results: Path | None,
         keyword: str | None = None) -> int:
    """0 when every mutant chosen was killed, 1 when one survived, 2 when one could not be
    judged (BROKEN or ERROR: fix the mutant or the harness)."""
    series = options.series_dir()
    if series is None:
        raise UsageError("mutate needs a series to add the mutants to (not --series none)")
    chosen = select(load(), names)
    results = (results or new_results_dir(Path("results"))).resolve()
    results.mkdir(parents=True, exist_ok=True)
    verdicts = []
    for index, mutant in enumerate(chosen, 1):
        say(f"mutant {index}/{len(chosen)}: {mutant.name}")
        verdicts.append(run_one(mutant, options, series, results / mutant.name, keyword))
        say(f"mutant {mutant.name}: {verdicts[-1].verdict} in {verdicts[-1].seconds:.0f}s")
        (results / "mutants.json").write_text(
            json.dumps([asdict(v) for v in verdicts], indent=2) + "\n")
    print(report(verdicts))
    print(f"results: {results} (mutants.json, one directory per mutant)")
    if any(v.verdict in ("BROKEN", "ERROR") for v in verdicts):
        return 2
    return 1 if any(v.verdict == "SURVIVED" for v in verdicts) else 0
