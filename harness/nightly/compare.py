"""Figures that moved between two nightly summaries, even when every test still passes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.nightly.matrix import Tolerances


@dataclass(frozen=True)
class Moved:
    cell: str
    test: str
    figure: str
    before: float
    after: float

    @property
    def change(self) -> str:
        if self.before == 0:
            return f"{self.after - self.before:+g} (from 0)"
        return f"{(self.after - self.before) / abs(self.before):+.0%}"

    def __str__(self) -> str:
        return (f"{self.cell}: {self.test.split('::', 1)[-1]}: {self.figure} "
                f"{self.before:g} -> {self.after:g} ({self.change})")

    def as_dict(self) -> dict:
        return {**asdict(self), "change": self.change}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def moved_figures(current: dict, previous: dict, tolerances: Tolerances) -> list[Moved]:
    """Numeric figures of the same cell and test whose change is beyond the tolerance."""
    moved = []
    for cell_name, cell in current.get("cells", {}).items():
        old_cell = previous.get("cells", {}).get(cell_name)
        if not old_cell:
            continue
        for test, entry in cell.get("tests", {}).items():
            old_entry = old_cell.get("tests", {}).get(test)
            if not old_entry:
                continue
            old_figures = old_entry.get("figures", {})
            for figure, value in entry.get("figures", {}).items():
                after, before = _number(value), _number(old_figures.get(figure))
                tolerance = tolerances.for_figure(figure)
                if after is None or before is None or tolerance is None:
                    continue
                change = abs(after - before)
                if change <= tolerances.min_change:
                    continue
                if before == 0 or change / abs(before) > tolerance:
                    moved.append(Moved(cell_name, test, figure, before, after))
    return moved
