import pytest

from harness.kernel import patches, source
from harness.errors import PatchError

GOOD = """From: someone
Subject: [PATCH] change b

---
--- a/mm/cache.c
+++ b/mm/cache.c
@@ -1,4 +1,4 @@
 int a;
-int b;
+int bb;
 int c;
 int d;
"""

BAD = """--- a/mm/cache.c
+++ b/mm/cache.c
@@ -1,4 +1,4 @@
 int a;
-int x;
+int y;
 int c;
 int d;
"""


def write_series(directory, entries):
    directory.mkdir(exist_ok=True)
    lines = []
    for name, text in entries:
        (directory / name).write_text(text)
        lines.append(name)
    (directory / "series").write_text("# test series\n" + "\n".join(lines) + "\n")
    return directory


def test_load_series_options_and_comments(tmp_path):
    (tmp_path / "a.patch").write_text(GOOD)
    (tmp_path / "b.patch").write_text(GOOD)
    (tmp_path / "series").write_text("# comment\na.patch\n\nb.patch -p0  # trailing\n")
    series = patches.load_series(tmp_path)
    assert [(p.path.name, p.strip) for p in series.patches] == [("a.patch", 1), ("b.patch", 0)]


def test_series_missing_patch_named(tmp_path):
    (tmp_path / "series").write_text("gone.patch\n")
    with pytest.raises(PatchError, match=r"series:1: patch gone.patch not found"):
        patches.load_series(tmp_path)


def test_series_file_missing(tmp_path):
    with pytest.raises(PatchError, match="needs a 'series' file"):
        patches.load_series(tmp_path)


def test_apply_to_copy_source_untouched(cache, fake_tree, tmp_path):
    series = patches.load_series(write_series(tmp_path / "s", [("0001-good.patch", GOOD)]))
    tree = source.resolve(source.parse_spec(str(fake_tree)))
    with patches.patched(tree, series) as patched:
        assert patched.path != fake_tree
        assert "int bb;" in (patched.path / "mm" / "cache.c").read_text()
        assert "int b;" in (fake_tree / "mm" / "cache.c").read_text()
        assert patched.identity != tree.identity
    assert not patched.path.exists()  # a scratch copy: the workspace keeps what is built


def test_edited_copy_changes_one_added_line(tmp_path):
    original = write_series(tmp_path / "s", [("0001-good.patch", GOOD)])
    edited = patches.edited_copy(original, tmp_path / "e", "int bb;", "int bc;")
    assert "+int bc;" in (edited / "0001-good.patch").read_text()
    assert "+int bb;" in (original / "0001-good.patch").read_text()
    with pytest.raises(PatchError, match="contains 'int a;'"):  # a context line, not added
        patches.edited_copy(original, tmp_path / "e2", "int a;", "int z;")


def test_failing_patch_named_with_hunk(cache, fake_tree, tmp_path):
    series = patches.load_series(write_series(
        tmp_path / "s", [("0001-good.patch", GOOD), ("0002-bad.patch", BAD)]))
    tree = source.resolve(source.parse_spec(str(fake_tree)))
    with pytest.raises(PatchError) as info:
        with patches.patched(tree, series):
            pass
    message = str(info.value)
    assert "0002-bad.patch does not apply" in message
    assert "mm/cache.c: Hunk #1 FAILED" in message
    assert list((cache / "scratch").iterdir()) == []  # nothing half-patched is kept
    assert "int b;" in (fake_tree / "mm" / "cache.c").read_text()


def test_failed_hunks_parser():
    output = ("patching file mm/page_alloc.c\nHunk #2 FAILED at 120.\n"
              "can't find file to patch at input line 5\n")
    assert patches.failed_hunks(output) == [
        "mm/page_alloc.c: Hunk #2 FAILED at 120.", "can't find file to patch at input line 5"]


def test_empty_series_and_entries_outside_the_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "series").write_text("# nothing\n")
    with pytest.raises(PatchError, match="lists no patches"):
        patches.load_series(empty)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "evil.patch").write_text(GOOD)
    (outside / "series").write_text("../evil.patch\n")
    with pytest.raises(PatchError, match=r"series:1: patch \.\./evil\.patch is outside"):
        patches.load_series(outside)


FUZZY = GOOD.replace(" int a;\n", " int A;\n")  # one context line that the tree does not have


def test_a_patch_that_needs_fuzz_does_not_apply(cache, fake_tree, tmp_path):
    series = patches.load_series(write_series(tmp_path / "s", [("0001-fuzzy.patch", FUZZY)]))
    tree = source.resolve(source.parse_spec(str(fake_tree)))
    with pytest.raises(PatchError, match="0001-fuzzy.patch does not apply") as info:
        with patches.patched(tree, series):
            pass
    assert "mm/cache.c: Hunk #1 FAILED" in info.value.detail
