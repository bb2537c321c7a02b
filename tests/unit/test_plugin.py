"""The pytest plugin's own logic, without a kernel: options, broken builds, the summary."""

import pytest

from harness.errors import UsageError
from harness.options import Options
from harness.suite import plugin, run
from harness.suite.summary import SCHEMA_FILE, Outcome, Summary, TestResult
from tests import summaries


def test_broken_build_errors_every_test_with_its_cause(pytester, cache, tmp_path):
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.mark.kernel
        def test_a(guest):
            pass

        @pytest.mark.kernel
        def test_b(kernel):
            pass

        def test_c():
            pass
    """)
    result = pytester.runpytest_inprocess(
        "--strict-markers", f"--kernel-tree={tmp_path / 'missing'}", "--series=none",
        f"--results={tmp_path / 'results'}")
    result.assert_outcomes(passed=1, errors=2)
    text = result.stdout.str()
    assert text.count("kernel could not be prepared (tree error, exit 241)") >= 2
    assert "does not exist" in text


def test_environment_fallbacks(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("PTE_HARNESS_TREE", "/src/linux")
    monkeypatch.setenv("PTE_HARNESS_GUEST_MEM", "2G")
    monkeypatch.setenv("PTE_HARNESS_KCONFIG", "debug.config")
    pytester.makepyfile(test_y="""
        def test_opts(harness_options):
            assert harness_options.tree == "/src/linux"
            assert harness_options.memory == "2G"
            assert harness_options.kconfig == ("debug.config",)  # after the default ones
            assert [p.name for p in harness_options.fragment_paths()] == [
                "base.config", "pte-mapped.config", "debug.config"]  # merged once
            assert harness_options.accel == "tcg"
    """)
    pytester.runpytest_inprocess("--accel=tcg").assert_outcomes(passed=1)


def test_transport_option_and_fallback(pytester, monkeypatch):
    pytester.makepyfile(test_t="""
        def test_opts(harness_options):
            assert harness_options.transport == "ssh"
            assert harness_options.fragment_paths()[-1].name == "net.config"
    """)
    monkeypatch.setenv("PTE_HARNESS_TRANSPORT", "ssh")
    pytester.runpytest_inprocess().assert_outcomes(passed=1)
    monkeypatch.setenv("PTE_HARNESS_TRANSPORT", "serial")
    pytester.runpytest_inprocess("--transport=ssh").assert_outcomes(passed=1)


def test_run_hands_its_options_to_pytest_in_process(tmp_path, monkeypatch):
    """`pte-harness run` passes its Options object, not command-line text; command.txt
    reproduces the run with the options file it writes."""
    from harness import options
    seen = {}

    def fake_main(args, plugins=()):
        seen.update(args=args, plugins=plugins)
        return 0

    monkeypatch.setattr(run.pytest, "main", fake_main)
    chosen = options.Options(transport="ssh", base="defconfig", jobs=3, append="quiet")
    assert run.main(chosen, tmp_path / "r", "shrinker") == 0
    assert [p.options for p in seen["plugins"]] == [chosen]
    assert not any(a.startswith(("--transport", "--base", "--jobs")) for a in seen["args"])
    command = (tmp_path / "r" / "command.txt").read_text()
    assert f"--pte-config={tmp_path / 'r' / 'options.yaml'}" in command
    saved = options.load_yaml(tmp_path / "r" / "options.yaml")
    assert options.replace(options.Options(), **saved) == chosen


def test_markers_registered(pytester):
    pytester.makepyfile(test_z="""
        import pytest

        @pytest.mark.negative
        @pytest.mark.kernel
        def test_m():
            pass
    """)
    pytester.runpytest_inprocess("--strict-markers").assert_outcomes(passed=1)


def test_guest_marker_shapes_the_options():
    class Node:
        nodeid = "t.py::test_x"

        def __init__(self, **kwargs):
            self.marker = pytest.mark.guest(**kwargs).mark if kwargs else None

        def get_closest_marker(self, name):
            return self.marker

    session = Options(kconfig=("net.config",))
    assert plugin.guest_options(Node(), session) is session
    shaped = plugin.guest_options(Node(cpus=2, numa=2, hotplug="1G", kconfig="debug"), session)
    assert (shaped.cpus, shaped.numa, shaped.hotplug) == (2, 2, "1G")
    assert shaped.kconfig == ("net.config", "debug")
    assert [p.name for p in shaped.fragment_paths()][-2:] == ["numa.config", "hotplug.config"]
    with pytest.raises(UsageError, match="takes keywords .*got \\['nodes'\\]"):
        plugin.guest_options(Node(nodes=2), session)


def test_format_summary():
    text = run.format_summary(Summary(
        kernel={"version": "6.12.117", "tree": "debian:6.12", "series": "v6.12"},
        tests={"tests/kernel/t.py::test_a": TestResult(Outcome.PASSED, 1.5, figures={"splits": 5}),
               "tests/kernel/t.py::test_b": TestResult(Outcome.FAILED, 2.0,
                                                       message="AssertionError: 9 > 5")}))
    assert "PASSED  test_a  (1.5s)" in text and "splits = 5" in text
    assert "FAILED  test_b" in text and "-> AssertionError: 9 > 5" in text
    assert text.endswith("1 failed, 1 passed")
    assert "transport serial" in text.splitlines()[0]


@pytest.mark.parametrize("status, tests, kernel, verdict", [
    (0, {"a": {"outcome": "passed"}}, True, 0),
    (1, {"a": {"outcome": "passed"}, "b": {"outcome": "failed"}}, True, 1),
    (1, {"a": {"outcome": "error", "message": "kernel could not be prepared (patch error"}}, False, 125),
    (1, {"a": {"outcome": "error", "message": "BootError: guest went away"}}, True, 125),
    (1, {"a": {"outcome": "crashed", "message": "KernelCrash: kernel crashed while booting"}}, True, 1),
    (1, {"a": {"outcome": "error", "message": "kernel crashed, says the message"}}, True, 125),
    (5, {}, False, 200),
    (4, {}, False, 200),
])
def test_bisect_status(status, tests, kernel, verdict):
    summary = Summary(kernel={"version": "6.12"} if kernel else None,
                      tests={k: TestResult.from_json(v) for k, v in tests.items()})
    assert run.bisect_status(status, summary) == verdict


FAKE_KERNEL = """
    import pytest
    from harness.suite import plugin

    @pytest.fixture(scope="session")
    def kernel(pytestconfig, results_dir):  # a kernel that "was built": the summary is written
        pytestconfig.stash[plugin.KERNEL_USED] = True
