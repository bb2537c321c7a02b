"""Every option reaches the build and the boot through every surface.

Parametrized over the declaration in options.Options and over the commands of the CLI
parser: a new option (or command) without a path through the command line of each command,
the environment, an options file, a matrix cell (and the child command line a cell
becomes), bisect's steps or the pytest plugin fails here. What must hold is checked where it
ends: the build request, and the QEMU command line vm.py builds for the boot (QEMU is not
started), the transport's boot timeout and a guest command's timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from harness.suite import bisect, mutate, run
from harness import cli, options, pipeline
from harness.nightly import matrix
from harness.kernel import build, source
from harness.kernel.build import BuildRequest
from harness.guest import transport, vm
from harness.options import Options


@dataclass(frozen=True)
class Reached:
    """What the build and one boot of some options got."""

    request: BuildRequest
    qemu: list[str]  # the QEMU command line vm.py built
    transport: str  # whose connect was called
    boot_timeout: float  # what that connect waited
    command_timeout: float  # what a guest command got

    def arg(self, flag: str) -> str:
        return self.qemu[self.qemu.index(flag) + 1]

    @property
    def fragments(self) -> list[str]:
        return [p.name for p in self.request.fragments]


# option -> (a value other than the default, as YAML holds it; what must then hold)
EXAMPLES: dict[str, tuple[Any, Callable[[Reached], bool]]] = {
    "tree": ("debian:6.1", lambda r: r.request.tree == source.parse_spec("debian:6.1")
             and r.request.series == options.PATCH_DIR / "v6.1"),
    "series": ("v6.1", lambda r: r.request.series == options.PATCH_DIR / "v6.1"
               and r.request.tree == source.parse_spec("debian:6.12")),
    "base": ("defconfig", lambda r: r.request.base == "defconfig"),
    "kconfig": (["net.config"], lambda r: r.fragments[-1] == "net.config"),
    "default_kconfig": (False, lambda r: r.fragments == ["base.config"]),
    "jobs": (3, lambda r: r.request.jobs == 3),
    "build_dir": ("/tmp/pte-objdir", lambda r: r.request.build_dir == Path("/tmp/pte-objdir")),
    "accel": ("kvm", lambda r: r.arg("-accel") == "kvm"),
    "memory": ("2G", lambda r: r.arg("-m") == "2G"),
    "cpus": (2, lambda r: r.arg("-smp") == "2"),
    "numa": (2, lambda r: r.qemu.count("-numa") == 2 and r.fragments[-1] == "numa.config"),
    "hotplug": ("1G", lambda r: r.arg("-m") == "1G,slots=4,maxmem=2048M"
                and r.fragments[-1] == "hotplug.config"),
    "cpu": ("qemu64", lambda r: r.arg("-cpu") == "qemu64"),
    "append": ("loglevel=8", lambda r: r.arg("-append").endswith(" loglevel=8")),
    "boot_timeout": (17.5, lambda r: r.boot_timeout == 17.5),
    "timeout": (33.0, lambda r: r.command_timeout == 33.0),
    "transport": ("ssh", lambda r: r.transport == "ssh" and r.fragments[-1] == "net.config"
                  and "virtio-net-pci,netdev=n0,romfile=" in r.qemu
                  and "pte_harness.ssh" in r.arg("-append").split()),
}
OPTIONS = [f.name for f in fields(Options)]


def test_every_option_has_an_example():
    assert sorted(EXAMPLES) == sorted(OPTIONS), "add the new option to EXAMPLES"


def with_example(name: str) -> Options:
    return replace(Options(), **{name: options.check_value(name, EXAMPLES[name][0], "example")})


class Channel:
    """A connected guest that answers every command at once, keeping its timeout."""

    def __init__(self, name: str, boot_timeout: float) -> None:
        self.name, self.boot_timeout, self.timeouts = name, boot_timeout, []

    def run(self, command: str, timeout: float, *rest: Any) -> Any:
        self.timeouts.append(timeout)
        return types.SimpleNamespace(status=0, output="", seconds=0.0)

    def close(self) -> None:
        pass


@pytest.fixture
def boot_through(monkeypatch, tmp_path) -> Callable[[Options], Reached]:
    """Build request and boot of some options through pipeline.boot and a real Session; vm.start
    keeps the command line vm.py builds instead of starting QEMU, the transport's connect
    hands back a Channel, the accelerator asked for is the one used."""
    commands: list[list[str]] = []

    def start(config: vm.VmConfig, connect_timeout: float = 10.0) -> vm.Qemu:
        bound = replace(config, wiring=config.wiring.bind())
        commands.append(bound.command())
        return vm.Qemu(bound, types.SimpleNamespace(poll=lambda: 0), None)  # type: ignore[arg-type]

    def connect(self, qemu, plan, host_key, timeout, context, log):
        return Channel(self.name, timeout)

    monkeypatch.setattr(vm, "start", start)
    monkeypatch.setattr(vm, "choose_accel", lambda accel, *a, **k: vm.AccelVerdict(accel, "asked"))
    for implementation in {type(t) for t in transport.TRANSPORTS.values()}:
        monkeypatch.setattr(implementation, "connect", connect)

    def through(chosen: Options) -> Reached:
        fake_build = types.SimpleNamespace(image=tmp_path / "bzImage")
        prepared = pipeline.Prepared(fake_build, tmp_path / "initrd")  # type: ignore[arg-type]
        run_dir = tmp_path / f"run{len(commands)}"
        run_dir.mkdir()
        with pipeline.boot(prepared, chosen, run_dir) as session:
            session.run("true")
            channel = session.guest
        assert isinstance(channel, Channel)
        return Reached(pipeline.build_request(chosen), commands[-1], channel.name,
                       channel.boot_timeout, channel.timeouts[-1])

    return through


DEFAULTS: list[Reached] = []  # what the defaults reach: the same in every test, made once


@pytest.fixture
def reaches(boot_through) -> Callable[[Options, str], None]:
    if not DEFAULTS:
        DEFAULTS.append(boot_through(Options()))

    def check(chosen: Options, name: str) -> None:
        """The option's value is in what the build and the boot get, and the defaults were
        not already giving it."""
        holds = EXAMPLES[name][1]
        assert holds(boot_through(chosen)), (name, chosen)
        assert not holds(DEFAULTS[0]), name
    return check


def argv(name: str, flag: str | None = None) -> list[str]:
    value = EXAMPLES[name][0]
    flag = flag or options.flag(name)
    if isinstance(value, bool):
        return [flag]
    if isinstance(value, list):
        return [part for item in value for part in (flag, item)]
    return [flag, str(value)]


@pytest.fixture(autouse=True)
def no_environment(monkeypatch, tmp_path):
    for name in OPTIONS:
        for variable in options.env_names(name):
            monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)  # not a kernel tree


PARSER = cli.parser()


class Handed(Exception):
    """Raised by the stand-ins below: the command got as far as handing its options on."""


SUITE = '''
import json
from harness import options

def test_seen(harness_options):
    with open({out!r}, "w") as f:
        json.dump(options.to_yaml(harness_options), f)
'''


def capture(monkeypatch) -> dict[str, Any]:
    """Stand-ins where each command hands its options on (``run``: the HandOff it gives
    pytest.main; the plugin's pickup of it is test_run_hands_its_options_to_the_plugin's)."""
    seen: dict[str, Any] = {}

    def grab(chosen, *args, **kwargs):
        seen["options"] = chosen
        raise Handed

    def grab_request(request):
        seen["request"] = request
        raise Handed

    def pytest_main(args, plugins=()):
        seen["options"] = next(p.options for p in plugins if isinstance(p, run.HandOff))
        return 0

    monkeypatch.setattr(pipeline, "prepare", grab)
    monkeypatch.setattr(build, "build", grab_request)
    monkeypatch.setattr(bisect, "main", lambda tree, good, bad, chosen, *rest: grab(chosen))
    monkeypatch.setattr(mutate, "run_one", lambda mutant, chosen, *rest: grab(chosen))
    monkeypatch.setattr(run.pytest, "main", pytest_main)
    monkeypatch.setattr(cli, "parser", lambda: PARSER)  # built once (parse_args leaves it as is)
    return seen


def test_run_hands_its_options_to_the_plugin(monkeypatch, tmp_path):
    """`pte-harness run` with every option set: a real pytest.main, in process, whose
    suite's harness_options fixture gets exactly the run's Options (the plugin picks up
    the HandOff, not the command line or the environment)."""
    suite, out = tmp_path / "suite", tmp_path / "seen.json"
    suite.mkdir()
    (suite / "test_seen.py").write_text(SUITE.format(out=str(out)))
    monkeypatch.setattr(run, "SUITE", suite)
    monkeypatch.setenv(options.env_name("cpu"), "Nehalem")  # the handed options win
    # its temporary directories under ours: its own numbered one would push out older
    # sessions' (pytest keeps the newest three)
    monkeypatch.setenv("PYTEST_ADDOPTS", f"--basetemp={tmp_path / 'inner'}")
    flags = [part for name in OPTIONS for part in argv(name)]
    expected = cli.options_from(PARSER.parse_args(["run", *flags]))
    try:
        assert cli.main(["run", *flags, "--results", str(tmp_path / "r")]) == 0
    finally:
        sys.modules.pop("test_seen", None)
    picked = replace(Options(), **options.check_mapping(json.loads(out.read_text()), "seen"))
    assert picked == expected and picked.cpu == "qemu64"
    assert all(getattr(picked, name) != getattr(Options(), name) for name in OPTIONS)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """The CLI's commands that take build or boot options, from its parser."""
    choices = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {name: p for name, p in choices.items()
            if any(action.dest in OPTIONS for action in p._actions)}


