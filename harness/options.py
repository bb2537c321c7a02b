"""Options shared by the commands: defaults, a YAML file, then the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from . import source
from .errors import UsageError

PROJECT_ROOT = Path(os.environ.get("PTE_HARNESS_ROOT") or Path(__file__).resolve().parent.parent)
KCONFIG_DIR = PROJECT_ROOT / "kconfigs"
PATCH_DIR = PROJECT_ROOT / "patches"
GUEST_SCRIPTS = PROJECT_ROOT / "guest-scripts"
GUEST_SOURCES = PROJECT_ROOT / "guest-src"
DEFAULT_SERIES = "auto"
BASE_FRAGMENT = "base.config"
FEATURE_FRAGMENTS = ("pte-mapped.config", "debug.config")
NET_FRAGMENT = "net.config"  # merged last when the guest is driven over ssh
TRANSPORTS = ("serial", "ssh")
FEATURE_MARKER = "config ARCH_WANTS_PTE_MAPPED_CACHE"  # in mm/Kconfig of a tree with the series


@dataclass(frozen=True)
class Options:
    tree: str = "debian:6.12"
    series: str = DEFAULT_SERIES  # auto (patches/vX.Y for the tree), a directory, a name, none
    base: str = "tinyconfig"
    kconfig: tuple[str, ...] | None = None  # fragments after base.config; None: the default set
    accel: str = "auto"
    memory: str = "1G"
    cpus: int = 1
    cpu: str = "max"
    append: str = ""
    boot_timeout: float = 60.0
    timeout: float = 600.0
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    build_dir: str | None = None  # None: one directory per build key in the cache
    transport: str = "serial"  # serial: shell on ttyS1; ssh: dropbear over virtio-net

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise UsageError(f"transport must be one of {', '.join(TRANSPORTS)}, "
                             f"not {self.transport!r}")

    def series_dir(self) -> Path | None:
        if self.series == "none":
            return None
        if self.series == "auto":
            if self.tree_carries_series():
                return None
            release = source.release(source.parse_spec(self.tree))
            named = PATCH_DIR / f"v{release}"
            if not (named / "series").is_file():
                raise UsageError(f"no patch series for Linux {release} ({self.tree}): "
                                 f"{named} does not exist; series there: {_known_series()}; "
                                 "pass --series DIR or --series none")
            return named
        path = Path(self.series).expanduser()
        if path.is_dir():
            return path.resolve()
        named = PATCH_DIR / self.series
        if named.is_dir():
            return named
        raise UsageError(f"patch series {self.series!r} not found (neither a directory nor "
                         f"{named}); series in {PATCH_DIR}: {_known_series()}")

    def tree_carries_series(self) -> bool:
        """Whether the tree already has the feature (a tree being bisected, say): its
        mm/Kconfig defines the feature's Kconfig symbol. Debian's trees never do."""
        spec = source.parse_spec(self.tree)
        if spec.kind == "debian":
            return False
        return FEATURE_MARKER in (source.read_file(spec, "mm/Kconfig") or "")

    def default_fragments(self) -> tuple[str, ...]:
        """Fragments after base.config when none are given: the feature's, when a series
        is applied or the tree carries it."""
        if self.series != "none" or self.tree_carries_series():
            return FEATURE_FRAGMENTS
        return ()

    def fragment_paths(self) -> tuple[Path, ...]:
        """base.config, the feature's (or the given) fragments, net.config for ssh."""
        extra = self.default_fragments() if self.kconfig is None else self.kconfig
        names = [BASE_FRAGMENT, *extra]
        if self.transport == "ssh" and NET_FRAGMENT not in names:
            names.append(NET_FRAGMENT)
        return tuple(resolve_fragment(name) for name in names)


def _known_series() -> str:
    known = sorted(p.parent.name for p in PATCH_DIR.glob("*/series"))
    return ", ".join(known) or "none"


def resolve_fragment(name: str) -> Path:
    """A fragment path, or a name under kconfigs/ (with or without .config)."""
    for candidate in (Path(name).expanduser(), KCONFIG_DIR / name, KCONFIG_DIR / f"{name}.config"):
        if candidate.is_file():
            return candidate.resolve()
    raise UsageError(f"config fragment {name!r} not found (looked for it as a path and in {KCONFIG_DIR})")


_TYPES: dict[str, tuple[type, ...]] = {
    "tree": (str,), "series": (str,), "base": (str,), "kconfig": (list,), "accel": (str,),
    "memory": (str,), "cpus": (int,), "cpu": (str,), "append": (str,),
    "boot_timeout": (int, float), "timeout": (int, float), "jobs": (int,), "build_dir": (str,),
    "transport": (str,),
}


def read_yaml(path: Path, what: str) -> Any:
    """``yaml.safe_load`` of a file; unreadable or invalid YAML is a usage error naming it."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{what} {path} is not valid YAML", str(exc)) from exc


def load_yaml(path: Path) -> dict[str, Any]:
    """Read an options file; unknown keys and wrong types are errors naming the key."""
    data = read_yaml(path, "options file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"options file {path}: expected a mapping of option: value")
    result: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in _TYPES:
            raise UsageError(f"options file {path}: unknown key {key!r}; known keys: "
                             f"{', '.join(sorted(k.replace('_', '-') for k in _TYPES))}")
        types = _TYPES[name]
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise UsageError(f"options file {path}: key {key!r} must be a {wanted}, "
                             f"not {type(value).__name__} ({value!r})")
        if name == "kconfig":
            if not all(isinstance(item, str) for item in value):
                raise UsageError(f"options file {path}: key 'kconfig' must be a list of strings")
            value = tuple(value)
        result[name] = value
    return result


def merge(yaml_file: Path | None, overrides: dict[str, Any]) -> Options:
    """Defaults, then the YAML file, then command-line values that were given (not None).
    Without a tree from either, a kernel tree in the current directory is the tree."""
    values: dict[str, Any] = load_yaml(yaml_file) if yaml_file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "tree" not in values and source.is_kernel_tree(Path.cwd()):
        values["tree"] = str(Path.cwd())  # typed in a kernel tree: test that tree
    known = {f.name for f in fields(Options)}
    return replace(Options(), **{k: v for k, v in values.items() if k in known})