"""


def test_a_crash_is_told_by_its_exception_not_its_words(pytester, tmp_path):
    pytester.makeconftest(FAKE_KERNEL)
    pytester.makepyfile(test_c="""
        from harness.errors import KernelCrash

        def test_crash(kernel):
            raise KernelCrash("kernel crashed while running 'x': Oops",
                              "== Oops at console line 9: BUG: unable to handle page fault")

        def test_words(kernel):
            raise RuntimeError("kernel crashed, says the message only")

        def test_fine(kernel):
            pass
    """)
    results = tmp_path / "results"
    pytester.runpytest_inprocess(f"--results={results}").assert_outcomes(passed=1, failed=2)
    summaries.check_schema(results / "summary.json", SCHEMA_FILE)
    summary = Summary.read(results)
    assert summary is not None and summary.finished
    outcomes = {k.split("::")[-1]: v.outcome for k, v in summary.tests.items()}
    assert outcomes == {"test_crash": Outcome.CRASHED, "test_words": Outcome.FAILED,
                        "test_fine": Outcome.PASSED}
    assert run.bisect_status(1, summary) == run.BISECT_BAD
    excerpts = {k.split("::")[-1]: v.excerpt for k, v in summary.tests.items()}
    assert excerpts == {"test_crash": "== Oops at console line 9: BUG: unable to handle page "
                                      "fault", "test_words": "", "test_fine": ""}


def test_usage_error_while_preparing_stops_the_session(pytester, cache, fake_tree, tmp_path):
    """A misused harness (here: a tree built in place) stops pytest with a usage error
    (so `run --bisect-exit` aborts the bisection instead of skipping every commit)."""
    (fake_tree / ".config").write_text("CONFIG_X=y\n")
    pytester.makepyfile(test_u="""
        def test_a(kernel):
            pass
    """)
    result = pytester.runpytest_inprocess(f"--kernel-tree={fake_tree}", "--series=none",
                                          f"--results={tmp_path / 'results'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "is not clean" in result.stdout.str()
    assert run.bisect_status(result.ret, {}) == run.BISECT_ABORT


def test_summary_message_is_the_preparation_error(pytester, cache, tmp_path):
    pytester.makepyfile(test_m="""
        def test_a(kernel):
            pass
    """)
    results = tmp_path / "results"
    pytester.runpytest_inprocess(f"--kernel-tree={tmp_path / 'missing'}", "--series=none",
                                 f"--results={results}")
    import json
    entry = json.loads((results / "summary.json").read_text())["tests"]["test_m.py::test_a"]
    assert entry["outcome"] == "error"
    assert entry["message"].startswith("kernel could not be prepared (tree error, exit 241): ")
    # the kernel is recorded with its error, but nothing identifies it: no key
    summary = Summary.read(results)
    assert summary is not None and summary.kernel is not None
    assert summary.kernel["error"]["kind"] == "tree" and summary.kernel["build_key"] is None
    assert summary.kernel["id"].startswith("unidentified-")
    from harness.suite import kcidb
    doc = kcidb.document(summary)
    kcidb.validate(doc)
    assert doc["builds"][0]["status"] == "ERROR" and doc["checkouts"][0]["valid"] is False


def test_an_interrupted_test_is_not_recorded_as_passed(pytester, tmp_path):
    pytester.makeconftest(FAKE_KERNEL)
    pytester.makepyfile(test_i="""
        def test_first(kernel):
            pass

        def test_cut_off(kernel):
            raise KeyboardInterrupt

        def test_never_ran(kernel):
            pass
    """)
    results = tmp_path / "results"
    # in process, without pytester's re-raising of the inner run's KeyboardInterrupt
    result = pytester.runpytest_inprocess(f"--results={results}", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    summary = Summary.read(results)
    assert summary is not None and summary.finished
    outcomes = {k.split("::")[-1]: v.outcome for k, v in summary.tests.items()}
    assert outcomes == {"test_first": Outcome.PASSED, "test_cut_off": Outcome.INTERRUPTED}
    assert run.bisect_status(result.ret, summary) == run.BISECT_ABORT


def test_run_exits_130_when_pytest_was_interrupted(tmp_path, monkeypatch):
    from harness import options
    monkeypatch.setattr(run.pytest, "main", lambda args, plugins=(): pytest.ExitCode.INTERRUPTED)
    assert run.main(options.Options(), tmp_path / "r", None) == 130
    assert run.main(options.Options(), tmp_path / "r2", None, bisect_exit=True) == run.BISECT_ABORT


def test_unwritable_results_are_the_harness_fault_not_the_kernel(tmp_path, monkeypatch):
    from harness import options
    from harness.errors import UsageError
    monkeypatch.setattr(run.pytest, "main", lambda args, plugins=(): pytest.fail("pytest ran"))
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert run.main(options.Options(), blocked / "x", None, bisect_exit=True) == run.BISECT_ABORT
    with pytest.raises(UsageError, match="cannot be written"):
        run.main(options.Options(), blocked / "x", None)


def test_a_boot_that_cannot_start_qemu_stops_the_session_as_usage(pytester, tmp_path,
                                                                  monkeypatch):
    from harness import pipeline
    from harness.errors import UsageError

    def missing(*args, **kwargs):
        raise UsageError("qemu-system-x86_64 not found: install qemu-system-x86")

    monkeypatch.setattr(pipeline, "boot", missing)  # the run below is in this process
    pytester.makeconftest("""
        import pytest

        @pytest.fixture(scope="session")
        def kernel():
            return object()
    """)
    pytester.makepyfile(test_q="""
        def test_a(guest):
            pass

        def test_b(guest):
            pass
    """)
    result = pytester.runpytest_inprocess(f"--results={tmp_path / 'results'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "qemu-system-x86_64 not found" in result.stdout.str() + result.stderr.str()
    assert run.bisect_status(result.ret, Summary()) == run.BISECT_ABORT


def test_a_full_disk_writing_results_is_the_harness_fault_not_the_kernel(tmp_path, monkeypatch,
                                                                        capsys):
    """pytest lets an OSError writing junit.xml or summary.json escape pytest.main (issue 17,
    1b): a full disk gave exit 1, which --bisect-exit means "bad"."""
    import errno
    from harness import options
    from harness.errors import UsageError

    def full_disk(args, plugins=()):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r" / "junit.xml"))

    monkeypatch.setattr(run.pytest, "main", full_disk)
    assert run.main(options.Options(), tmp_path / "r", None, bisect_exit=True) == run.BISECT_ABORT
    assert "junit.xml cannot be written: No space left on device" in capsys.readouterr().err
    with pytest.raises(UsageError, match=r"results .*/r/junit.xml cannot be written: No space"):
        run.main(options.Options(), tmp_path / "r", None)


def test_a_kernel_that_could_not_be_prepared_is_recorded_with_its_error(pytester, cache,
                                                                        fake_tree, tmp_path):
    """A series that does not apply: the summary's kernel carries the patch error and what
    identifies it (build key, patchset hash), and kcidb.json says so (issue 18)."""
    from harness.suite import kcidb
    from tests.unit.test_patches import BAD, GOOD, write_series
    series = write_series(tmp_path / "s", [("0001-good.patch", GOOD), ("0002-bad.patch", BAD)])
    pytester.makepyfile(test_p="""
        def test_a(guest):
            pass

        def test_b(kernel):
            pass
    """)
    results = tmp_path / "results"
    pytester.runpytest_inprocess(f"--kernel-tree={fake_tree}", f"--series={series}",
                                 f"--results={results}").assert_outcomes(errors=2)
    summaries.check_schema(results / "summary.json", SCHEMA_FILE)
    summary = Summary.read(results)
    assert summary is not None and summary.kernel is not None and not summary.kernel_built
    assert summary.kernel["error"]["kind"] == "patch"
    assert "0002-bad.patch does not apply" in summary.kernel["error"]["message"]
    assert summary.kernel["build_key"] and summary.kernel["id"] == summary.kernel["build_key"]
    assert summary.kernel["patches"] == ["0001-good.patch", "0002-bad.patch"]
    assert len(summary.kernel["patchset_hash"]) == 64 and summary.kernel["version"] is None
    assert summary.kernels == {summary.kernel["id"]: summary.kernel}
    assert summary.tests["test_p.py::test_a"].kernel == summary.kernel["id"]
    assert run.bisect_status(1, summary) == run.BISECT_SKIP
    doc = kcidb.document(summary)
    kcidb.validate(doc)
    assert doc["checkouts"][0]["valid"] is False and doc["builds"][0]["status"] == "FAIL"
    assert [test["status"] for test in doc["tests"]] == ["MISS", "MISS"]
