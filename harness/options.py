"""Every build and boot option, declared once (Options), and the surfaces derived from it:
command-line arguments, pytest options, PTE_HARNESS_* variables, options files and matrix keys."""

from __future__ import annotations

import argparse
import functools
import os
import reprlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import yaml

from harness.guest import transport, vm
from harness.kernel import source
from harness.errors import TreeError, UsageError

PROJECT_ROOT = Path(os.environ.get("PTE_HARNESS_ROOT") or Path(__file__).resolve().parent.parent)
KCONFIG_DIR = PROJECT_ROOT / "kconfigs"
PATCH_DIR = PROJECT_ROOT / "patches"
GUEST_SCRIPTS = PROJECT_ROOT / "guest-scripts"
GUEST_SOURCES = PROJECT_ROOT / "guest-src"
DEFAULT_SERIES = "auto"
BASE_FRAGMENT = "base.config"
FEATURE_FRAGMENTS = ("pte-mapped.config", "debug.config")
SERIES_FRAGMENT = "tests.config"  # in a series directory: options its tests need on that release
NUMA_FRAGMENT, HOTPLUG_FRAGMENT = "numa.config", "hotplug.config"
TRANSPORTS = tuple(transport.TRANSPORTS)
FEATURE_MARKER = "config ARCH_WANTS_PTE_MAPPED_CACHE"  # in mm/Kconfig of a tree with the series


@dataclass(frozen=True)
class Spec:
    """How one option appears on every surface. Derived from the field's name: the flag
    ``--boot-timeout``, the YAML and matrix key ``boot-timeout``, the environment variable
    ``PTE_HARNESS_BOOT_TIMEOUT`` and the pytest option (the same flag unless ``pytest_flag``).
    """

    help: str
    group: str  # kernel (decides the build) or guest (decides the boot)
    kind: str = "str"  # str | int | float | list | bool
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    pytest_flag: str = ""  # where the command-line flag would clash with pytest's own
    pytest_only: bool = False  # pytest: pytest_flag alone (the flag is a plugin's, e.g. --timeout)
    old_names: tuple[str, ...] = ()  # earlier pytest flags and environment variables


# A dataclass with field metadata, not pydantic or msgspec: the standard library only (no
# dependency for a handful of flat fields), and the declaration stays small; checking YAML
# values against a Spec (check_value) is a few lines.
def option(default: Any, help: str, group: str, **spec: Any) -> Any:
    """A field of Options with its Spec (see ``Spec``)."""
    if callable(default):
        return field(default_factory=default, metadata={"spec": Spec(help, group, **spec)})
    return field(default=default, metadata={"spec": Spec(help, group, **spec)})


