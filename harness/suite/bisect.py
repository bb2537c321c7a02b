"""`pte-harness bisect`: git bisect over a kernel repository, each step judged by the suite.

The bisection runs in a worktree of the harness's own (the user's checkout is never touched),
builds every step in the release's workspace (incremental), retries a failing step to rule
out flakiness, records each step and leaves a replayable `git bisect log`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.cache import new_results_dir, sha256_text, subdir, write_json_atomic
from harness.progress import say
from harness import options as options_module
from harness.errors import TreeError, UsageError
from harness.options import Options
from harness.suite.summary import Summary
from harness.suite.run import BISECT_BAD, BISECT_GOOD, BISECT_SKIP

MAX_STEPS = 60


@dataclass
class Step:
    commit: str
    subject: str
    verdict: str  # good | bad | skip
    attempts: list[int] = field(default_factory=list)  # bisect-exit status of each attempt
    seconds: float = 0.0
    results: str = ""
    figures: dict = field(default_factory=dict)


def git(repo: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise TreeError(f"git {' '.join(args)} failed in {repo}", result.stderr.strip())
    return (result.stdout + result.stderr).strip()


def bisect_worktree(repo: Path) -> Path:
    """A worktree of the harness's own for bisecting ``repo``."""
    worktree = subdir("bisect") / sha256_text(str(repo))[:16] / "src"
    if (worktree / ".git").exists():
        git(worktree, "bisect", "reset", check=False)
    else:
        git(repo, "worktree", "prune")
        worktree.parent.mkdir(parents=True, exist_ok=True)
        git(repo, "worktree", "add", "--quiet", "--detach", "--force", str(worktree), "HEAD")
    return worktree


def figures_of(results: Path) -> dict:
    summary = Summary.read(results) or Summary()
    return {name.split("::")[-1]: entry.figures
            for name, entry in summary.tests.items() if entry.figures}


def judge(worktree: Path, commit: str, step: int, run_args: list[str], results: Path,
          retries: int) -> Step:
    """Run the suite on the checked-out commit, retrying a failure ``retries`` times."""
    subject = git(worktree, "log", "-1", "--format=%s", commit)
    record = Step(commit, subject, "skip")
    start = time.monotonic()
    for attempt in range(retries + 1):
        out = results / f"step{step:02d}-{commit[:12]}-try{attempt}"
        command = [sys.executable, "-m", "harness.cli", "run", "--bisect-exit",
                   "--tree", str(worktree), "--results", str(out), *run_args]
        with (results / "bisect-run.log").open("a") as log:
            log.write(f"\n### step {step} {commit} attempt {attempt}: {' '.join(command)}\n")
            log.flush()
            status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
        record.attempts.append(status)
        record.results = str(out)
        if status not in (BISECT_GOOD, BISECT_BAD, BISECT_SKIP):
            raise UsageError(f"step {step} ({commit[:12]}) ended with status {status}: the harness "
                             f"itself failed; see {results / 'bisect-run.log'}")
        if status != BISECT_BAD:
            break
    record.verdict = {BISECT_GOOD: "good", BISECT_BAD: "bad", BISECT_SKIP: "skip"}[status]
    record.seconds = round(time.monotonic() - start, 1)
    record.figures = figures_of(Path(record.results))
    return record


def changed_figures(good: Step | None, bad: Step) -> list[str]:
    if good is None:
        return []
    lines = []
    for test, figures in bad.figures.items():
        for name, value in figures.items():
            before = good.figures.get(test, {}).get(name)
            if before != value:
                lines.append(f"  {test}: {name} {before} -> {value}")
    return lines


def step_arguments(options: Options, keyword: str | None, results: Path) -> list[str]:
    """Arguments of every step's ``pte-harness run`` but the tree: the options, written
    once to results/options.yaml, and the test selection."""
    path = options_module.write_yaml(options, results / "options.yaml", skip=("tree",))
    return ["--config", str(path), *(["-k", keyword] if keyword else [])]


def main(repo_text: str, good: str, bad: str, options: Options, keyword: str | None,
         results: Path | None, retries: int) -> int:
    repo = Path(repo_text.removeprefix("git:")).expanduser().resolve()
    if not (repo / ".git").exists():
        raise UsageError(f"--tree must be a git repository (git:PATH), not {repo_text}")
    results = (results or new_results_dir(Path("results"), "bisect-")).resolve()
    results.mkdir(parents=True, exist_ok=True)
    run_args = step_arguments(options, keyword, results)
    worktree = bisect_worktree(repo)
    good_commit = git(repo, "rev-parse", "--verify", f"{good}^{{commit}}")
    bad_commit = git(repo, "rev-parse", "--verify", f"{bad}^{{commit}}")
    output = git(worktree, "bisect", "start", bad_commit, good_commit)
    steps: list[Step] = []
    first_bad = ""
    try:
        for number in range(1, MAX_STEPS + 1):
            commit = git(worktree, "rev-parse", "HEAD")
            say(f"bisect step {number}: {commit[:12]} {git(worktree, 'log', '-1', '--format=%s')}")
            step = judge(worktree, commit, number, run_args, results, retries)
            steps.append(step)
            say(f"bisect step {number}: {step.verdict} after {step.seconds:.0f}s "
                f"(attempts {step.attempts}; {step.results})")
            write_json_atomic(results / "bisect.json", {"repo": str(repo), "good": good_commit,
                                                         "bad": bad_commit, "finished": False,
                                                         "steps": [asdict(s) for s in steps]})
            output = git(worktree, "bisect", step.verdict)
            match = re.search(r"^([0-9a-f]{40}) is the first bad commit", output, re.M)
            if match:
                first_bad = match.group(1)
                break
            if "only 'skip'ped commits left" in output:
                break
        (results / "bisect.log").write_text(git(worktree, "bisect", "log") + "\n")
    finally:
        git(worktree, "bisect", "reset", check=False)
    write_json_atomic(results / "bisect.json", {
        "repo": str(repo), "good": good_commit, "bad": bad_commit, "finished": True,
        "first_bad": first_bad, "steps": [asdict(s) for s in steps]})
    for step in steps:
        print(f"  {step.commit[:12]} {step.verdict:<4} {step.seconds:6.1f}s  {step.subject}")
    if not first_bad:
        print(f"no single first bad commit: {output.splitlines()[0] if output else ''}")
        print(f"results: {results} (bisect.json, bisect.log, bisect-run.log, one directory per step)")
        return BISECT_SKIP
    bad_step = next((s for s in steps if s.commit == first_bad), None)
    last_good = next((s for s in reversed(steps) if s.verdict == "good"), None)
    print(f"first bad commit: {first_bad} {git(repo, 'log', '-1', '--format=%s', first_bad)}")
    if bad_step:
        print("\n".join(changed_figures(last_good, bad_step)) or "  (no figure changed)")
    print(f"results: {results} (bisect.json, bisect.log, bisect-run.log, one directory per step)")
    return 0
