import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.kernel import build, source
from harness.errors import UsageError
from harness.cache import write_json_atomic
from tests.processes import gone


def request(tree, tmp_path, text="CONFIG_A=y\n"):
    fragment = tmp_path / "f.config"
    fragment.write_text(text)
    return build.BuildRequest(source.parse_spec(str(tree)), None, fragments=(fragment,))


def test_key_follows_inputs(cache, fake_tree, tmp_path):
    from harness.kernel import kconfig
    r = request(fake_tree, tmp_path)
    frags = [kconfig.load_fragment(p) for p in r.fragments]
    key = build.build_key(r, source.identify(r.tree), None, frags)
    assert key == build.build_key(r, source.identify(r.tree), None, frags)
    (tmp_path / "f.config").write_text("CONFIG_A=n\n")
    assert key != build.build_key(r, source.identify(r.tree), None, frags)
    assert key != build.build_key(r, "dir:other", None, frags)


def test_cached_build_runs_no_make(cache, fake_tree, tmp_path, monkeypatch):
    r = request(fake_tree, tmp_path)
    from harness.kernel import kconfig
    key = build.build_key(r, source.identify(r.tree), None, [kconfig.load_fragment(p) for p in r.fragments])
    build_dir = cache / "builds" / key[:24]
    (build_dir / "arch/x86/boot").mkdir(parents=True)
    (build_dir / build.IMAGE).write_bytes(b"image")
    write_json_atomic(build_dir / "harness-build.json", {
        "key": key, "version": "6.12.117", "image": build.image_record(build_dir / build.IMAGE)})

    def no_make(*args, **kwargs):
        raise AssertionError("make must not run for a cached build")

    monkeypatch.setattr(build, "run_make", no_make)
    monkeypatch.setattr(build.kconfig, "make_config", no_make)
    result = build.build(r)
    assert result.reused and result.image == build_dir / build.IMAGE
    # a damaged image (truncated, or changed in place) is not trusted: the build runs again
    (build_dir / build.IMAGE).write_bytes(b"imag")
    with pytest.raises(AssertionError, match="make must not run"):
        build.build(r)
    assert build.reusable(build_dir, build.identify(r)) is None


def test_first_errors():
    log = "  CC init/main.o\ninit/main.c:3:2: error: #error boom\nmake[2]: *** [x] Error 1\n  CC ok\n"
    assert build.first_errors(log) == "init/main.c:3:2: error: #error boom\nmake[2]: *** [x] Error 1"
    assert build.first_errors("a\nb\n") == "a\nb"


def test_unclean_tree_is_a_usage_error_before_make(cache, fake_tree, tmp_path, monkeypatch):
    (fake_tree / ".config").write_text("CONFIG_X=y\n")
    monkeypatch.setattr(build, "run_make", lambda *a: pytest.fail("make ran"))
    with pytest.raises(UsageError, match=r"(?s)is not clean: .*\.config exists.*mrproper"):
        build.build(request(fake_tree, tmp_path))


def test_run_make_counts_objects_and_learns_the_total(tmp_path, caplog):
    objdir, estimate, log = tmp_path / "obj", tmp_path / "objects.json", tmp_path / "build.log"
    objdir.mkdir()
    fake = ["sh", "-c", "echo '  CC      mm/a.o'; echo '  AS      x.o'; echo '  LD      vmlinux.o'"]
    assert build.run_make(fake, log, objdir, estimate) == 2
    assert json.loads(estimate.read_text()) == {"objects": 2}  # a full build: learnt
    assert "  CC      mm/a.o" in log.read_text()
    (objdir / "vmlinux").write_text("")
    assert build.run_make(fake[:2] + ["echo '  CC      mm/a.o'"], log, objdir, estimate) == 1
    assert json.loads(estimate.read_text()) == {"objects": 2}  # incremental: not learnt
    with pytest.raises(build.BuildError, match="make exit 2") as info:
        build.run_make(["sh", "-c", "echo 'a.c:1:1: error: boom'; exit 2"], log, objdir, estimate)
    assert "a.c:1:1: error: boom" in info.value.detail