@dataclass(frozen=True)
class Options:
    """Every build and boot option, declared once: the command line of each command, the
    environment, YAML option files, matrix cells and the pytest plugin are derived from it."""

    tree: str = option("debian:6.12", "debian:X.Y, DIR, git:PATH@REF, TARBALL or URL#sha256=HEX "
                       "(default: the kernel tree in the current directory, else debian:6.12)",
                       "kernel", pytest_flag="--kernel-tree")
    series: str = option(DEFAULT_SERIES, "patch series: auto (patches/vX.Y for the tree's "
                         "version), DIR, a name under patches/, or none", "kernel")
    base: str = option("tinyconfig", "base configuration: tinyconfig, defconfig, allnoconfig "
                       "or a config file", "kernel")
    kconfig: tuple[str, ...] = option((), "a fragment merged after the default ones "
                                      "(repeatable; a path or a name in kconfigs/)", "kernel",
                                      kind="list", metavar="FRAG")
    default_kconfig: bool = option(True, "merge the default fragments (pte-mapped.config and "
                                   "debug.config when a series is applied or the tree carries "
                                   "it); --no-default-kconfig: base.config and --kconfig only",
                                   "kernel", kind="bool")
    jobs: int = option(lambda: os.cpu_count() or 1, "make -j (default: number of CPUs)",
                       "kernel", kind="int")
    build_dir: str | None = option(None, "object directory to build in, instead of the "
                                   "workspace's one for the configuration", "kernel")
    accel: str = option("auto", "accelerator: auto (KVM only after a probe boot), kvm or tcg",
                        "guest", choices=("auto", "kvm", "tcg"))
    memory: str = option("1G", "guest memory", "guest", old_names=("--guest-mem", "PTE_HARNESS_GUEST_MEM"))
    cpus: int = option(1, "guest CPUs", "guest", kind="int")
    numa: int = option(0, "NUMA nodes sharing the guest's memory and CPUs out (0: none; the "
                       "kernel merges numa.config)", "guest", kind="int")
    hotplug: str = option("", "hotpluggable memory beyond --memory, e.g. 1G: QEMU gets DIMM "
                          "slots for it, tests add and remove it (the kernel merges "
                          "hotplug.config)", "guest", metavar="SIZE")
    cpu: str = option("max", "QEMU -cpu model", "guest")
    append: str = option("", "extra kernel command-line arguments", "guest")
    boot_timeout: float = option(60.0, "seconds to reach the guest's shell", "guest", kind="float")
    timeout: float = option(600.0, "seconds a guest command may take unless it says otherwise",
                            "guest", kind="float", pytest_flag="--command-timeout",
                            pytest_only=True)  # pytest-timeout's --timeout
    transport: str = option("serial", "how commands reach the guest: serial (a shell on ttyS1) "
                            "or ssh (dropbear over virtio-net; the kernel merges net.config)",
                            "guest", choices=TRANSPORTS)

    def __post_init__(self) -> None:
        transport.by_name(self.transport)  # a usage error naming the transports
        for name in ("cpus", "jobs"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.numa < 0:
            raise UsageError(f"numa must be 0 (no NUMA) or a number of nodes, not {self.numa}")
        if self.numa and vm.mebibytes(self.memory, "memory") < 128 * self.numa:
            raise UsageError(f"--memory {self.memory} is too small for {self.numa} NUMA nodes "
                             "(at least 128M each)")
        if self.hotplug:
            vm.mebibytes(self.hotplug, "hotplug")
        for name in ("boot_timeout", "timeout"):
            if getattr(self, name) <= 0:
                raise UsageError(f"{key(name)} must be a positive number of seconds, "
                                 f"not {getattr(self, name)}")

    def series_dir(self) -> Path | None:
        if self.series == "none":
            return None
        if self.series == "auto":
            if self.tree_carries_series():
                return None
            spec = source.parse_spec(self.tree)
            source.check_exists(spec)  # a tree that is not there is a tree error (241)
            release = source.release(spec)
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
        """Fragments after base.config unless --no-default-kconfig: the feature's, when a
        series is applied or the tree carries it, then the series' own SERIES_FRAGMENT
        (what its tests need on that release, e.g. an option older kernels lack)."""
        if not self.default_kconfig or (self.series == "none" and not self.tree_carries_series()):
            return ()
        own = self._series_fragment()
        return FEATURE_FRAGMENTS + ((str(own),) if own else ())

    def _series_fragment(self) -> Path | None:
        """The applied series' SERIES_FRAGMENT; for a tree that carries the series (no series
        applied: default_fragments has seen that it carries it), that of the project's series
        for the tree's release (patches/v<release>), if any."""
        try:
            series = self.series_dir() or \
                PATCH_DIR / f"v{source.release(source.parse_spec(self.tree))}"
        except (UsageError, TreeError):  # reported where the series is applied
            return None
        own = series / SERIES_FRAGMENT if series else None
        return own if own and own.is_file() else None

    def topology_fragments(self) -> tuple[str, ...]:
        """What a guest of this shape needs in its kernel (see kconfigs/)."""
        return ((NUMA_FRAGMENT,) if self.numa else ()) + ((HOTPLUG_FRAGMENT,) if self.hotplug else ())

    def fragment_paths(self) -> tuple[Path, ...]:
        """base.config, the default fragments, the --kconfig ones, net.config for ssh,
        numa.config and hotplug.config for guests that have them; a fragment named twice is
        merged once, where it first comes."""
        names = [BASE_FRAGMENT, *self.default_fragments(), *self.kconfig,
                 *transport.by_name(self.transport).fragments, *self.topology_fragments()]
        paths: list[Path] = []
        for name in names:
            path = resolve_fragment(name)
            if path not in paths:
                paths.append(path)
        return tuple(paths)


def _known_series() -> str:
    known = sorted(p.parent.name for p in PATCH_DIR.glob("*/series"))
    return ", ".join(known) or "none"


def resolve_fragment(name: str) -> Path:
    """A fragment path, or a name under kconfigs/ (with or without .config)."""
    for candidate in (Path(name).expanduser(), KCONFIG_DIR / name, KCONFIG_DIR / f"{name}.config"):
        if candidate.is_file():
            return candidate.resolve()
    raise UsageError(f"config fragment {name!r} not found (looked for it as a path and in {KCONFIG_DIR})")


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without aliases: an options file or matrix never needs them, and a few
    nested aliases (a "billion laughs") make values that no message may print in full."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed",
                                              event.start_mark)
        return super().compose_node(parent, index)


