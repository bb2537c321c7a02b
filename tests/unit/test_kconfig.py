import pytest

from harness.kernel import kconfig
from harness.errors import ConfigError


def test_parse_fragment(tmp_path):
    path = tmp_path / "f.config"
    path.write_text("# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"str\"\nCONFIG_D=64\n")
    fragment = kconfig.load_fragment(path)
    assert fragment.options == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": '"str"', "CONFIG_D": "64"}


def test_bad_fragment_line(tmp_path):
    path = tmp_path / "bad.config"
    path.write_text("CONFIG_A=y\nA=y\n")
    with pytest.raises(ConfigError, match=r"bad.config:2: not a Kconfig assignment"):
        kconfig.load_fragment(path)


def test_missing_options_later_fragment_wins(tmp_path):
    first = kconfig.Fragment(tmp_path / "1", {"CONFIG_A": "y", "CONFIG_B": "y"})
    second = kconfig.Fragment(tmp_path / "2", {"CONFIG_B": "n", "CONFIG_C": "y"})
    config = {"CONFIG_A": "y", "CONFIG_B": "y"}
    missing = kconfig.missing_options(config, [first, second])
    assert [(m.option, m.wanted, m.got, m.fragment.name) for m in missing] == [
        ("CONFIG_B", "n", "y", "2"), ("CONFIG_C", "y", "n", "2")]


def test_dependencies_from_kconfig(tmp_path):
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "Kconfig").write_text(
        "config FOO\n\tbool \"foo\"\n\tdepends on BAR && !BAZ\n\tdepends on X86_64\n\thelp\n\t  x\n"
        "config OTHER\n\tbool\n")
    text = kconfig.kconfig_dependencies(tmp_path, "CONFIG_FOO", {"CONFIG_X86_64": "y"})
    assert "defined in mm/Kconfig" in text
    assert "depends on (BAR && !BAZ) && (X86_64)" in text
    assert "BAR=n" in text and "X86_64=y" in text
    assert "no Kconfig" in kconfig.kconfig_dependencies(tmp_path, "CONFIG_NOPE", {})


def test_check_names_each_option(tmp_path):
    (tmp_path / "Kconfig").write_text("config FOO\n\tdepends on PCI\n")
    config = tmp_path / ".config"
    config.write_text("CONFIG_BAR=y\n")
    fragment = kconfig.Fragment(tmp_path / "x.config", {"CONFIG_FOO": "y", "CONFIG_BAR": "y"})
    with pytest.raises(ConfigError) as info:
        kconfig.check(tmp_path, config, [fragment], "after olddefconfig")
    assert "CONFIG_FOO=y (from" in str(info.value) and "PCI=n" in str(info.value)
    assert "CONFIG_BAR" not in str(info.value).split("\n", 1)[1]


def test_dependencies_include_enclosing_if_blocks(tmp_path):
    """An option inside 'if A' ... 'if B' depends on A and B (issue 17, 13c): both are named
    with their lines; a closed block, and 'if' in help text, are not."""
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "Kconfig").write_text(
        "if CLOSED\nconfig EARLY\n\tbool\nendif # CLOSED\n"
        "if MMU\n"
        "config HELPER\n\tbool \"helper\"\n\thelp\n\t  if unsure, say N.\n\n\t  more text\n"
        "if SWAP && !PREEMPT_RT\n"
        "config FOO\n\tbool \"foo\"\n\tdepends on BAR\n"
        "endif # SWAP\n"
        "config AFTER\n\tbool\n"
        "endif # MMU\n"
        "config LONE\n\tbool\n")
    config = {"CONFIG_MMU": "y", "CONFIG_SWAP": "y"}
    text = kconfig.kconfig_dependencies(tmp_path, "CONFIG_FOO", config)
    assert "depends on (MMU) && (SWAP && !PREEMPT_RT) && (BAR)" in text
    assert "[BAR=n MMU=y PREEMPT_RT=n SWAP=y]" in text
    assert "inside 'if MMU' (mm/Kconfig:5); inside 'if SWAP && !PREEMPT_RT' (mm/Kconfig:12)" in text
    assert "CLOSED" not in text and "unsure" not in text
    after = kconfig.kconfig_dependencies(tmp_path, "CONFIG_AFTER", config)
    assert "depends on MMU [MMU=y]; inside 'if MMU' (mm/Kconfig:5)" in after and "SWAP" not in after
    assert "no 'depends on' and no enclosing 'if'" in kconfig.kconfig_dependencies(
        tmp_path, "CONFIG_LONE", config)