def offered(command: str) -> list[str]:
    dests = {action.dest for action in subcommands()[command]._actions}
    return [name for name in OPTIONS if name in dests]


EXTRA_ARGS = {  # what a command needs besides options to get going
    "exec": ["--", "true"], "bench": ["--no-cold"],
    "bisect": ["--tree", "git:/k", "--good", "a", "--bad", "b"],
}
RESULTS = ("run", "mutate")  # commands that write a results directory
BUILD_ONLY = ("build",)


def test_commands_offer_every_option_but_those_that_do_not_apply():
    """bisect's --tree is the repository to bisect (each step's tree is its worktree);
    bench measures both transports (serial, then ssh unless --no-ssh)."""
    missing = {(c, n) for c in subcommands() for n in OPTIONS if n not in offered(c)}
    assert missing == {("bisect", "tree"), ("bench", "transport")}
    assert {"build", "exec", "shell", "run", "mutate", "bisect", "bench"} <= set(subcommands())


@pytest.mark.parametrize("command, name", [(c, n) for c in sorted(subcommands()) for n in offered(c)
                                           if c not in BUILD_ONLY])
def test_command_line_of_each_command(command, name, monkeypatch, tmp_path, reaches):
    seen = capture(monkeypatch)
    extra = ["--results", str(tmp_path / "r")] if command in RESULTS else []
    try:
        cli.main([command, *argv(name), *extra, *EXTRA_ARGS.get(command, [])])
    except Handed:
        pass
    reaches(seen["options"], name)
    if command == "bisect":  # and what every step's `pte-harness run` reads back
        step = bisect.step_arguments(seen["options"], None, tmp_path)
        reaches(cli.options_from(PARSER.parse_args(["run", *step])), name)


