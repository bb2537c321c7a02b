"""The pte-harness command line: doctor, build, exec, shell, run, mutate, bisect, nightly,
bench."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from harness.kernel import build
from harness import doctor, options, pipeline, progress
from harness.guest import transport, vm
from harness.guest.session import vm_config
from harness.progress import say
from harness.errors import EXIT_STATUSES, HarnessError, UsageError
from harness.options import Options


def add_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Every build and boot option (declared once, in options.Options) and --config."""
    kernel = parser.add_argument_group("kernel")
    kernel.add_argument("--config", type=Path, metavar="FILE",
                        help="YAML file with options (keys as the flags without --)")
    options.add_arguments(kernel, ("kernel",), skip=skip)
    options.add_arguments(parser.add_argument_group("guest"), ("guest",), skip=skip)


def add_guest_command_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("this command")
    group.add_argument("--print-qemu", action="store_true", help="print the QEMU command line")
    group.add_argument("--run-dir", type=Path, help="where console and QEMU logs go")
    group.add_argument("--program", action="append", type=Path, default=[], metavar="PATH",
                       help="host program to copy into the guest with its libraries (repeatable)")


def options_from(args: argparse.Namespace) -> Options:
    return options.merge(getattr(args, "config", None), options.given(args))


def cmd_build(args: argparse.Namespace) -> int:
    result = build.build(pipeline.build_request(options_from(args)))
    say(f"{'reused' if result.reused else 'built'} {result.version} in {result.seconds:.1f}s "
        f"(key {result.key[:12]}, log {result.log})")
    print(result.image)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("exec needs a command: pte-harness exec [options] -- CMD...")
    options = options_from(args)
    run_dir = args.run_dir or pipeline.new_run_dir()
    with pipeline.claimed(run_dir):
        prepared = pipeline.prepare(options, tuple(args.program))
        try:
            with pipeline.boot(prepared, options, run_dir) as session:
                if args.print_qemu:
                    say(f"QEMU command line: {session.config.shell_command()}")
                sys.stdout.flush()
                result = session.run(shlex.join(command), timeout=options.timeout,
                                     sink=write_through)
                session.check()
        except HarnessError as exc:
            exc.detail = f"{exc.detail.rstrip()}\nlogs of this run: {run_dir}".lstrip()
            raise
    return result.status


def write_through(piece: bytes) -> None:
    """The guest command's output, byte for byte, on stdout as it arrives."""
    sys.stdout.buffer.write(piece)
    sys.stdout.buffer.flush()


def cmd_shell(args: argparse.Namespace) -> int:
    options = options_from(args)
    run_dir = args.run_dir or pipeline.new_run_dir()
    with pipeline.claimed(run_dir):
        prepared = pipeline.prepare(options, tuple(args.program))
        boot = pipeline.boot_options(options)
        verdict = vm.choose_accel(boot.accel, prepared.build.image, prepared.initrd)
        config = vm_config(prepared.build.image, prepared.initrd, run_dir, boot, verdict.accel,
                           vm.BARE)  # the machine; the transport's shell wires it
        return transport.by_name(options.transport).shell(
            config, lambda: pipeline.boot(prepared, options, run_dir), prepared.host_key,
            args.print_qemu)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.suite import run
    return run.main(options_from(args), args.results, args.keyword, args.bisect_exit,
                    args.exitfirst, args.kcidb_origin, args.kcidb_cell)


def cmd_mutate(args: argparse.Namespace) -> int:
    from harness.suite import mutate
    return mutate.main(options_from(args), args.names, args.results, args.keyword)


def cmd_bisect(args: argparse.Namespace) -> int:
    from harness.suite import bisect
    chosen = options_from(args)  # every step is run with --tree set to bisect's worktree
    return bisect.main(args.repo, args.good, args.bad, chosen, args.keyword, args.results,
                       args.retries)


def cmd_nightly(args: argparse.Namespace) -> int:
    if args.merge:
        if args.shard:
            raise UsageError("--merge takes the shards' results, not --shard")
        from harness.nightly import merge
        return merge.main(args.matrix, args.merge, args.results, args.compare, args.tolerance,
                          args.kcidb_origin)
    from harness.nightly import runner
    return runner.main(args.matrix, args.results, args.shard, args.compare, args.tolerance,
                       args.kcidb_origin)


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.nightly import runner
    return runner.compare_main(args.current, args.previous, args.tolerance)


def cmd_doctor(args: argparse.Namespace) -> int:
    return doctor.main()


def cmd_bench(args: argparse.Namespace) -> int:
    from harness import bench
    return bench.main(options_from(args), rounds=args.rounds, cold=not args.no_cold,
                      ssh=not args.no_ssh, shapes=not args.no_shapes, cost=not args.no_cost)


def add_kcidb_origin(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                     default: str = "") -> None:
    parser.add_argument("--kcidb-origin", metavar="ORIGIN",
                        help=f"the CI system kcidb.json names (default pte_harness{default})")