MAX_CONFIG_BYTES = 1 << 20


def read_yaml(path: Path, what: str) -> Any:
    """Load a YAML file safely (no aliases, at most 1 MiB); unreadable or invalid YAML is a
    usage error naming it."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise UsageError(f"{what} {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
        return yaml.load(path.read_text(), Loader=_NoAliasLoader)
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{what} {path} is not valid YAML", str(exc)) from exc


@functools.cache
def specs() -> Mapping[str, Spec]:
    """Every option's Spec, by field name, in declaration order (read-only: made once)."""
    return MappingProxyType({f.name: f.metadata["spec"] for f in fields(Options)})


def key(name: str) -> str:
    """The YAML and matrix key (and flag without --) of an option."""
    return name.replace("_", "-")


def flag(name: str) -> str:
    return ("--no-" if specs()[name].kind == "bool" else "--") + key(name)


def env_name(name: str) -> str:
    return "PTE_HARNESS_" + name.upper()


def check_value(name: str, value: Any, where: str) -> Any:
    """A YAML value for option ``name``, checked against its Spec (lists become tuples)."""
    spec = specs()[name]
    wanted = {"str": (str,), "int": (int,), "float": (int, float), "list": (list,),
              "bool": (bool,)}[spec.kind]
    if (isinstance(value, bool) and spec.kind != "bool") or not isinstance(value, wanted):
        names = " or ".join(t.__name__ for t in wanted)
        raise UsageError(f"{where}: key {key(name)!r} must be a {names}, "
                         f"not {type(value).__name__} ({_short(value)})")
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise UsageError(f"{where}: key {key(name)!r} must be a list of strings")
        value = tuple(value)
    if spec.choices and value not in spec.choices:
        raise UsageError(f"{where}: key {key(name)!r} must be one of {', '.join(spec.choices)}, "
                         f"not {_short(value)}")
    return float(value) if spec.kind == "float" else value


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 80, 80, 3


def _short(value: Any) -> str:
    """A bounded repr for messages, whatever the size or depth of ``value``."""
    return _REPR.repr(value)


