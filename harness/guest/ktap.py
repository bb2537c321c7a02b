"""KTAP as KUnit prints it (``KTAP version 1``, and the ``TAP version 14`` of older kernels):
the debugfs file ``/sys/kernel/debug/kunit/SUITE/results`` or the kernel log. ``parse`` gives
each suite with its cases' results and diagnostics.

Nesting follows indentation where there is any (KUnit indents a suite's cases by 4 spaces and
a parameterized case's params by 8); without it, a subtest ends with the result line that
bears its name or that comes once its plan is complete. A case's diagnostic is every other
line printed between the previous result of its level and its own (KUnit's ``# case:
EXPECTATION FAILED at FILE:LINE`` with the ``Expected ...`` lines under it; for a
parameterized case, its params' lines too).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Literal

from harness.errors import HarnessError
from harness.guest.crash import TIMESTAMP

Status = Literal["ok", "not ok", "skip"]

VERSION = re.compile(r"(?:KTAP|TAP) version \d+")
PLAN = re.compile(r"1\.\.(\d+)\b.*")
SUBTEST = re.compile(r"# Subtest: (.*)")
RESULT = re.compile(r"(not ok|ok) (\d+)\b(?: -)?(.*)")
DIRECTIVE = re.compile(r"\s#\s*")  # "ok 3 name # SKIP reason"


class KtapError(HarnessError):
    """Text that holds no KTAP test plan or result: the kernel printed no test results."""

    status = 1
    kind = "ktap"


@dataclass(frozen=True)
class KtapCase:
    """One result line: a KUnit case (or one param of a parameterized case)."""

    name: str
    status: Status
    number: int
    diagnostic: str = ""
    reason: str = ""  # the SKIP directive's reason
    subtests: tuple[KtapCase, ...] = ()  # a parameterized case's params


@dataclass(frozen=True)
class KtapSuite:
    """A suite and its cases; ``status`` None: its own result line never came."""

    name: str
    cases: tuple[KtapCase, ...]
    status: Status | None
    diagnostic: str = ""  # lines after its last case (KUnit: the counts, an init failure)
    plan: int | None = None

    def case(self, name: str) -> KtapCase | None:
        return next((case for case in self.cases if case.name == name), None)


@dataclass
class _Level:
    """A test being read: its plan, its results so far, the text under it."""

    indent: int
    name: str = ""
    plan: int | None = None
    results: list[KtapCase] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # everything under it, nested levels too
    mark: int = 0  # lines[mark:]: what came after its last result

    def opened(self) -> bool:
        """Nothing read in it yet but its version line."""
        return not (self.name or self.plan is not None or self.results or self.lines)

    def ends_with(self, name: str) -> bool:
        """Whether a result at its own indentation is its own (the unindented form)."""
        return name == self.name or (self.plan is not None and len(self.results) >= self.plan)

    def record(self, match: re.Match[str], line: str,
               subtests: tuple[KtapCase, ...] = ()) -> KtapCase:
        case = _case(match, _dedent(self.lines[self.mark:]), subtests)
        self.results.append(case)
        self.lines.append(line)
        self.mark = len(self.lines)
        return case


def _dedent(lines: list[str]) -> str:
    return textwrap.dedent("\n".join(lines)).strip("\n")


def _case(match: re.Match[str], diagnostic: str, subtests: tuple[KtapCase, ...] = ()
          ) -> KtapCase:
    ok, number, rest = match.groups()
    name, directive = (DIRECTIVE.split(rest.strip(), maxsplit=1) + [""])[:2]
    skipped = directive.upper().startswith("SKIP")
    status: Status = "skip" if skipped else ("ok" if ok == "ok" else "not ok")
    return KtapCase(name.strip(), status, int(number), diagnostic,
                    directive[4:].strip() if skipped else "", subtests)


def _close(stack: list[_Level], suites: list[KtapSuite], match: re.Match[str] | None,
           line: str) -> None:
    """End the innermost level: with ``match``, the result line that is its own; without,
    the text ended (or a shallower result came) first. A level the top one holds is a suite."""
    child = stack.pop()
    parent = stack[-1]
    trailing = _dedent(child.lines[child.mark:])
    parent.lines.extend(child.lines)
    cases = tuple(child.results)
    status = None if match is None else parent.record(match, line, cases).status
    if len(stack) == 1:
        name = child.name or (_case(match, "").name if match else "")
        suites.append(KtapSuite(name, cases, status, trailing, child.plan))


def parse(text: str) -> list[KtapSuite]:
    """Every suite in ``text``: the subtests of the top level (a result at the top level
    without one is a suite with no cases). KtapError when there is no plan and no result."""
    stack = [_Level(indent=0)]
    suites: list[KtapSuite] = []
    found = False
    for raw in text.splitlines():
        line = raw.rstrip()
        body = line.lstrip()
        if not body:
            continue
        indent = len(line) - len(body)
        top = stack[-1]
        if VERSION.fullmatch(body):
            if len(stack) > 1 or indent > 0:  # an unindented one at the top heads the text
                stack.append(_Level(indent))
        elif match := SUBTEST.fullmatch(body):
            if len(stack) > 1 and top.opened():
                top.name = match.group(1).strip()
            else:
                stack.append(_Level(indent, match.group(1).strip()))
        elif (match := PLAN.fullmatch(body)) and top.plan is None and not top.results:
            top.plan, found = int(match.group(1)), True
        elif match := RESULT.fullmatch(body):
            found = True
            while len(stack) > 2 and stack[-2].indent > indent:  # deeper ones never ended
                _close(stack, suites, None, line)
            top = stack[-1]
            if len(stack) > 1 and (top.indent > indent or (
                    top.indent == indent and top.ends_with(_case(match, "").name))):
                _close(stack, suites, match, line)
            else:
                case = top.record(match, line)
                if len(stack) == 1:
                    suites.append(KtapSuite(case.name, (), case.status, case.diagnostic))
        else:
            top.lines.append(line)
    if not found:
        head = "\n".join(text.strip().splitlines()[:5])
        raise KtapError("no KTAP test plan or result in the text", head or "(empty)")
    while len(stack) > 1:
        _close(stack, suites, None, "")
    return suites


def from_console(log: str) -> list[KtapSuite]:
    """The suites a kernel log holds ([] when none): printk's timestamps taken off, and
    unindented lines kept only where they are KTAP's own (a suite's lines are indented)."""
    kept = []
    for raw in log.splitlines():
        line = TIMESTAMP.sub("", raw.rstrip("\r"))
        body = line.strip()
        if line[:1].isspace() or body.startswith("#") or VERSION.fullmatch(body) \
                or PLAN.fullmatch(body) or RESULT.fullmatch(body):
            kept.append(line)
    try:
        return parse("\n".join(kept))
    except KtapError:
        return []
