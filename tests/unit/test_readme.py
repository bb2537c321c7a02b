"""README's exit-status tables list every status the commands return (issue 17, 8)."""

from __future__ import annotations

import argparse
import re

from harness import cli
from harness.errors import EXIT_STATUSES
from harness.nightly import runner
from harness.options import PROJECT_ROOT
from harness.suite import run


def section() -> str:
    text = (PROJECT_ROOT / "README.md").read_text()
    return text.split("### Exit statuses", 1)[1].split("\n## ", 1)[0]


def rows(text: str) -> dict[str, str]:
    """First cell -> the rest of each table row."""
    found = {}
    for line in text.splitlines():
        if match := re.match(r"^\| ([^|]+?) \| (.+) \|$", line):
            found[match.group(1).strip("` ")] = match.group(2)
    return found


def test_every_harness_status_and_kind_is_listed():
    table = rows(section())
    for kind, status in EXIT_STATUSES.items():
        assert table.get(str(status), "").startswith(f"{kind} |"), (kind, status)
    assert "130 when interrupted" in section()


def test_every_command_has_its_statuses():
    table = rows(section())
    subcommands = next(action for action in cli.parser()._actions
                       if isinstance(action, argparse._SubParsersAction))
    assert set(subcommands.choices) | {"run --bisect-exit"} == {
        c for c in table if not c.isdigit() and c not in ("status", "command", "---")}
    bisect = table["run --bisect-exit"]
    for status in (run.BISECT_GOOD, run.BISECT_BAD, run.BISECT_SKIP, run.BISECT_ABORT):
        assert re.search(rf"\b{status} ", bisect), status
    nightly = table["nightly"]
    for status in (runner.EXIT_PASS, runner.EXIT_FAIL, runner.EXIT_ERROR, runner.EXIT_MOVED,
                   runner.EXIT_INTERRUPTED):
        assert re.search(rf"\b{status} ", nightly), status
    assert "1-239" in table["exec"] and "3 some did" in table["compare"]
    assert all(f"{n} " in table["run"] for n in range(6) if n != 2)  # 2 becomes 130
    assert "4 usage" in table["run"] and "QEMU missing" in table["run"]
    assert "0 every required" in table["doctor"] and "240 one is missing" in table["doctor"]
    assert all(s in table["mutate"] for s in ("0 every mutant", "1 one survived", "2 one"))
