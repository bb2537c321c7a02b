"""The direct map as the kernel's page-table dump shows it (its "Low Kernel Mapping"
section): runs of addresses with their level and flags. The kernel tests read vmstat, meminfo
and the shrinker's count through ``guest-scripts/ptm`` (see ptecache.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

PTDUMP = "/sys/kernel/debug/page_tables/kernel"
DIRECT_MAP_SECTION = "Low Kernel Mapping"
LEVELS = ("pgd", "p4d", "pud", "pmd", "pte")
_SECTION = re.compile(r"^---\[ (.+) \]---$")
_RUN = re.compile(r"^0x([0-9a-f]+)-0x([0-9a-f]+)\s+\S+\s*(.*?)\s*(pgd|p4d|pud|pmd|pte)\s*$")


@dataclass(frozen=True)
class Run:
    """One line of the page-table dump: [start, end) mapped at ``level`` with ``flags``."""

    start: int
    end: int
    level: str
    flags: tuple[str, ...]

    @property
    def present(self) -> bool:
        return bool(self.flags)

    @property
    def size(self) -> int:
        return self.end - self.start


def parse_ptdump(text: str) -> dict[str, list[Run]]:
    """Runs by section name, in dump order."""
    sections: dict[str, list[Run]] = {}
    current: list[Run] | None = None
    for line in text.splitlines():
        line = line.strip()
        if match := _SECTION.match(line):
            current = sections.setdefault(match.group(1), [])
        elif current is not None and (run := parse_run(line)):
            current.append(run)
    return sections


def parse_run(line: str) -> Run | None:
    """One run line of the page-table dump, or None."""
    match = _RUN.match(line.strip())
    if not match:
        return None
    return Run(int(match.group(1), 16), int(match.group(2), 16), match.group(4),
               tuple(match.group(3).split()))


@dataclass(frozen=True)
class DirectMap:
    runs: tuple[Run, ...]

    @classmethod
    def from_dump(cls, text: str) -> DirectMap:
        sections = parse_ptdump(text)
        if DIRECT_MAP_SECTION not in sections:
            raise ValueError(f"no '{DIRECT_MAP_SECTION}' section in the page-table dump "
                             f"(sections: {', '.join(sections) or 'none'})")
        return cls(tuple(sections[DIRECT_MAP_SECTION]))

    def bytes_by_level(self) -> dict[str, int]:
        """Bytes of present mappings at each level."""
        totals = {level: 0 for level in LEVELS}
        for run in self.runs:
            if run.present:
                totals[run.level] += run.size
        return totals

    def strip(self) -> list[list]:
        """Present runs as [start, end, level] offsets from the section's start, adjacent
        runs of one level merged: the compact form the report draws."""
        if not self.runs:
            return []
        base = self.runs[0].start
        merged: list[list] = []
        for run in self.runs:
            if not run.present:
                continue
            start, end = run.start - base, run.end - base
            if merged and merged[-1][1] == start and merged[-1][2] == run.level:
                merged[-1][1] = end
            else:
                merged.append([start, end, run.level])
        return merged

    @property
    def base(self) -> int:
        """Where the direct map starts (PAGE_OFFSET): the address of page frame 0."""
        return self.runs[0].start

    def levels(self, addresses: list[int]) -> dict[str, int]:
        """How many of ``addresses`` are mapped at each level ("unmapped" for none), in
        one pass over the sorted addresses and the runs."""
        counts: dict[str, int] = {}
        runs = iter(self.runs)
        run = next(runs, None)
        for address in sorted(addresses):
            while run is not None and run.end <= address:
                run = next(runs, None)
            level = (run.level if run is not None and run.start <= address and run.present
                     else "unmapped")
            counts[level] = counts.get(level, 0) + 1
        return counts

    def level_of(self, address: int) -> str | None:
        """The level mapping ``address``, or None when it is not mapped."""
        for run in self.runs:
            if run.start <= address < run.end:
                return run.level if run.present else None
        return None