@pytest.mark.parametrize("name", offered("build"))
def test_build_command_builds_what_the_options_say(name, monkeypatch, tmp_path):
    """Kernel options, and guest options that need something of the kernel (transport,
    numa, hotplug), change the build; the others leave it as it is."""
    seen = capture(monkeypatch)
    with pytest.raises(Handed):
        cli.main(["build", *argv(name)])
    assert seen["request"] == pipeline.build_request(with_example(name))
    if options.specs()[name].group == "kernel" or name in ("transport", "numa", "hotplug"):
        assert seen["request"] != pipeline.build_request(Options())


@pytest.mark.parametrize("name", OPTIONS)
def test_environment(name, reaches):
    value = EXAMPLES[name][0]
    text = " ".join(value) if isinstance(value, list) else ("0" if value is False else str(value))
    reaches(options.merge(None, {}, environ={options.env_name(name): text}), name)


@pytest.mark.parametrize("name", OPTIONS)
def test_options_file(name, tmp_path, reaches):
    path = tmp_path / "o.yaml"
    path.write_text(yaml.safe_dump({options.key(name): EXAMPLES[name][0]}))
    reaches(options.merge(path, {}), name)


@pytest.mark.parametrize("name", OPTIONS)
def test_matrix_cell_and_its_command_line(name, tmp_path, reaches):
    cell_values = {"name": "c", "tree": "debian:6.12", options.key(name): EXAMPLES[name][0]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"cells": [cell_values]}))
    cell = matrix.load(path).cells[0]
    reaches(cell.options, name)
    args = cell.run_args(tmp_path)  # what the cell's `pte-harness run` gets
    reaches(cli.options_from(PARSER.parse_args(["run", *args])), name)


@pytest.mark.parametrize("name", OPTIONS)
def test_pytest_option(name, pytester, tmp_path, reaches):
    out = tmp_path / "seen.json"
    pytester.makepyfile(test_seen=SUITE.format(out=str(out)))
    spec = options.specs()[name]
    pytester.runpytest_inprocess(*argv(name, spec.pytest_flag or None)).assert_outcomes(passed=1)
    saved = {k: v for k, v in json.loads(out.read_text()).items()}
    reaches(options.merge(None, options.check_mapping(saved, "seen")), name)
