"""Every option reaches the build and the boot through every surface.

Parametrized over the declaration in options.Options: a new option without a path through
the command line of each command, the environment, an options file, a matrix cell (and the
child command line a cell becomes), bisect's steps or the pytest plugin fails here.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from harness.suite import bisect, run
from harness import cli, options, pipeline
from harness.nightly import matrix
from harness.kernel import source
from harness.kernel.build import BuildRequest
from harness.options import Options
from harness.guest.session import BootOptions


def names(request: BuildRequest) -> list[str]:
    return [p.name for p in request.fragments]


# option -> (a value other than the default, as YAML holds it; what must then hold)
EXAMPLES: dict[str, tuple[Any, Callable[[BuildRequest, BootOptions], bool]]] = {
    "tree": ("debian:6.1", lambda r, b: r.tree == source.parse_spec("debian:6.1")
             and r.series == options.PATCH_DIR / "v6.1"),
    "series": ("none", lambda r, b: r.series is None),
    "base": ("defconfig", lambda r, b: r.base == "defconfig"),
    "kconfig": (["net.config"], lambda r, b: names(r)[-1] == "net.config"),
    "default_kconfig": (False, lambda r, b: names(r) == ["base.config"]),
    "jobs": (3, lambda r, b: r.jobs == 3),
    "build_dir": ("/tmp/pte-objdir", lambda r, b: r.build_dir == Path("/tmp/pte-objdir")),
    "accel": ("tcg", lambda r, b: b.accel == "tcg"),
    "memory": ("2G", lambda r, b: b.memory == "2G"),
    "cpus": (2, lambda r, b: b.cpus == 2),
    "numa": (2, lambda r, b: b.numa == 2 and names(r)[-1] == "numa.config"),
    "hotplug": ("1G", lambda r, b: b.hotplug == "1G" and names(r)[-1] == "hotplug.config"),
    "cpu": ("qemu64", lambda r, b: b.cpu == "qemu64"),
    "append": ("loglevel=8", lambda r, b: b.append == "loglevel=8"),
    "boot_timeout": (17.5, lambda r, b: b.boot_timeout == 17.5),
    "timeout": (33.0, lambda r, b: b.timeout == 33.0),
    "transport": ("ssh", lambda r, b: b.transport == "ssh" and names(r)[-1] == "net.config"),
}
OPTIONS = [f.name for f in fields(Options)]


def test_every_option_has_an_example():
    assert sorted(EXAMPLES) == sorted(OPTIONS), "add the new option to EXAMPLES"


def reaches(chosen: Options, name: str) -> None:
    """The option's value is in what the build and the boot get, and the defaults were not
    already giving it."""
    value, holds = EXAMPLES[name]
    assert holds(pipeline.build_request(chosen), pipeline.boot_options(chosen)), (name, chosen)
    default = Options()
    assert not holds(pipeline.build_request(default), pipeline.boot_options(default)), name


def argv(name: str) -> list[str]:
    value = EXAMPLES[name][0]
    flag = options.flag(name)
    if isinstance(value, bool):
        return [flag]
    if isinstance(value, list):
        return [part for item in value for part in (flag, item)]
    return [flag, str(value)]


@pytest.fixture(autouse=True)
def no_environment(monkeypatch, tmp_path):
    for name in OPTIONS:
        monkeypatch.delenv(options.env_name(name), raising=False)
    monkeypatch.delenv("PTE_HARNESS_GUEST_MEM", raising=False)
    monkeypatch.chdir(tmp_path)  # not a kernel tree


class Handed(Exception):
    """Raised by the stand-ins below: the command got as far as handing its options on."""


def capture(monkeypatch) -> dict[str, Options]:
    seen: dict[str, Options] = {}

    def grab(chosen, *args, **kwargs):
        seen["options"] = chosen
        raise Handed

    def grab_request(request):
        seen["request"] = request
        raise Handed

    monkeypatch.setattr(pipeline, "prepare", grab)
    monkeypatch.setattr(cli.build, "build", grab_request)
    monkeypatch.setattr(bisect, "main", lambda tree, good, bad, chosen, *rest: grab(chosen))

    def fake_pytest_main(args, plugins=()):
        seen["options"] = plugins[0].options
        return 0

    monkeypatch.setattr(run.pytest, "main", fake_pytest_main)
    return seen


COMMANDS = {
    "exec": ["--", "true"], "shell": [], "run": [], "bench": ["--no-cold"],
    "bisect": ["--tree", "git:/k", "--good", "a", "--bad", "b"],
}


# Pairs that do not apply: bisect's --tree is the repository to bisect (each step's tree is
# its worktree); bench measures both transports (serial, then ssh unless --no-ssh).
NOT_APPLICABLE = {("bisect", "tree"), ("bench", "transport")}


@pytest.mark.parametrize("command, name", [(c, n) for c in sorted(COMMANDS) for n in OPTIONS
                                           if (c, n) not in NOT_APPLICABLE])
def test_command_line_of_each_command(command, name, monkeypatch, tmp_path):
    seen = capture(monkeypatch)
    extra = ["--results", str(tmp_path / "r")] if command == "run" else []
    try:
        cli.main([command, *argv(name), *extra, *COMMANDS[command]])
    except Handed:
        pass
    reaches(seen["options"], name)
    if command == "bisect":  # and what every step's `pte-harness run` reads back
        step = bisect.step_arguments(seen["options"], None, tmp_path)
        reaches(cli.options_from(cli.parser().parse_args(["run", *step])), name)


@pytest.mark.parametrize("name", [n for n in OPTIONS  # guest options but transport do
                                  if options.specs()[n].group == "kernel" or n == "transport"])
def test_build_command_builds_with_kernel_options(name, monkeypatch):  # not change the kernel
    seen = capture(monkeypatch)
    with pytest.raises(Handed):
        cli.main(["build", *argv(name)])
    value, holds = EXAMPLES[name]
    assert holds(seen["request"], pipeline.boot_options(Options())) or name == "transport"
    if name == "transport":
        assert names(seen["request"])[-1] == "net.config"


@pytest.mark.parametrize("name", OPTIONS)
def test_environment(name):
    value = EXAMPLES[name][0]
    text = " ".join(value) if isinstance(value, list) else ("0" if value is False else str(value))
    reaches(options.merge(None, {}, environ={options.env_name(name): text}), name)


@pytest.mark.parametrize("name", OPTIONS)
def test_options_file(name, tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text(yaml.safe_dump({options.key(name): EXAMPLES[name][0]}))
    reaches(options.merge(path, {}), name)


@pytest.mark.parametrize("name", OPTIONS)
def test_matrix_cell_and_its_command_line(name, tmp_path):
    cell_values = {"name": "c", "tree": "debian:6.12", options.key(name): EXAMPLES[name][0]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"cells": [cell_values]}))
    cell = matrix.load(path).cells[0]
    reaches(cell.options, name)
    args = cell.run_args(tmp_path)  # what the cell's `pte-harness run` gets
    reaches(cli.options_from(cli.parser().parse_args(["run", *args])), name)


@pytest.mark.parametrize("name", OPTIONS)
def test_pytest_option(name, pytester, tmp_path):
    out = tmp_path / "seen.json"
    pytester.makepyfile(test_seen=f"""
        import json
        from harness import options

        def test_seen(harness_options):
            with open({str(out)!r}, "w") as f:
                json.dump(options.to_yaml(harness_options), f)
    """)
    spec = options.specs()[name]
    flags = argv(name)
    if spec.pytest_flag:
        flags = [spec.pytest_flag if part == options.flag(name) else part for part in flags]
    pytester.runpytest_inprocess(*flags).assert_outcomes(passed=1)
    saved = {k: v for k, v in json.loads(out.read_text()).items()}
    reaches(options.merge(None, options.check_mapping(saved, "seen")), name)
