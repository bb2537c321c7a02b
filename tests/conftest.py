"""Shared fixtures: unit tests get a private cache directory."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private PTE_HARNESS_CACHE (and build lock: a unit test never waits for a real
    build elsewhere on the machine) for one test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("PTE_HARNESS_CACHE", str(path))
    monkeypatch.setenv("PTE_HARNESS_BUILD_LOCK", str(tmp_path / "build.lock"))
    return path


@pytest.fixture
def fake_tree(tmp_path: Path) -> Path:
    """A directory that looks like a kernel tree to the harness (no real kernel)."""
    tree = tmp_path / "linux"
    for directory in ("mm", "arch/x86", "scripts/kconfig"):
        (tree / directory).mkdir(parents=True)
    (tree / "Makefile").write_text("# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\n")
    (tree / "Kconfig").write_text("source \"arch/$(SRCARCH)/Kconfig\"\n")
    (tree / "arch" / "x86" / "Kconfig").write_text("config X86\n\tdef_bool y\n")
    (tree / "scripts" / "kconfig" / "Makefile").write_text("# kconfig\n")
    (tree / "mm" / "cache.c").write_text("int a;\nint b;\nint c;\nint d;\n")
    return tree

pytest_plugins = ["pytester"]
