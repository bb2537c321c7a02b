import pytest

from harness import options
from harness.errors import UsageError


def test_yaml_values_and_cli_override(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("tree: /src/linux\nseries: none\nkconfig: [extra]\nboot-timeout: 30\nmemory: 2G\n")
    merged = options.merge(path, {"memory": "512M", "tree": None})
    assert merged.tree == "/src/linux" and merged.series == "none"
    assert merged.kconfig == ("extra",) and merged.boot_timeout == 30 and merged.memory == "512M"


def test_unknown_key_named(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("tree: x\nmemroy: 2G\n")
    with pytest.raises(UsageError, match="unknown key 'memroy'"):
        options.load_yaml(path)


@pytest.mark.parametrize("text, key", [("cpus: two\n", "cpus"), ("kconfig: base\n", "kconfig"),
                                       ("cpus: true\n", "cpus"), ("kconfig: [1]\n", "kconfig")])
def test_wrong_type_named(tmp_path, text, key):
    path = tmp_path / "o.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=f"'{key}' must be"):
        options.load_yaml(path)


def test_not_a_mapping(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(UsageError, match="expected a mapping"):
        options.load_yaml(path)


def test_default_fragments():
    assert [p.name for p in options.Options(series="none").fragment_paths()] == ["base.config"]


def test_unknown_fragment_and_series():
    with pytest.raises(UsageError, match="fragment 'nope' not found"):
        options.Options(kconfig=("nope",)).fragment_paths()
    with pytest.raises(UsageError, match="patch series 'v0.1' not found"):
        options.Options(series="v0.1").series_dir()


def test_series_auto_follows_tree_version(fake_tree, tmp_path):
    assert options.Options(tree=str(fake_tree)).series_dir() == options.PATCH_DIR / "v6.12"
    assert options.Options(tree="debian:6.12").series_dir() == options.PATCH_DIR / "v6.12"
    (fake_tree / "Makefile").write_text("VERSION = 5\nPATCHLEVEL = 4\nSUBLEVEL = 0\n")
    with pytest.raises(UsageError, match=r"no patch series for Linux 5.4 .*series there: .*v6.12"):
        options.Options(tree=str(fake_tree)).series_dir()


def test_release_of_git_tree_reads_makefile_at_ref(fake_tree):
    import subprocess
    from harness.kernel import source
    run = lambda *a: subprocess.run(["git", "-C", str(fake_tree), "-c", "user.name=t",  # noqa: E731
                                     "-c", "user.email=t@t", *a], check=True, capture_output=True)
    run("init", "-q")
    run("add", "-A")
    run("commit", "-qm", "one")
    (fake_tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\n")
    run("commit", "-qam", "two")
    assert source.release(source.parse_spec(f"git:{fake_tree}@HEAD~1")) == "6.12"
    assert source.release(source.parse_spec(f"git:{fake_tree}@HEAD")) == "6.1"


def test_ssh_adds_net_fragment_last():
    serial = options.Options().fragment_paths()
    ssh = options.Options(transport="ssh").fragment_paths()
    # debian:6.12 gets patches/v6.12, whose tests.config follows the feature's fragments
    feature = ["base.config", "pte-mapped.config", "debug.config", "tests.config"]
    assert [p.name for p in serial] == feature
    assert serial[-1] == options.PATCH_DIR / "v6.12" / "tests.config"
    assert [p.name for p in ssh] == [*feature, "net.config"]
    assert [p.name for p in options.Options(series="none", transport="ssh").fragment_paths()] == \
        ["base.config", "net.config"]


def test_ssh_build_key_differs(cache, fake_tree):
    from harness.kernel import build, kconfig, source

    def key(transport):
        opts = options.Options(tree=str(fake_tree), series="none", transport=transport)
        request = build.BuildRequest(source.parse_spec(opts.tree), None, fragments=opts.fragment_paths())
        fragments = [kconfig.load_fragment(p) for p in request.fragments]
        return build.build_key(request, source.identify(request.tree), None, fragments)

    assert key("serial") != key("ssh")
    assert key("serial") == key("serial")


def test_transport_checked(tmp_path):
    with pytest.raises(UsageError, match="transport must be one of serial, ssh"):
        options.Options(transport="telnet")
    path = tmp_path / "o.yaml"
    path.write_text("transport: ssh\n")
    assert options.merge(path, {}).transport == "ssh"


def _carry_feature(tree):
    (tree / "mm" / "Kconfig").write_text(f"config MMU\n\tbool\n\n{options.FEATURE_MARKER}\n\tbool\n")


def test_tree_that_carries_the_series_gets_none_and_the_feature_fragments(fake_tree):
    plain = options.Options(tree=str(fake_tree))
    assert plain.series_dir() == options.PATCH_DIR / "v6.12"
    assert options.Options(tree=str(fake_tree), series="none").default_fragments() == ()
    _carry_feature(fake_tree)
    carried = options.Options(tree=str(fake_tree))
    assert carried.series_dir() is None
    # ... and the fragment of the project's series for its release (a 6.12 tree here)
    own = str(options.PATCH_DIR / "v6.12" / options.SERIES_FRAGMENT)
    assert carried.default_fragments() == (*options.FEATURE_FRAGMENTS, own)
    assert options.Options(tree=str(fake_tree), series="none").default_fragments() == \
        (*options.FEATURE_FRAGMENTS, own)


def test_tree_defaults_to_a_kernel_tree_in_the_current_directory(fake_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert options.merge(None, {}).tree == "debian:6.12"
    (fake_tree / "Kconfig").write_text("mainmenu \"Linux\"\n")
    monkeypatch.chdir(fake_tree)
    assert options.merge(None, {}).tree == str(fake_tree)
    assert options.merge(None, {"tree": "debian:6.1"}).tree == "debian:6.1"


def test_yaml_aliases_and_huge_values_are_refused_with_a_short_message(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]"
              for i in range(1, 12)]
    bomb.write_text("\n".join(lines) + "\ntree: *a11\n")
    with pytest.raises(UsageError, match="aliases") as info:
        options.load_yaml(bomb)
    assert len(str(info.value)) + len(info.value.detail) < 2000
    deep = tmp_path / "deep.yaml"
    deep.write_text("tree: " + "[" * 50 + "]" * 50 + "\n")
    with pytest.raises(UsageError, match="'tree' must be a str") as info:
        options.load_yaml(deep)
    assert len(str(info.value)) < 300


def test_pytest_surface_leaves_timeout_to_pytest_timeout():
    """--timeout is pytest-timeout's: pytest gets --command-timeout alone; the commands
    keep --timeout."""
    import argparse
    on_pytest, on_cli = argparse.ArgumentParser(), argparse.ArgumentParser()
    options.add_arguments(on_pytest, pytest=True)
    options.add_arguments(on_cli)
    pytest_flags = {f for a in on_pytest._actions for f in a.option_strings}
    assert "--command-timeout" in pytest_flags and "--timeout" not in pytest_flags
    assert {"--kernel-tree", "--tree", "--guest-mem"} <= pytest_flags  # other aliases stay
    assert "--timeout" in {f for a in on_cli._actions for f in a.option_strings}


def test_a_series_without_its_own_fragment_adds_none(tmp_path):
    (tmp_path / "series").write_text("")
    names = [p.name for p in options.Options(series=str(tmp_path)).fragment_paths()]
    assert names == ["base.config", "pte-mapped.config", "debug.config"]
    (tmp_path / "tests.config").write_text("CONFIG_X=y\n")
    assert options.Options(series=str(tmp_path)).fragment_paths()[-1] == tmp_path / "tests.config"
