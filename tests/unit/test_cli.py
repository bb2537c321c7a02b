"""Exit statuses and messages of bad input that fails before any kernel is built."""

from harness import cli
from tests.unit.test_patches import BAD, write_series


def run(capsys, *argv):
    status = cli.main(list(argv))
    return status, capsys.readouterr().err


def test_missing_tree(cache, capsys, tmp_path):
    status, err = run(capsys, "build", "--series", "none", "--tree", str(tmp_path / "nope"))
    assert status == 241 and "tree error" in err and "does not exist" in err


def test_unknown_yaml_key(cache, capsys, tmp_path):
    (tmp_path / "o.yaml").write_text("tree: debian:6.12\nbogus: 1\n")
    status, err = run(capsys, "build", "--config", str(tmp_path / "o.yaml"))
    assert status == 240 and "unknown key 'bogus'" in err


def test_patch_that_does_not_apply(cache, capsys, fake_tree, tmp_path):
    series = write_series(tmp_path / "s", [("0001-bad.patch", BAD)])
    status, err = run(capsys, "build", "--tree", str(fake_tree), "--series", str(series),
                      "--no-default-kconfig")
    assert status == 242 and "0001-bad.patch does not apply" in err and "mm/cache.c: Hunk #1 FAILED" in err


def test_exec_needs_command(cache, capsys):
    status, err = run(capsys, "exec", "--series", "none", "--")
    assert status == 240 and "needs a command" in err


def test_doctor_lists_prerequisites(capsys):
    status = cli.main(["doctor"])
    out = capsys.readouterr().out
    assert "qemu-system-x86_64" in out and "KVM" in out and status == 0


def test_bisect_passes_its_options_to_every_step(monkeypatch, tmp_path):
    from harness.suite import bisect
    from harness import options
    seen = {}
    monkeypatch.setattr(bisect, "main", lambda tree, good, bad, chosen, keyword, results, retries:
                        seen.update(tree=tree, options=chosen, keyword=keyword, retries=retries) or 0)
    status = cli.main(["bisect", "--tree", "git:/k", "--good", "v1", "--bad", "v2", "--transport",
                       "ssh", "-k", "shrinker", "--kconfig", "x.config", "--retries", "2",
                       "--append", "loglevel=8", "--memory", "2G"])
    assert status == 0 and seen["tree"] == "git:/k" and seen["retries"] == 2
    chosen = seen["options"]
    assert (chosen.transport, chosen.kconfig, chosen.append, chosen.memory) == \
        ("ssh", ("x.config",), "loglevel=8", "2G")
    args = bisect.step_arguments(chosen, "shrinker", tmp_path)
    assert args == ["--config", str(tmp_path / "options.yaml"), "-k", "shrinker"]
    saved = options.load_yaml(tmp_path / "options.yaml")
    assert "tree" not in saved  # every step names its own worktree
    assert options.replace(chosen, **saved) == chosen


def test_debian_tree_that_is_not_installed_is_a_tree_error(cache, capsys):
    status, err = run(capsys, "build", "--tree", "debian:9.9")
    assert status == 241 and "linux-source-9.9.tar.xz not found" in err


def test_tarball_that_is_not_a_kernel_is_a_tree_error(cache, capsys, tmp_path):
    from tests.unit.test_source import MAKEFILE, make_tarball
    tarball = make_tarball(tmp_path / "not-linux.tar.gz", {"p/Makefile": MAKEFILE})
    status, err = run(capsys, "build", "--tree", str(tarball))
    assert status == 241 and "tree error" in err
    assert "no Kconfig, arch/x86/Kconfig, scripts/kconfig/" in err
