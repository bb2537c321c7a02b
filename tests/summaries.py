"""Run summaries as `pte-harness run` writes them, built without a kernel: the kernel records
(harness/suite/kernels.py) and results of the tests that read summaries."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from pathlib import Path

from harness.options import PROJECT_ROOT
from harness.suite.summary import Summary, TestResult

SERIES = PROJECT_ROOT / "patches" / "v6.12"
COMPILER = "gcc (Debian 12.2.0-14) 12.2.0"


def kernel(tree: str = "debian:6.12", error: tuple[str, str] | None = None,
           fragments: tuple[str, ...] = ("base.config", "pte-mapped.config", "debug.config"),
           built: bool | None = None, series: Path = SERIES, build_log: str = "") -> dict:
    """The record of a kernel from ``tree`` with ``series``: built, or stopped by ``error``
    (kind, message); a patch, config or build error still has its identity."""
    key = hashlib.sha256(f"{tree} {series} {fragments}".encode()).hexdigest()
    tree_hash = hashlib.sha256(tree.encode()).hexdigest()
    record = {"id": key, "tree": tree, "series": str(series), "base": "tinyconfig",
              "fragments": [str(PROJECT_ROOT / "kconfigs" / f) for f in fragments],
              "version": None, "build_key": key,
              "tree_identity": f"git:{tree_hash[:40]}" if tree.startswith("git:")
              else f"tarball:{tree_hash}",
              "patchset_hash": hashlib.sha256(str(series).encode()).hexdigest(),
              "patches": ["0001-mm-add-gfp-pte-mapped.patch", "0002-mm-pte-mapped-cache.patch"],
              "compiler": COMPILER, "build_log": build_log or f"/cache/builds/{key[:24]}/build.log"}
    if built if built is not None else error is None:
        record.update(version="6.12.117", image=f"/cache/builds/{key[:24]}/bzImage",
                      config=f"/cache/builds/{key[:24]}/.config", build_seconds=181.5,
                      reused=True)
    if error:
        record["error"] = {"kind": error[0], "message": error[1]}
    return record


def run_summary(tests: dict[str, dict | TestResult], kernel_record: dict | None = None,
                results: Path | None = None, status: int = 0) -> Summary:
    """A finished run of ``tests`` (TestResult or its JSON) on ``kernel_record``; with
    ``results``, each test that booted gets a console.log and control.log there."""
    record = kernel_record if kernel_record is not None else kernel()
    parsed = {nodeid: entry if isinstance(entry, TestResult) else TestResult.from_json(entry)
              for nodeid, entry in tests.items()}
    if results is not None:
        for nodeid, result in parsed.items():
            if result.outcome.value in ("passed", "failed", "crashed") and not result.consoles:
                boot = results / nodeid.replace("/", "_").replace(":", "_") / "boot0"
                boot.mkdir(parents=True, exist_ok=True)
                for name in ("console.log", "control.log"):
                    (boot / name).write_text(f"{name} of {nodeid}\n")
                result.consoles = [str(boot / "console.log")]
                result.transports = ["serial"]
    return Summary(kernel=record, kernels={record["id"]: record}, finished=True,
                   exit_status=status, tests=parsed)


def check_schema(path: Path, schema_file: Path) -> dict:
    """The JSON at ``path``, after checking it against ``schema_file`` (Draft 7)."""
    import jsonschema
    data = json.loads(path.read_text())
    schema = json.loads(schema_file.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(data)
    return data


def local_path(url: str) -> Path:
    """The file a file:// URL of kcidb.json names."""
    parsed = urllib.parse.urlparse(url)
    assert parsed.scheme == "file", url
    return Path(urllib.parse.unquote(parsed.path))
