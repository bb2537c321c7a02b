"""Load a page in Debian's headless chromium: the DOM after scripts ran, and the console."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)$")


@dataclass(frozen=True)
class Loaded:
    dom: str
    console: list[str]  # every console message and uncaught error the page produced

    def attribute(self, name: str) -> str | None:
        match = re.search(rf'<body[^>]*\s{re.escape(name)}="([^"]*)"', self.dom)
        return match.group(1) if match else None


def load(page: Path, timeout: float = 120.0) -> Loaded:
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed (scripts/setup installs Debian's chromium)"
    with tempfile.TemporaryDirectory(prefix="pte-chromium-") as profile:
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, errors="replace", timeout=timeout)
    assert result.returncode == 0, f"chromium exited {result.returncode}:\n{result.stderr[-2000:]}"
    console = [m.group(1) for line in result.stderr.splitlines() if (m := CONSOLE.search(line))]
    return Loaded(result.stdout, console)
