"""A run's results in KernelCI's KCIDB format (kcidb.json): one checkout per tree and series,
one build per kernel, one test per test, valid against the schema of kcidb-io.

Statuses: a patch, config or build error is a build with status FAIL (not valid; a series that
does not apply, or a tree that cannot be read, also makes its checkout not valid) and its tests
MISS (not run); a failed assertion or kernel-log report is FAIL, a crash FAIL with the kernel
log's report as excerpt, a boot failure or timeout ERROR, an interrupted test MISS.

Ids are stable across reruns of the same inputs: ORIGIN:HASH of the tree identity and patchset
for a checkout, ORIGIN:BUILD-KEY for a build, ORIGIN:KEY[:24]:CELL:NODEID for a test (the cell,
in a nightly, keeps apart two cells that run the same test on the same kernel).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.cache import sha256_text, write_json_atomic
from harness.errors import UsageError
from harness.suite.summary import Outcome, Summary, TestResult

VERSION = {"major": 5, "minor": 3}  # the schema version the documents are written for
ORIGIN = "pte_harness"
SUITE = "pte_harness"  # the first component of every test path
ARCHITECTURE = "x86_64"
BOOT_FILES = ("control.log", "qemu-cmdline.txt")  # beside each boot's console.log
EXCERPT = 16384  # the schema's maxLength of a log excerpt
INVALID_CHECKOUT = ("tree", "patch")  # errors that mean the sources could not be combined
FAILED_BUILD = ("patch", "config", "build")  # errors that mean the kernel is wrong
STATUS = {Outcome.PASSED: "PASS", Outcome.FAILED: "FAIL", Outcome.CRASHED: "FAIL",
          Outcome.ERROR: "ERROR", Outcome.SKIPPED: "SKIP", Outcome.INTERRUPTED: "MISS"}

Where = Callable[[str], Path]  # a path as the summary records it -> where the file is now

log = logging.getLogger(__name__)


def check_origin(origin: str) -> str:
    """``origin`` when KCIDB accepts it (lower-case letters, digits, _), else a UsageError."""
    if not re.fullmatch(r"[a-z0-9_]+", origin):
        raise UsageError(f"--kcidb-origin {origin!r}: KCIDB origins are lower-case letters, "
                         "digits and _ (e.g. my_lab)")
    return origin


def document(summary: Summary, origin: str = ORIGIN, cell: str = "",
             where: Where = Path) -> dict[str, Any]:
    """The KCIDB document of one run (of one nightly ``cell``). ``where`` says where a path
    the summary records is now (the results of merged shards have moved)."""
    kernels = list(summary.kernels.values())  # the run's kernel is one of them
    checkouts = [_checkout(kernel, origin, where) for kernel in kernels]
    builds = [_build(kernel, origin, checkout["id"], where)
              for kernel, checkout in zip(kernels, checkouts)]
    tests = []
    for nodeid, result in summary.tests.items():
        kernel = summary.kernel_of(result)
        if kernel:  # else no kernel was asked for: nothing to attach the test to
            tests.append(_test(nodeid, result, kernel, origin, f"{origin}:{_id(kernel)}", cell,
                               summary.transport, where))
    return combine([{"checkouts": checkouts, "builds": builds, "tests": tests}])


def combine(documents: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One document of several: each object once (the first with its id)."""
    documents = list(documents)
    combined: dict[str, Any] = {"version": dict(VERSION)}
    for kind in ("checkouts", "builds", "tests"):
        seen: dict[str, dict] = {}
        for doc in documents:
            for obj in doc.get(kind, []):
                seen.setdefault(obj["id"], obj)
        combined[kind] = list(seen.values())
    return combined


def validate(doc: dict[str, Any]) -> None:
    """Raise ValueError naming the first place where ``doc`` breaks KCIDB's schema
    (kcidb-io's; imported here, where only validation needs it)."""
    import jsonschema
    from kcidb_io import schema

    if not schema.LATEST.is_compatible(doc):
        raise ValueError(f"KCIDB schema version {doc.get('version')} is not one kcidb-io "
                         f"{schema.LATEST} knows")
    try:
        schema.LATEST.validate(doc)
    except jsonschema.ValidationError as exc:
        place = "/".join(str(part) for part in exc.absolute_path) or "the document"
        raise ValueError(f"{place}: {exc.message}") from None


