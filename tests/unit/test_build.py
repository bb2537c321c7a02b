import json
import os
from pathlib import Path

import pytest

from harness.kernel import build, source
from harness.errors import UsageError
from harness.cache import write_json_atomic


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
    assert build.reusable(build_dir, key) is None


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
