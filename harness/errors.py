"""Error types of every stage, each with the exit status the command line uses.

Statuses 240-249 belong to the harness; anything below is the guest command's
own status (``pte-harness exec``) or a test verdict.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class: a failure the harness can name. ``status`` is the exit code."""

    status = 240
    kind = "error"

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        if self.detail:
            return f"{self.message}\n{self.detail.rstrip()}"
        return self.message


class UsageError(HarnessError):
    """Bad options, a bad YAML file, a missing prerequisite."""

    status = 240
    kind = "usage"


class TreeError(HarnessError):
    """The kernel tree cannot be found, downloaded, verified or extracted."""

    status = 241
    kind = "tree"


class PatchError(HarnessError):
    """A patch of the series does not apply."""

    status = 242
    kind = "patch"


class ConfigError(HarnessError):
    """A requested Kconfig option did not survive olddefconfig or the build."""

    status = 243
    kind = "config"


class BuildError(HarnessError):
    """make failed."""

    status = 244
    kind = "build"


class BootError(HarnessError):
    """QEMU did not start, or the guest never reached its shell."""

    status = 245
    kind = "boot"


class KernelCrash(HarnessError):
    """The kernel log shows a panic, oops, BUG, warning or an unexpected reboot."""

    status = 246
    kind = "crash"


class GuestTimeout(HarnessError):
    """A command in the guest did not finish within its timeout."""

    status = 247
    kind = "timeout"


EXIT_STATUSES: dict[str, int] = {
    cls.kind: cls.status
    for cls in (UsageError, TreeError, PatchError, ConfigError, BuildError, BootError,
                KernelCrash, GuestTimeout)
}