def write(path: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` atomically; one that does not validate is written all the same (to be
    looked at) with a warning, since the run's own results do not depend on it."""
    write_json_atomic(path, doc)
    try:
        validate(doc)
    except ValueError as exc:
        log.warning("%s does not validate against KCIDB's schema: %s", path, exc)
    return path


def relocated(old: str | None, new: Path) -> Where:
    """Where a recorded path is now that the directory ``old`` (None: unmoved) is ``new``."""
    def where(path: str) -> Path:
        if old and (path == old or path.startswith(old.rstrip("/") + "/")):
            return new / path[len(old):].lstrip("/")
        return Path(path)
    return where


def _excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT else text[:EXCERPT - 20] + "\n[... cut ...]\n"


def _resource(path: Path, name: str | None = None) -> dict[str, str]:
    return {"name": name or path.name, "url": path.absolute().as_uri()}


def _error(kernel: dict) -> dict:
    return kernel.get("error") or {}


def _id(kernel: dict) -> str:
    return str(kernel.get("id") or kernel.get("build_key") or "unidentified")


def _checkout(kernel: dict, origin: str, where: Where) -> dict[str, Any]:
    tree_identity = kernel.get("tree_identity") or f"spec:{kernel.get('tree')}"
    patchset = kernel.get("patchset_hash")  # None: the series could not be read
    sources = sha256_text(tree_identity, f"series:{kernel.get('series')}" if patchset is None
                          else patchset)
    checkout: dict[str, Any] = {
        "id": f"{origin}:{sources[:24]}", "origin": origin, "tree_name": str(kernel.get("tree")),
        "comment": f"Linux {kernel.get('version') or '?'} from {kernel.get('tree')}, "
                   f"series {kernel.get('series')}",
        "valid": _error(kernel).get("kind") not in INVALID_CHECKOUT,
        "misc": {k: kernel[k] for k in ("tree", "tree_identity", "version", "series", "patches")
                 if kernel.get(k) is not None}}
    commit = tree_identity.removeprefix("git:")
    if tree_identity.startswith("git:") and re.fullmatch(r"[0-9a-f]{40}", commit):
        checkout["git_commit_hash"] = commit
    if patchset is not None:
        checkout["patchset_hash"] = patchset
    series = kernel.get("series")
    if kernel.get("patches") and series and series != "none":
        checkout["patchset_files"] = [_resource(where(str(Path(series) / name)))
                                      for name in kernel["patches"]]
    if not checkout["valid"]:
        checkout["log_excerpt"] = _excerpt(_error(kernel).get("message", ""))
    return checkout


def _build(kernel: dict, origin: str, checkout_id: str, where: Where) -> dict[str, Any]:
    error = _error(kernel)
    fragments = [Path(f) for f in kernel.get("fragments", [])]
    build: dict[str, Any] = {
        "id": f"{origin}:{_id(kernel)}", "checkout_id": checkout_id, "origin": origin,
        "architecture": ARCHITECTURE,
        "config_name": "+".join([Path(str(kernel.get("base"))).name]
                                + [f.name.removesuffix(".config") for f in fragments]),
        "input_files": [_resource(where(str(f))) for f in fragments],
        "status": "PASS" if not error else "FAIL" if error["kind"] in FAILED_BUILD else "ERROR",
        "misc": {k: kernel[k] for k in ("build_key", "base", "reused") if k in kernel}}
    if kernel.get("compiler"):
        build["compiler"] = kernel["compiler"]
    if "build_seconds" in kernel:
        build["duration"] = kernel["build_seconds"]
    if kernel.get("build_log"):
        build["log_url"] = where(kernel["build_log"]).absolute().as_uri()
    if kernel.get("config"):
        build["config_url"] = where(kernel["config"]).absolute().as_uri()
    if kernel.get("image"):
        build["output_files"] = [_resource(where(kernel["image"]))]
    if error:
        build["comment"] = f"{error['kind']} error: {error['message'].splitlines()[0]}"
        build["log_excerpt"] = _excerpt(error["message"])
        build["misc"]["error_kind"] = error["kind"]
    elif kernel.get("version"):
        build["comment"] = f"Linux {kernel['version']}"
    return build


def test_path(nodeid: str) -> str:
    """A test's place in KCIDB's tree: SUITE.MODULE.TEST[.PARAMETERS], e.g.
    pte_harness.test_splits.test_grouping for tests/kernel/test_splits.py::test_grouping."""
    module, _, rest = nodeid.partition("::")
    name, _, params = rest.partition("[")
    parts = [Path(module).stem, *name.split("::"), *([params.rstrip("]")] if params else [])]
    return ".".join([SUITE, *(re.sub(r"[^A-Za-z0-9_-]+", "_", p).strip("_") or "_"
                              for p in parts if p)])


def _test(nodeid: str, result: TestResult, kernel: dict, origin: str, build_id: str,
          cell: str, transport: str, where: Where) -> dict[str, Any]:
    not_built = result.outcome == Outcome.ERROR and _error(kernel)
    test: dict[str, Any] = {
        "id": ":".join([origin, _id(kernel)[:24], *([cell] if cell else []), nodeid]),
        "build_id": build_id, "origin": origin, "path": test_path(nodeid),
        "status": "MISS" if not_built else STATUS[result.outcome],
        "duration": result.seconds,
        "environment": {"comment": f"QEMU guest, commands over {transport}",
                        "misc": {"transports": result.transports or [transport]}},
        "misc": {"nodeid": nodeid, "outcome": result.outcome.value,
                 **({"cell": cell} if cell else {}),
                 **({"figures": result.figures} if result.figures else {})}}
    if result.message:
        test["comment"] = result.message.splitlines()[0]
    excerpt = result.excerpt or (result.message if result.outcome != Outcome.PASSED else "")
    if excerpt:
        test["log_excerpt"] = _excerpt(excerpt)
    consoles = [where(c) for c in result.consoles]  # bootN/console.log, one per boot
    if consoles:
        test["log_url"] = consoles[0].absolute().as_uri()
        beside = [c.with_name(name) for c in consoles for name in BOOT_FILES]
        test["output_files"] = [_resource(p, f"{p.parent.name}-{p.name}")
                                for p in consoles[1:] + [p for p in beside if p.is_file()]]
    return test
