"""Nightly matrix files: trees x series x config fragments x tests, each cell with a name.

    defaults: {accel: auto, memory: 1G, cell-timeout: 3600}  # for every cell
    trees: {v6.12: "debian:6.12", v6.1: "debian:6.1"}   # name: tree spec (an axis)
    series: {auto: auto}                                # optional axis (default: auto)
    configs: {feature: null, kasan: [kasan.config]}     # optional axis of extra fragments
    tests: {all: ""}                                    # optional axis of pytest -k expressions
    cells:                                              # optional explicit cells
      - {name: broken, tree: v6.12, series: v6.1}
    compare: {tolerance: 0.2, min_change: 1, figures: {seconds: ignore}}

A cell (and ``defaults``) may set every option of an options file (options.Options: tree,
series, base, kconfig, default-kconfig, jobs, build-dir, accel, memory, cpus, numa, hotplug,
cpu, append, boot-timeout, timeout, transport), besides its name, its tests (a pytest -k expression) and
cell-timeout (seconds for the whole cell, build included; default 3600). The product of the
axes gives one cell per combination, named by the names joined with "-" (axes with a single
entry add nothing to the name); explicit cells come after them. A cell's values win over
PTE_HARNESS_* variables: its ``pte-harness run`` gets an environment without those of the
options its file sets.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from harness import options as options_module
from harness.errors import UsageError
from harness.options import Options, read_yaml

TOP_KEYS = {"defaults", "trees", "series", "configs", "tests", "cells", "compare"}
OWN_KEYS = frozenset({"name", "tests", "cell-timeout"})  # a cell's own, not options
DEFAULT_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Cell:
    """One run of the suite: its options (tree, series, fragments, guest...) and tests."""

    name: str
    options: Options
    tests: str = ""  # pytest -k expression; empty: the whole suite
    timeout: float = DEFAULT_TIMEOUT  # the whole cell, build included

    @property
    def tree(self) -> str:
        return self.options.tree

    @property
    def series(self) -> str:
        return self.options.series

    def run_args(self, cell_dir: Path) -> list[str]:
        """Arguments of ``pte-harness run`` for this cell: its options, written once to
        cell_dir/options.yaml, and its tests (the results directory is the caller's)."""
        path = options_module.write_yaml(self.options, cell_dir / "options.yaml")
        return ["--config", str(path), *(["-k", self.tests] if self.tests else [])]

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment of the cell's ``pte-harness run``: ``environ`` without the
        PTE_HARNESS_* variables of the options its file sets, so that the cell's values win
        (a child reads its environment after its options file)."""
        return options_module.without_env(environ, options_module.written(self.options))

    def describe(self) -> dict[str, Any]:
        return {**options_module.to_yaml(self.options, skip=("jobs",)), "tests": self.tests}


@dataclass(frozen=True)
class Tolerances:
    """When a figure counts as moved: by more than ``tolerance`` (relative) and more than
    ``min_change`` (absolute); per-figure overrides by exact name, or ``ignore``."""

    tolerance: float = 0.2
    min_change: float = 1.0
    figures: dict[str, float | None] = field(default_factory=dict)

    def for_figure(self, name: str) -> float | None:
        return self.figures.get(name, self.tolerance)


@dataclass(frozen=True)
class Matrix:
    path: Path
    cells: tuple[Cell, ...]
    tolerances: Tolerances = Tolerances()

    def shard(self, index: int, count: int) -> tuple[Cell, ...]:
        """Cells of shard ``index`` (1-based) of ``count``: every count-th cell in file order."""
        if count < 1 or not 1 <= index <= count:
            raise UsageError(f"--shard {index}/{count}: expected I/N with 1 <= I <= N")
        return self.cells[index - 1::count]


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match:
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 1/3")
    return int(match.group(1)), int(match.group(2))


def load(path: Path) -> Matrix:
    """Read and check a matrix file; every mistake is an error naming the file and key."""
    data = read_yaml(path, "matrix file")
    where = f"matrix file {path}"
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping with trees: and/or cells:")
    _known(data, TOP_KEYS, where)
    defaults = _mapping(data, "defaults", where)
    if "name" in defaults or "tree" in defaults:
        raise UsageError(f"{where}, defaults: name and tree belong to cells and trees:")
    trees = _mapping(data, "trees", where)
    cells = [_cell(values, trees, defaults, where) for values in _product(data, where)]
    explicit = data.get("cells") or []
    if not isinstance(explicit, list):
        raise UsageError(f"{where}: 'cells' must be a list of mappings")
    for number, values in enumerate(explicit, 1):
        if not isinstance(values, dict):
            raise UsageError(f"{where}: cell {number} must be a mapping")
        if "name" not in values or "tree" not in values:
            raise UsageError(f"{where}: cell {number} needs a name and a tree")
        cells.append(_cell(values, trees, defaults, where))
    if not cells:
        raise UsageError(f"{where}: no cells (give trees: or cells:)")
    seen: set[str] = set()
    for cell in cells:
        if cell.name in seen:
            raise UsageError(f"{where}: two cells are named {cell.name!r}")
        seen.add(cell.name)
    return Matrix(path, tuple(cells), _tolerances(data, where))


def _product(data: dict, where: str) -> list[dict]:
    trees = _mapping(data, "trees", where)
    axes = [("tree", {name: name for name in trees})]  # cells name their tree; _cell looks it up
    for key, axis in (("series", "series"), ("kconfig", "configs"), ("tests", "tests")):
        values = _mapping(data, axis, where)
        if values:
            axes.append((key, values))
    combos = []
    for picks in itertools.product(*(list(values.items()) for _, values in axes)):
        names = [str(name) for index, (name, _) in enumerate(picks)
                 if index == 0 or len(axes[index][1]) > 1]
        combo = {key: value for (key, _), (_, value) in zip(axes, picks)}
        combo["name"] = "-".join(names)
        combos.append(combo)
    return combos if trees else []


def _cell(values: dict, trees: dict, defaults: dict, where: str) -> Cell:
    merged = {**defaults, **values}
    name = str(merged["name"])
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise UsageError(f"{where}: cell name {name!r} may only use letters, digits and _.+-")
    tree = str(merged["tree"])
    merged["tree"] = str(trees.get(tree, tree))
    if isinstance(merged.get("kconfig"), str):
        merged["kconfig"] = [merged["kconfig"]]
    if merged.get("kconfig", ()) is None:  # a configs axis entry null: the default fragments
        merged.pop("kconfig")
    here = f"{where}, cell {name}"
    chosen = options_module.check_mapping(merged, here, extra=OWN_KEYS)
    try:
        timeout = float(merged.get("cell-timeout") or DEFAULT_TIMEOUT)
    except (TypeError, ValueError):
        raise UsageError(f"{here}: cell-timeout must be a number of seconds") from None
    try:
        resolved = replace(Options(), **chosen)
    except UsageError as exc:
        raise UsageError(f"{here}: {exc}") from None
    return Cell(name=name, options=resolved, tests=str(merged.get("tests") or ""), timeout=timeout)


def _tolerances(data: dict, where: str) -> Tolerances:
    raw = _mapping(data, "compare", where)
    _known(raw, {"tolerance", "min_change", "figures"}, f"{where}, compare")
    figures: dict[str, float | None] = {}
    for name, value in _mapping(raw, "figures", f"{where}, compare").items():
        if value == "ignore":
            figures[str(name)] = None
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            figures[str(name)] = float(value)
        else:
            raise UsageError(f"{where}, compare, figures: {name!r} must be a number or 'ignore'")
    try:
        return Tolerances(float(raw.get("tolerance", 0.2)), float(raw.get("min_change", 1)), figures)
    except (TypeError, ValueError):
        raise UsageError(f"{where}, compare: tolerance and min_change must be numbers") from None


def _mapping(data: dict, key: str, where: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: {key!r} must be a mapping of name: value")
    return value


def _known(data: dict, keys: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in keys)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(keys))}")
