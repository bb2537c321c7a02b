"""Stage 8: find kernel crashes, warnings and lockdep reports in a console log."""

from __future__ import annotations

import re
from dataclasses import dataclass

# (kind, pattern) in priority order; the first pattern that matches a line names it.
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("panic", re.compile(r"Kernel panic - not syncing")),
    ("sleep-in-atomic", re.compile(r"sleeping function called from invalid context")),
    ("soft-lockup", re.compile(r"soft lockup - CPU#")),
    ("hard-lockup", re.compile(r"[Hh]ard LOCKUP")),
    ("hung-task", re.compile(r"INFO: task .* blocked for more than")),
    ("rcu-stall", re.compile(r"rcu: INFO: .*detected stalls?")),
    ("lockdep", re.compile(r"possible (circular|recursive) locking|inconsistent lock state|"
                           r"possible irq lock inversion|suspicious RCU usage|"
                           r"bad unlock balance|lock held when returning")),
    ("oom", re.compile(r"invoked oom-killer|Out of memory: Killed process")),
    ("oops", re.compile(r"\bOops\b|general protection fault|Unable to handle kernel")),
    ("bug", re.compile(r"\bBUG: ")),
    ("warning", re.compile(r"\bWARNING: ")),
    ("call-trace", re.compile(r"Call Trace:")),
]
TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
# A dump somebody asked for (echo t > /proc/sysrq-trigger, ...): the bare Call Traces after
# it are diagnostics, not reports; a report with its own header (BUG, WARNING...) still counts.
REQUESTED_DUMP = re.compile(r"sysrq: Show ")


@dataclass(frozen=True)
class Finding:
    kind: str
    line: int  # 1-based line number in the log
    excerpt: str

    def summary(self) -> str:
        first = self.excerpt.splitlines()[0] if self.excerpt else ""
        return f"{self.kind} at console line {self.line}: {first}"


def scan(log: str, max_lines: int = 60) -> list[Finding]:
    """Every report in ``log``; a Call Trace that belongs to a report is not counted again."""
    lines = log.splitlines()
    findings: list[Finding] = []
    covered = -1
    requested = False
    for index, line in enumerate(lines):
        if index <= covered:
            continue
        if REQUESTED_DUMP.search(line):
            requested = True
        kind = next((k for k, pattern in PATTERNS if pattern.search(line)), None)
        if kind is None or (kind == "call-trace" and requested):
            continue
        end = index + 1
        while end < len(lines) and end - index < max_lines:
            text = TIMESTAMP.sub("", lines[end])
            if not text.strip():
                break
            end += 1
            if "---[ end" in text:
                break
        covered = end - 1
        findings.append(Finding(kind, index + 1, "\n".join(lines[index:end])))
    return findings


def restarts(log: str) -> int:
    """How many times the kernel booted again after the first boot (silent reboots)."""
    return max(0, len(re.findall(r"^(?:\[\s*\d+\.\d+\]\s*)?Linux version ", log, re.M)) - 1)


def report(findings: list[Finding]) -> str:
    return "\n\n".join(f"== {f.summary()}\n{f.excerpt}" for f in findings)