def test_build_lock_follows_no_link_and_truncates_nothing(tmp_path, monkeypatch):
    target = tmp_path / "precious"
    target.write_text("keep me")
    link = tmp_path / "build.lock"
    link.symlink_to(target)
    monkeypatch.setenv("PTE_HARNESS_BUILD_LOCK", str(link))
    with pytest.raises(UsageError, match="cannot open the build lock"):
        with build.build_lock():
            pass
    assert target.read_text() == "keep me"
    monkeypatch.delenv("PTE_HARNESS_BUILD_LOCK")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    with build.build_lock():
        lock = tmp_path / "run" / "pte-harness" / "build.lock"
        assert lock.is_file() and (lock.parent.stat().st_mode & 0o777) == 0o700
    (tmp_path / "run" / "pte-harness").chmod(0o777)
    with pytest.raises(UsageError, match="others cannot write"):
        with build.build_lock():
            pass


def test_results_directories_started_in_the_same_second_differ(tmp_path, monkeypatch):
    from harness import cache
    monkeypatch.setattr(cache.time, "strftime", lambda fmt: "20261202-101010")
    first, second = cache.new_results_dir(tmp_path, "x-"), cache.new_results_dir(tmp_path, "x-")
    assert (first.name, second.name) == ("x-20261202-101010", "x-20261202-101010-2")


def test_a_runtime_directory_that_is_not_there_falls_back_to_tmp(monkeypatch):
    from harness import cache
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent/run/user/0")
    assert cache.runtime_dir() == Path(f"/tmp/pte-harness-{os.getuid()}")


FAKE_MAKE = """\
# a fake 'make ... bzImage' (issue 17, X1/X2): the file named by $2 says what to do
objdir=$1; what=$(cat "$2" 2>/dev/null)
echo '  CC      mm/a.o'
case $what in
full) echo "mm/a.o: No space left on device"; echo "make[2]: *** [mm/a.o] Error 1"; exit 2 ;;
hang) sleep 1000 & echo "$! $$" > "$3"; wait; exit 2 ;;
esac
mkdir -p "$objdir/arch/x86/boot"
echo image > "$objdir/arch/x86/boot/bzImage"; echo map > "$objdir/System.map"
touch "$objdir/vmlinux"
"""


def assert_stopped(pids: Path) -> None:
    """The processes named in ``pids`` (a fake make and its child) are gone; killed if not."""
    started = [int(pid) for pid in pids.read_text().split()]
    try:  # a SIGKILL is delivered a moment after it is sent
        assert len(started) == 2 and all([gone(pid, wait=5) for pid in started])
    finally:
        for pid in started:
            if not gone(pid):
                os.kill(pid, 9)


@pytest.fixture
def fake_make(cache, fake_tree, tmp_path, monkeypatch):
    """build.build() on the fake tree with a fake make: returns (request, mode file, pids file)."""
    script, mode, pids = tmp_path / "make.sh", tmp_path / "mode", tmp_path / "pids"
    script.write_text(FAKE_MAKE)
    monkeypatch.setattr(build, "make_command",
                        lambda tree, objdir, jobs: ["sh", str(script), str(objdir), str(mode),
                                                    str(pids)])

    def make_config(make, tree, objdir, base, fragments, log):
        (objdir / ".config").write_text("CONFIG_A=y\n")
        return objdir / ".config"

    monkeypatch.setattr(build.kconfig, "make_config", make_config)
    return request(fake_tree, tmp_path), mode, pids


def test_disk_full_during_the_build_leaves_the_cache_usable(fake_make):
    """make failing with ENOSPC: a build error naming the log, no build record (nothing half
    built is ever reused); the next build, with space again, builds and is then reused."""
    r, mode, _ = fake_make
    mode.write_text("full")
    with pytest.raises(build.BuildError,
                       match=r"make exit 2\); the disk is full: .*; full log: .*/build.log") as info:
        build.build(r)
    assert "No space left on device" in info.value.detail
    out = Path(str(info.value.message).rsplit("full log: ", 1)[1]).parent
    assert not (out / "harness-build.json").exists()
    mode.write_text("")
    result = build.build(r)
    assert not result.reused and result.image.read_text() == "image\n"
    assert result.build_dir == out and (out / "harness-build.json").is_file()
    assert build.build(r).reused


