"""Shared by the integration tests: the default tree as a git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.kernel import source


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=Harness Test",
                           "-c", "user.email=harness-test@example.org", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="session")
def default_tree_repo(tmp_path_factory) -> dict[str, str | Path]:
    """Debian's linux-source-6.12 committed into a fresh git repository; ``base`` is that
    commit (tests may add commits on top, never rewrite it)."""
    tree = source.resolve(source.parse_spec("debian:6.12"))
    repo = tmp_path_factory.mktemp("repo") / "linux"
    subprocess.run(["cp", "-a", str(tree.path), str(repo)], check=True)
    git(repo, "init", "-q")
    git(repo, "add", "-A", "--force")  # Debian's tarball ignores everything in .gitignore
    git(repo, "commit", "-qm", "base: linux-source-6.12")
    return {"repo": repo, "base": git(repo, "rev-parse", "HEAD")}
