"""End to end: `pte-harness bisect` names the commit that broke the shrinker.

The repository is the default tree with the series committed patch by patch, a harmless
commit, a commit that does not build (and its revert), another harmless commit, the commit
that breaks `scan` (it gives back about half of what is asked), and one more harmless commit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.options import PATCH_DIR

from .conftest import git

pytestmark = pytest.mark.kernel
# The shrinker's outer loop (series v2: SWAP_CLUSTER_MAX pages per lock hold); broken, a scan
# of 1000 gives back 512.
SCAN_LOOP = "while (nr < sc->nr_to_scan) {"
BROKEN_SCAN = "while (nr < sc->nr_to_scan / 2) {"


def commit_edit(repo: Path, path: str, edit, message: str) -> str:
    target = repo / path
    target.write_text(edit(target.read_text()))
    git(repo, "commit", "-qam", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def kernel_repo(default_tree_repo) -> dict[str, str | Path]:
    repo = default_tree_repo["repo"]
    series = (PATCH_DIR / "v6.12" / "series").read_text().split()
    git(repo, "am", "-q", *(str(PATCH_DIR / "v6.12" / name) for name in series))
    commits = {"series": git(repo, "rev-parse", "HEAD")}
    commits["harmless1"] = commit_edit(repo, "README", lambda t: t + "\nbisect test 1\n", "README: note 1")
    commits["nobuild"] = commit_edit(repo, "mm/pte_mapped.c",
                                     lambda t: t + "\n#error this commit does not build\n",
                                     "mm: a commit that does not build")
    git(repo, "revert", "--no-edit", "HEAD")
    commits["harmless2"] = commit_edit(repo, "README", lambda t: t + "\nbisect test 2\n", "README: note 2")
    commits["broken"] = commit_edit(repo, "mm/pte_mapped.c", lambda t: t.replace(SCAN_LOOP, BROKEN_SCAN),
                                    "mm: pte_mapped shrinker scans half of what is asked")
    commits["harmless3"] = commit_edit(repo, "README", lambda t: t + "\nbisect test 3\n", "README: note 3")
    assert BROKEN_SCAN in (repo / "mm/pte_mapped.c").read_text()
    return {"repo": repo, **commits}


def test_bisect_names_the_breaking_commit(kernel_repo, tmp_path):
    repo = kernel_repo["repo"]
    head = git(repo, "rev-parse", "HEAD")
    results = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bisect", "--tree", f"git:{repo}",
         "--good", kernel_repo["series"], "--bad", "HEAD", "--series", "none",
         "--kconfig", "pte-mapped.config", "--kconfig", "debug.config",
         "-k", "test_shrinker_scan", "--results", str(results)],
        capture_output=True, text=True, timeout=3600)
    print(result.stdout, result.stderr[-3000:])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"first bad commit: {kernel_repo['broken']}" in result.stdout
    record = json.loads((results / "bisect.json").read_text())
    assert record["finished"] and record["first_bad"] == kernel_repo["broken"]
    verdicts = {step["commit"]: step["verdict"] for step in record["steps"]}
    assert verdicts.get(kernel_repo["nobuild"], "skip") == "skip"  # skipped, never blamed
    assert all(v == "bad" for c, v in verdicts.items() if c == kernel_repo["broken"])
    assert "count_after_scan" in result.stdout  # the figure that changed is shown
    log = (results / "bisect.log").read_text()
    assert f"# first bad commit: [{kernel_repo['broken']}]" in log
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""


def test_git_bisect_run_typed_in_the_tree(kernel_repo, tmp_path):
    """README's `git bisect run pte-harness run --bisect-exit -k ...` in a kernel checkout:
    no --tree, --series or --kconfig; the tree carries the series, so none is applied."""
    work = tmp_path / "linux"
    git(kernel_repo["repo"], "worktree", "add", "-q", "--detach", str(work), "HEAD")
    git(work, "bisect", "start", "HEAD", kernel_repo["harmless2"])
    pte_harness = str(Path(sys.executable).with_name("pte-harness"))
    result = subprocess.run(["git", "bisect", "run", pte_harness, "run", "--bisect-exit",
                             "-k", "test_shrinker_scan"],
                            cwd=work, capture_output=True, text=True, timeout=3600)
    print(result.stdout[-6000:], result.stderr[-3000:])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{kernel_repo['broken']} is the first bad commit" in result.stdout
    assert f"kernel tree: {work}" in result.stdout
    assert "series none" in result.stdout  # carried by the tree, not applied again
    assert git(work, "status", "--porcelain") == ""  # no results or build output in the checkout