def test_log_that_cannot_be_written_stops_make_and_names_the_log(tmp_path):
    """The disk fills under the build log while make runs: make and its children are stopped,
    and the error names the log (it was an OSError traceback, with make left running)."""
    import errno
    pids = tmp_path / "pids"
    written: list[str] = []

    class FullLog(io.StringIO):
        def write(self, text: str) -> int:
            if written:  # the command line goes in; make's first line finds the disk full
                raise OSError(errno.ENOSPC, "No space left on device")
            written.append(text)
            return len(text)

    class LogPath(type(Path())):  # type: ignore[misc]
        def open(self, *args, **kwargs):
            return FullLog()

    log = LogPath(tmp_path / "build.log")
    script = f"sleep 1000 & echo \"$! $$\" > {pids}; sleep 0.2; echo '  CC a.o'; wait"
    with pytest.raises(build.BuildError, match=r"cannot write its log .*build.log: No space left"):
        build.run_make(["sh", "-c", script], log)
    assert_stopped(pids)


def test_build_interrupted_by_sigterm_stops_make_and_rebuilds_cleanly(fake_make):
    """SIGTERM (a CI job's timeout) while make runs: make and the compilers it started are
    stopped and reaped before the harness goes on unwinding, no build record is written,
    and the next build builds."""
    import signal
    import threading
    from harness import cli
    r, mode, pids = fake_make
    mode.write_text("hang")

    def terminate_when_make_runs() -> None:
        deadline = time.monotonic() + 10
        while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, cli._terminated)
    killer = threading.Thread(target=terminate_when_make_runs)
    try:
        killer.start()
        with pytest.raises(KeyboardInterrupt):
            build.build(r)
    finally:
        killer.join()
        signal.signal(signal.SIGTERM, previous)
    assert_stopped(pids)
    builds = list((Path(os.environ["PTE_HARNESS_CACHE"]) / "builds").iterdir())
    assert len(builds) == 1 and not (builds[0] / "harness-build.json").exists()
    mode.write_text("")
    result = build.build(r)
    assert not result.reused and (result.build_dir / "harness-build.json").is_file()


def test_cc_wrapper_keeps_assembler_sources_out_of_ccache(tmp_path):
    """make's CC runs gcc through ccache, but assembles *.S with gcc alone: ccache in
    depend mode does not see piggy.S's .incbin and handed back an older kernel."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for name in ("ccache", "gcc"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert build.make_command(Path("/t"), Path("/o"), 2)[-1] == f"CC=sh {build.CC_WRAPPER}" \
        or not shutil.which("ccache")
    for args in (["-c", "-o", "mm/a.o", "mm/a.c"],
                 ["-Wp,-MMD,x.d", "-c", "-o", "piggy.o", "arch/x86/boot/compressed/piggy.S"],
                 ["--version"]):
        subprocess.run(["sh", str(build.CC_WRAPPER), *args], env=env, check=True)
    assert calls.read_text().splitlines() == [
        "ccache gcc -c -o mm/a.o mm/a.c",
        "gcc -Wp,-MMD,x.d -c -o piggy.o arch/x86/boot/compressed/piggy.S",
        "ccache gcc --version"]


def test_an_image_without_the_kernel_just_compressed_is_a_build_error(tmp_path):
    compressed = tmp_path / "arch/x86/boot/compressed"
    compressed.mkdir(parents=True)
    (compressed / "vmlinux.bin.xz").write_bytes(b"new kernel")
    image = tmp_path / build.IMAGE
    image.write_bytes(b"setup old kernel")
    with pytest.raises(build.BuildError, match="does not hold the kernel just built.*piggy.o"):
        build.check_payload(tmp_path)
    image.write_bytes(b"setup new kernel")
    build.check_payload(tmp_path)
