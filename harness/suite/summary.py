"""A run's results as values: summary.json written by the pytest plugin and read by
`pte-harness run`, bisect and the nightly runner. Its format is described, per schema version,
by summary.schema.json beside this module.

The outcome of a test is typed: CRASHED (the kernel crashed: the guest's session raised
KernelCrash) is told from ERROR (the test could not tell: build, boot, timeout) by the
exception the test met, never by matching message text. Likewise a kernel that could not be
prepared carries its error's kind (tree, patch, config, build) in its own record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from harness.cache import read_json, write_json_atomic

SCHEMA = 3  # 2: outcome "crashed"; the "schema" key itself. 3: "kernels", a test's "kernel"
# and "excerpt"; a kernel record's id, identity, build and "error" fields (kernels.record)
SCHEMA_FILE = Path(__file__).with_name("summary.schema.json")


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
    kernel: str = ""  # the id of its kernel in Summary.kernels; "": the run's kernel
    excerpt: str = ""  # the kernel log's report, for a crash or a kernel-log finding

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
    kernel: dict[str, Any] | None = None  # the run's kernel (None: no test asked for it)
    transport: str = "serial"
    finished: bool = False
    exit_status: int | None = None
    tests: dict[str, TestResult] = field(default_factory=dict)
    kernels: dict[str, dict[str, Any]] = field(default_factory=dict)  # every kernel, by id

    @property
    def kernel_built(self) -> bool:
        return bool(self.kernel) and not (self.kernel or {}).get("error")

    def kernel_of(self, result: TestResult) -> dict[str, Any] | None:
        """The record of the kernel ``result``'s test booted (or was to boot)."""
        return self.kernels.get(result.kernel) or self.kernel

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "kernel": self.kernel, "kernels": self.kernels,
                "transport": self.transport, "finished": self.finished,
                "exit_status": self.exit_status,
                "tests": {nodeid: test.to_json() for nodeid, test in self.tests.items()}}

    def write(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> Summary | None:
        """The summary at ``path`` (a file or a results directory), None when absent."""
        data = read_json(path / "summary.json" if path.is_dir() else path)
        if data is None:
            return None
        kernel = data.get("kernel")
        kernels = data.get("kernels")
        if kernels is None and kernel:  # schema 2: the run's kernel only, named by its key
            kernel = {**kernel, "id": kernel.get("build_key") or "unidentified"}
            kernels = {kernel["id"]: kernel}
        return cls(kernel=kernel, transport=data.get("transport", "serial"),
                   finished=bool(data.get("finished")), exit_status=data.get("exit_status"),
                   tests={nodeid: TestResult.from_json(entry)
                          for nodeid, entry in data.get("tests", {}).items()},
                   kernels=kernels or {})