def add_verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1,
                        default=default, help="warnings and errors only (no progress)")
    parser.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1,
                        default=default, help="debug messages too")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="pte-harness", description="Build, boot and test kernels with the __GFP_PTE_MAPPED series.",
        epilog="exit statuses: 0 ok; " + ", ".join(f"{v} {k}" for k, v in EXIT_STATUSES.items())
        + "; exec: otherwise the guest command's own status")
    add_verbosity(top, 0)
    sub = top.add_subparsers(dest="subcommand", required=True)
    sub.add_parser("doctor", help="check prerequisites and the KVM verdict").set_defaults(func=cmd_doctor)
    p = sub.add_parser("build", help="build (or reuse) the kernel; prints the bzImage path last")
    add_options(p)  # guest options too: --transport ssh builds the kernel with net.config
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("exec", help="boot the guest and run a command in it")
    add_options(p)
    add_guest_command_options(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p.set_defaults(func=cmd_exec)
    p = sub.add_parser("shell", help="an interactive shell in the guest")
    add_options(p)
    add_guest_command_options(p)
    p.set_defaults(func=cmd_shell)
    p = sub.add_parser("run", help="run the kernel test suite (pytest) and summarise the figures")
    add_options(p)
    group = p.add_argument_group("suite")
    group.add_argument("-k", dest="keyword", metavar="EXPR", help="select tests (pytest -k)")
    group.add_argument("--results", type=Path, help="results directory (default results/<time>)")
    group.add_argument("--bisect-exit", action="store_true",
                       help="exit for git bisect run: 0 pass, 1 test failed, 125 could not "
                            "judge (patch/config/build/boot), 200 misuse")
    group.add_argument("-x", "--exitfirst", action="store_true",
                       help="stop at the first failing test (pytest -x)")
    add_kcidb_origin(group)
    group.add_argument("--kcidb-cell", default="", metavar="NAME",
                       help="a name the KCIDB test ids are scoped by (nightly: the cell's)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("mutate", help="run the suite on each mutant in tests/mutants/: "
                                      "KILLED or SURVIVED")
    add_options(p)
    p.add_argument("names", nargs="*", metavar="NAME", help="mutants to run (default: all)")
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="tests to run on each mutant")
    p.add_argument("--results", type=Path, help="results directory (default results/<time>)")
    p.set_defaults(func=cmd_mutate)
    p = sub.add_parser("bisect", help="git bisect a kernel repository with the kernel suite")
    p.add_argument("--tree", dest="repo", required=True, metavar="git:PATH",
                   help="git:PATH of the kernel repository")
    p.add_argument("--good", required=True, help="a good revision")
    p.add_argument("--bad", required=True, help="a bad revision")
    add_options(p, skip=("tree",))  # for every step (series auto: none where the tree carries it)
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="tests that judge a step")
    p.add_argument("--retries", type=int, default=1, help="re-runs of a failing step (default 1)")
    p.add_argument("--results", type=Path, help="results directory (default results/bisect-<time>)")
    p.set_defaults(func=cmd_bisect)
    p = sub.add_parser("nightly", help="run the cells of a matrix file; combined summary and report",
                       description="Run every cell (tree x series x fragments x tests) of a "
                                   "matrix YAML file with 'pte-harness run'. Exit: 0 all passed, "
                                   "1 a test failed (the kernel is wrong), 2 a cell could not tell "
                                   "(patch, build, boot, timeout), 3 all passed but figures moved "
                                   "(--compare), 130 interrupted.")
    p.add_argument("matrix", type=Path, help="matrix YAML file (see matrices/)")
    p.add_argument("--shard", metavar="I/N", help="run every N-th cell starting at the I-th (1-based)")
    p.add_argument("--results", type=Path, help="results directory (default results/nightly-<time>)")
    p.add_argument("--compare", type=Path, metavar="SUMMARY",
                   help="a previous nightly summary.json: flag figures that moved beyond the tolerance")
    p.add_argument("--tolerance", type=float, help="relative tolerance for --compare (default: "
                                                   "the matrix's compare.tolerance, else 0.2)")
    p.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                   help="run nothing: merge the results directories of the matrix's shards "
                        "(each cell exactly once) into --results")
    add_kcidb_origin(p, "; --merge: the shards' own")
    p.set_defaults(func=cmd_nightly)
    p = sub.add_parser("compare", help="figures that moved between two nightly summaries "
                                       "(exit 3 when any did)")
    p.add_argument("current", type=Path, help="summary.json (or its results directory)")
    p.add_argument("previous", type=Path, help="the earlier summary.json (or directory)")
    p.add_argument("--tolerance", type=float, help="relative tolerance (default: the current "
                                                   "run's matrix compare.tolerance, else 0.2)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("bench", help="cold/cached/incremental build and boot-to-first-command times")
    add_options(p, skip=("transport",))  # it measures serial, then ssh (unless --no-ssh)
    p.add_argument("--rounds", type=int, default=5, help="boots per measurement (default 5)")
    p.add_argument("--no-cold", action="store_true",
                   help="skip the build figures (a cold and an incremental build, 3-4 minutes)")
    p.add_argument("--no-ssh", action="store_true",
                   help="skip boot-to-first-command over ssh (its kernel is another build)")
    p.add_argument("--no-shapes", action="store_true",
                   help="skip the boots of 2 CPUs and of a NUMA and hotplug guest (another kernel)")
    p.add_argument("--no-cost", action="store_true",
                   help="skip the cost of a flagged allocation against a plain one (the test "
                        "driver's bench, on 1 and 2 CPUs)")
    p.set_defaults(func=cmd_bench)
    for choice in sub.choices.values():
        add_verbosity(choice, argparse.SUPPRESS)  # after the subcommand too; not reset there
    return top


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (a CI job's timeout, kill) unwinds like Ctrl-C: sessions stop their QEMU,
    pytest writes its results, nightly kills its cells."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    progress.set_verbosity(args.verbosity)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.func(args)
    except HarnessError as exc:
        print(f"pte-harness: {exc.kind} error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("pte-harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
