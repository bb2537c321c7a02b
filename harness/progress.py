"""Messages and the progress of long steps.

Messages go through the ``pte_harness`` logger, printed as ``pte-harness: ...`` on stderr
(``-q``: warnings only, ``-v``: debug lines too). A long step is a ``Stage``: on a terminal a
live tqdm bar that goes away when the step ends; elsewhere (CI logs) nothing while it runs.
Either way, one line with the step's final figure when it ends.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a bar is shown: every command starts faster without it
    from tqdm import tqdm

LOG = logging.getLogger("pte_harness")
VERBOSITY_ENV = "PTE_HARNESS_VERBOSITY"  # passed on to the harness's own child processes
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest swaps it while capturing)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("pte-harness: %(message)s"))

    @property
    def stream(self):  # noqa: D401 - logging reads this attribute
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def _handler() -> logging.Handler:
    for handler in LOG.handlers:
        if isinstance(handler, _StderrHandler):
            return handler
    handler = _StderrHandler()
    LOG.addHandler(handler)
    LOG.propagate = False
    if LOG.level == logging.NOTSET:
        try:
            verbosity = int(os.environ.get(VERBOSITY_ENV, "0"))
        except ValueError:
            verbosity = 0
        LOG.setLevel(LEVELS.get(max(-1, min(1, verbosity)), logging.INFO))
    return handler


def set_verbosity(verbosity: int) -> None:
    """-1 quiet (warnings and errors), 0 normal, 1 verbose (debug)."""
    _handler()
    verbosity = max(-1, min(1, verbosity))
    LOG.setLevel(LEVELS[verbosity])
    os.environ[VERBOSITY_ENV] = str(verbosity)


def say(message: str) -> None:
    _handler()
    LOG.info(message)


def live() -> bool:
    """Whether a live bar makes sense: stderr is a terminal and progress is not silenced."""
    return sys.stderr.isatty() and LOG.isEnabledFor(logging.INFO)


class Stage:
    """One long step: ``with Stage("build", total=N, unit="obj") as stage: stage.advance()``.

    ``total`` may be None (a counter without an end). ``done(text)`` sets the final figure;
    without it the final line gives the count.
    """

    def __init__(self, name: str, total: int | None = None, unit: str = "it",
                 unit_scale: bool = False) -> None:
        self.name = name
        self.total = total
        self.unit = unit
        self.count = 0
        self.final = ""
        self.start = time.monotonic()
        self.bar: tqdm | None = None
        if live():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=name, unit=unit, unit_scale=unit_scale,
                            leave=False, dynamic_ncols=True, mininterval=0.5, file=sys.stderr)

    def __enter__(self) -> Stage:
        return self

    def advance(self, n: int = 1, detail: str = "") -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            if detail:
                self.bar.set_postfix_str(detail[:60], refresh=False)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def done(self, text: str) -> None:
        self.final = text

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.close()
        outcome = self.final or f"{self.count} {self.unit}"
        if kind is not None:
            outcome = f"stopped after {self.count} {self.unit}"
        say(f"{self.name}: {outcome} in {self.elapsed():.1f}s")
