"""A run's results as values: summary.json written by the pytest plugin and read by
`pte-harness run`, bisect and the nightly runner.

The outcome of a test is typed: CRASHED (the kernel crashed: the guest's session raised
KernelCrash) is told from ERROR (the test could not tell: build, boot, timeout) by the
exception the test met, never by matching message text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from harness.cache import read_json, write_json_atomic

SCHEMA = 2  # 2: outcome "crashed"; the "schema" key itself


class Outcome(str, Enum):
    PASSED = "passed"
    FAILED = "failed"  # an assertion or a kernel-log report: the kernel is wrong
    CRASHED = "crashed"  # the kernel crashed under the test: the kernel is wrong
    ERROR = "error"  # the test could not tell (kernel not built, boot failed, timeout)
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  # the run was stopped while the test ran

    @property
    def kernel_is_wrong(self) -> bool:
        return self in (Outcome.FAILED, Outcome.CRASHED)


@dataclass
class TestResult:
    __test__ = False  # a value, not a pytest test class

    outcome: Outcome = Outcome.PASSED
    seconds: float = 0.0
    message: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    direct_maps: dict[str, Any] = field(default_factory=dict)
    consoles: list[str] = field(default_factory=list)
    transports: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return {k: v for k, v in data.items() if v or k in ("outcome", "seconds")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestResult:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "outcome": Outcome(data.get("outcome", "error"))})


@dataclass
class Summary:
    kernel: dict[str, Any] | None = None  # None: the kernel could not be built
    transport: str = "serial"
    finished: bool = False
    exit_status: int | None = None
    tests: dict[str, TestResult] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "kernel": self.kernel, "transport": self.transport,
                "finished": self.finished, "exit_status": self.exit_status,
                "tests": {nodeid: test.to_json() for nodeid, test in self.tests.items()}}

    def write(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> Summary | None:
        """The summary at ``path`` (a file or a results directory), None when absent."""
        data = read_json(path / "summary.json" if path.is_dir() else path)
        if data is None:
            return None
        return cls(kernel=data.get("kernel"), transport=data.get("transport", "serial"),
                   finished=bool(data.get("finished")), exit_status=data.get("exit_status"),
                   tests={nodeid: TestResult.from_json(entry)
                          for nodeid, entry in data.get("tests", {}).items()})