def check_mapping(data: dict, where: str, extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Option values from a YAML mapping (keys as in YAML); ``extra`` keys are left out
    for the caller. Unknown keys and wrong types are errors naming the key."""
    known = {key(name): name for name in specs()}
    values: dict[str, Any] = {}
    for raw, value in data.items():
        text = str(raw)
        if text in extra:
            continue
        name = known.get(text) or known.get(key(text))
        if name is None:
            raise UsageError(f"{where}: unknown key {raw!r}; known keys: "
                             f"{', '.join(sorted([*known, *extra]))}")
        values[name] = check_value(name, value, where)
    return values


def load_yaml(path: Path) -> dict[str, Any]:
    """Read an options file; unknown keys and wrong types are errors naming the key."""
    data = read_yaml(path, "options file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"options file {path}: expected a mapping of option: value")
    return check_mapping(data, f"options file {path}")


def written(options: Options, skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The options an options file of ``options`` holds: all but those skipped and None."""
    return tuple(f.name for f in fields(Options)
                 if getattr(options, f.name) is not None and f.name not in skip)


def to_yaml(options: Options, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The options as an options file holds them (read back by load_yaml)."""
    return {key(name): list(value) if isinstance(value := getattr(options, name), tuple)
            else value for name in written(options, skip)}


def write_yaml(options: Options, path: Path, skip: tuple[str, ...] = ()) -> Path:
    """Serialise the options once, for child processes (``--config PATH``)."""
    path.write_text(yaml.safe_dump(to_yaml(options, skip), sort_keys=False))
    return path


def env_names(name: str) -> tuple[str, ...]:
    """The variables that set option ``name``: PTE_HARNESS_<NAME>, then its old names."""
    return (env_name(name), *(n for n in specs()[name].old_names if not n.startswith("-")))


def without_env(environ: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """``environ`` without the variables of options ``names``: for a child given those
    options in a file (``--config``), whose environment would otherwise override them
    (file, then environment, then command line)."""
    dropped = {variable for name in names for variable in env_names(name)}
    return {k: v for k, v in environ.items() if k not in dropped}


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Option values from PTE_HARNESS_* variables (lists: space-separated; bool: 0 or 1)."""
    values: dict[str, Any] = {}
    for name, spec in specs().items():
        names = env_names(name)
        text = next((environ[n] for n in names if environ.get(n)), None)
        if text is None:
            continue
        where = f"environment variable {names[0]}"
        if spec.kind == "list":
            values[name] = tuple(text.split())
        elif spec.kind == "bool":
            if text.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise UsageError(f"{where}: expected 0 or 1, not {_short(text)}")
            values[name] = text.lower() in ("1", "true", "yes")
        elif spec.kind in ("int", "float"):
            try:
                values[name] = check_value(name, int(text) if spec.kind == "int" else float(text), where)
            except ValueError as exc:
                raise UsageError(f"{where}: expected a number, not {_short(text)}") from exc
        else:
            values[name] = check_value(name, text, where)
    return values


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup | Any,
                  groups: tuple[str, ...] = ("kernel", "guest"), pytest: bool = False,
                  skip: tuple[str, ...] = ()) -> None:
    """One argument per option of ``groups`` (pytest: with its pytest flag and old names).
    Every dest is the field's name and every default None: given values are found by
    ``given()``. ``parser`` may be argparse's or pytest's (same add_argument/addoption)."""
    add = getattr(parser, "addoption", None) or parser.add_argument
    for name, spec in specs().items():
        if spec.group not in groups or name in skip:
            continue
        flags = [spec.pytest_flag or flag(name)] if pytest else [flag(name)]
        if pytest:
            aliases = spec.old_names if spec.pytest_only else (flag(name), *spec.old_names)
            flags += [n for n in aliases if n.startswith("-") and n not in flags]
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": spec.help}
        if spec.kind == "bool":
            kwargs["action"] = "store_false"
        elif spec.kind == "list":
            kwargs.update(action="append", metavar=spec.metavar or "VALUE")
        else:
            kwargs["type"] = {"int": int, "float": float}.get(spec.kind, str)
            if spec.choices:
                kwargs["choices"] = list(spec.choices)
            if spec.metavar:
                kwargs["metavar"] = spec.metavar
        add(*flags, **kwargs)


def given(namespace: Any) -> dict[str, Any]:
    """The option values a parsed command line (or pytest config) holds: those given."""
    getter = getattr(namespace, "getoption", None)
    values: dict[str, Any] = {}
    for name in specs():
        try:
            value = getter(name) if getter else getattr(namespace, name, None)
        except ValueError:  # pytest: an option this config does not have
            value = None
        if value is not None:
            values[name] = tuple(value) if isinstance(value, list) else value
    return values


def merge(yaml_file: Path | None, overrides: dict[str, Any],
          environ: Mapping[str, str] | None = None) -> Options:
    """Defaults, then the YAML file, then PTE_HARNESS_* variables, then the command line
    (values that were given, not None). Without a tree from any of them, a kernel tree in
    the current directory is the tree."""
    values: dict[str, Any] = load_yaml(yaml_file) if yaml_file else {}
    values.update(from_env(os.environ if environ is None else environ))
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "tree" not in values and source.is_kernel_tree(Path.cwd()):
        values["tree"] = str(Path.cwd())  # typed in a kernel tree: test that tree
    return replace(Options(), **values)
