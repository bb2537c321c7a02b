"""The summary's record of each kernel a run prepares (summary.json "kernels", "kernel"):
what it was built from, its identity, its build, and the error that stopped it, if any."""

from __future__ import annotations

from typing import Any

from harness.cache import sha256_text
from harness.errors import HarnessError
from harness.kernel import build
from harness.options import Options


def kernel_id(identity: build.Identity | None, chosen: Options) -> str:
    """The build key; for a kernel whose tree or series could not even be read, a hash of
    the options that ask for it (the same on every rerun of the same options)."""
    if identity is not None:
        return identity.key
    return "unidentified-" + sha256_text(
        chosen.tree, chosen.series, chosen.base, *chosen.kconfig, str(chosen.default_kconfig),
        chosen.transport, str(chosen.numa), chosen.hotplug)[:40]


def record(chosen: Options, request: build.BuildRequest | None,
           result: build.BuildResult | None = None, error: HarnessError | None = None,
           seconds: float | None = None) -> dict[str, Any]:
    """The kernel record of ``chosen``: from its build ``result``, or from the ``error`` that
    stopped it (``seconds`` after it began) and whatever identity could still be read."""
    identity = result.identity if result else _identity(request)
    entry: dict[str, Any] = {
        "id": kernel_id(identity, chosen), "tree": chosen.tree,
        "series": str(request.series or "none") if request else chosen.series,
        "base": chosen.base,
        "fragments": [str(p) for p in request.fragments] if request else list(chosen.kconfig),
        "version": result.version if result else None,
        "build_key": identity.key if identity else None}
    if identity:
        entry.update(tree_identity=identity.tree, patchset_hash=identity.patchset,
                     patches=list(identity.patches), compiler=identity.compiler)
        log = result.log if result else build.published(identity.key) / "build.log"
        if log.is_file():
            entry["build_log"] = str(log)
    if result:
        entry.update(image=str(result.image), config=str(result.config),
                     build_seconds=round(result.duration, 1), reused=result.reused)
    elif seconds is not None:
        entry["build_seconds"] = round(seconds, 1)
    if error is not None:
        entry["error"] = {"kind": error.kind, "message": str(error)}
    return entry


def _identity(request: build.BuildRequest | None) -> build.Identity | None:
    if request is None:
        return None
    try:
        return build.identify(request)
    except HarnessError:  # the tree or the series cannot be read: no key to name
        return None
