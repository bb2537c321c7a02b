"""Stage 3: make a .config from a base plus fragments and check every requested option."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError, UsageError

BASES = ("tinyconfig", "defconfig", "allnoconfig")
_ASSIGN = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class Fragment:
    """Options one fragment file asks for: name -> value ('n' for 'is not set')."""

    path: Path
    options: dict[str, str] = field(hash=False)


def parse_config_text(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if match := _ASSIGN.match(line):
            options[match.group(1)] = match.group(2)
        elif match := _UNSET.match(line):
            options[match.group(1)] = "n"
    return options


def load_fragment(path: Path) -> Fragment:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"config fragment {path} cannot be read: {exc.strerror}") from exc
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not (line.startswith("#") or _ASSIGN.match(line)):
            raise ConfigError(f"{path}:{number}: not a Kconfig assignment: {line!r}")
    return Fragment(path, parse_config_text(text))


@dataclass(frozen=True)
class Mismatch:
    option: str
    wanted: str
    got: str
    fragment: Path
    depends: str = ""

    def describe(self) -> str:
        got = "not set" if self.got == "n" else self.got
        text = f"{self.option}={self.wanted} (from {self.fragment}) but .config has {got}"
        return text + (f"\n    {self.depends}" if self.depends else "")


def missing_options(config: dict[str, str], fragments: list[Fragment]) -> list[Mismatch]:
    """Requested options whose value in ``config`` differs (later fragments win)."""
    wanted: dict[str, tuple[str, Path]] = {}
    for fragment in fragments:
        for name, value in fragment.options.items():
            wanted[name] = (value, fragment.path)
    return [Mismatch(name, value, config.get(name, "n"), path)
            for name, (value, path) in wanted.items() if config.get(name, "n") != value]


def kconfig_dependencies(tree: Path, option: str, config: dict[str, str]) -> str:
    """'defined in FILE; depends on EXPR [SYM=value ...]' read from the tree's Kconfig files;
    the conditions of enclosing ``if`` blocks (nested, each up to its ``endif``) count as
    dependencies, as they do for Kconfig, and are named with their line."""
    symbol = option.removeprefix("CONFIG_")
    start = re.compile(rf"^\s*(?:menu)?config\s+{re.escape(symbol)}\s*$")
    for kconfig in sorted(tree.rglob("Kconfig*")):
        try:
            lines = kconfig.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for index, line in enumerate(lines):
            if not start.match(line):
                continue
            depends: list[str] = []
            for body in lines[index + 1:]:
                if re.match(r"^\s*(menu)?config\s|^\s*(endmenu|endif|menu|choice|if)\b", body):
                    break
                if match := re.match(r"^\s*depends on\s+(.+)$", body):
                    depends.append(match.group(1).strip())
            relative = kconfig.relative_to(tree)
            where = f"defined in {relative}"
            blocks = enclosing_ifs(lines, index)
            conditions = [condition for _, condition in blocks] + depends
            if not conditions:
                return where + "; no 'depends on' and no enclosing 'if' (check enclosing " \
                               "'menu' blocks, choices and the files that source this one)"
            expr = " && ".join(f"({c})" if len(conditions) > 1 else c for c in conditions)
            symbols = sorted(set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", expr)))
            values = " ".join(f"{s}={config.get('CONFIG_' + s, 'n')}" for s in symbols)
            inside = "".join(f"; inside 'if {condition}' ({relative}:{number})"
                             for number, condition in blocks)
            return f"{where}; depends on {expr} [{values}]{inside}"
    return f"no Kconfig in this tree defines {symbol}"


def enclosing_ifs(lines: list[str], index: int) -> list[tuple[int, str]]:
    """The ``if`` blocks open at line ``index`` (outermost first), as (line number, condition);
    an ``endif`` closes the innermost."""
    opened: list[tuple[int, str]] = []
    help_indent: int | None = None  # help text: lines indented at least as its first one
    in_help = False
    for number, line in enumerate(lines[:index], 1):
        indent = len(line.expandtabs()) - len(line.expandtabs().lstrip())
        if in_help:
            if not line.strip():
                continue
            if help_indent is None:
                help_indent = indent
            if indent >= help_indent:
                continue
            in_help = False
        if re.match(r"^\s*(---)?help(---)?\s*$", line):
            in_help, help_indent = True, None
        elif match := re.match(r"^\s*if\s+(.+?)\s*(?:#.*)?$", line):
            opened.append((number, match.group(1)))
        elif re.match(r"^\s*endif\b", line) and opened:
            opened.pop()
    return opened


def read_config(path: Path) -> dict[str, str]:
    try:
        return parse_config_text(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def check(tree: Path, config_path: Path, fragments: list[Fragment], when: str) -> None:
    """Raise ConfigError naming every requested option the final .config lacks."""
    config = read_config(config_path)
    mismatches = missing_options(config, fragments)
    if mismatches:
        detailed = [Mismatch(m.option, m.wanted, m.got, m.fragment,
                             kconfig_dependencies(tree, m.option, config)) for m in mismatches]
        raise ConfigError(
            f"{len(mismatches)} requested config option(s) missing {when} ({config_path})",
            "\n".join("  " + m.describe() for m in detailed))


def make_config(make: list[str], tree: Path, build_dir: Path, base: str,
                fragments: list[Fragment], log: Path) -> Path:
    """Write build_dir/.config: base, fragments merged in order, olddefconfig, checked."""
    config_path = build_dir / ".config"
    if base in BASES:
        _make(make + [base], log)
    else:
        try:
            text = Path(base).read_text()
        except OSError as exc:
            raise UsageError(f"base config {base} cannot be read: {exc.strerror}") from exc
        config_path.write_text(text)
    merged = read_config(config_path)
    for fragment in fragments:
        merged.update(fragment.options)
    config_path.write_text("".join(
        f"# {name} is not set\n" if value == "n" else f"{name}={value}\n"
        for name, value in merged.items()))
    _make(make + ["olddefconfig"], log)
    check(tree, config_path, fragments, "after olddefconfig")
    return config_path


def _make(command: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise ConfigError(f"'{' '.join(command)}' failed (exit {result.returncode}); log: {log}",
                          _tail(log, 20))


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
