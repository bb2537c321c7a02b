"""The release workspace: trees synced by content into one source directory, so make
rebuilds exactly what changed, whichever tree or series a build comes from."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.kernel import workspace


def write_tree(root: Path, files: dict[str, str]) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def space(cache) -> workspace.Workspace:
    return workspace.for_release("6.12.117")


def test_release_workspace_and_objdirs(space, cache):
    assert space.root == cache / "work" / "6.12"
    assert space.objdir("a" * 64) != space.objdir("b" * 64)
    assert space.objdir("a" * 64).parent == space.root  # sibling of src: ../src for every one


def test_sync_replaces_changed_files_with_fresh_times_and_keeps_the_rest(space, tmp_path):
    a = write_tree(tmp_path / "a", {"Makefile": "m", "mm/x.c": "1", "mm/y.c": "same",
                                    "gone.h": "g", ".git/HEAD": "ref"})
    first = workspace.sync(a, space)
    assert first.created and (space.src / "mm/x.c").read_text() == "1"
    assert not (space.src / ".git").exists()
    kept = os.stat(space.src / "mm/y.c").st_mtime_ns
    floor = os.stat(space.src / "mm/x.c").st_mtime_ns + 10**9  # "a build ended later"
    b = write_tree(tmp_path / "b", {"Makefile": "m", "mm/x.c": "2", "mm/y.c": "same",
                                    "new/z.c": "z"})
    stats = workspace.sync(b, space, floor_ns=floor)
    assert (stats.replaced, stats.removed) == (2, 1)  # x.c and z.c; gone.h
    assert (space.src / "mm/x.c").read_text() == "2"
    assert os.stat(space.src / "mm/x.c").st_mtime_ns > floor
    assert os.stat(space.src / "new/z.c").st_mtime_ns > floor
    assert os.stat(space.src / "mm/y.c").st_mtime_ns == kept  # same bytes: not touched
    assert not (space.src / "gone.h").exists()
    again = workspace.sync(b, space)
    assert (again.replaced, again.removed) == (0, 0)


def test_a_file_changed_back_is_newer_than_the_last_build(space, tmp_path):
    """The danger of sharing objects: series B changes x.c, series C restores the original.
    Restoring must look like a change to make, never like an old file."""
    original = {"Makefile": "m", "mm/x.c": "original"}
    workspace.sync(write_tree(tmp_path / "a", original), space)
    workspace.sync(write_tree(tmp_path / "b", {**original, "mm/x.c": "changed"}), space)
    built = os.stat(space.src / "mm/x.c").st_mtime_ns + 1
    workspace.sync(write_tree(tmp_path / "c", original), space, floor_ns=built)
    assert (space.src / "mm/x.c").read_text() == "original"
    assert os.stat(space.src / "mm/x.c").st_mtime_ns > built


def test_modes_and_symlinks_follow_the_tree(space, tmp_path):
    a = write_tree(tmp_path / "a", {"scripts/run.sh": "#!/bin/sh\n", "t": "t"})
    (a / "link").symlink_to("t")
    workspace.sync(a, space)
    (a / "scripts/run.sh").chmod(0o755)
    (a / "link").unlink()
    (a / "link").symlink_to("scripts/run.sh")
    stats = workspace.sync(a, space)
    assert stats.replaced == 2
    assert os.access(space.src / "scripts/run.sh", os.X_OK)
    assert os.readlink(space.src / "link") == "scripts/run.sh"


def test_the_tree_synced_is_never_written(space, tmp_path, cache):
    """A tree the harness owns is hard-linked into the workspace; replacing a file there
    must not change the tree it came from."""
    owned = write_tree(cache / "trees" / "t", {"Makefile": "m", "mm/x.c": "pristine"})
    workspace.sync(owned, space)
    assert os.stat(space.src / "mm/x.c").st_ino == os.stat(owned / "mm/x.c").st_ino
    workspace.sync(write_tree(tmp_path / "b", {"Makefile": "m", "mm/x.c": "patched"}), space)
    assert (owned / "mm/x.c").read_text() == "pristine"


def test_an_interrupted_sync_leaves_nothing_that_a_later_sync_keeps(space, tmp_path):
    a = write_tree(tmp_path / "a", {"Makefile": "m", "mm/x.c": "1"})
    workspace.sync(a, space)
    (space.src / ("mm/x.c" + workspace.TMP_SUFFIX)).write_text("half")
    workspace.sync(a, space)
    assert sorted(p.name for p in (space.src / "mm").iterdir()) == ["x.c"]


MAKEFILE = """\
$(O)/x.o: $(S)/mm/x.c $(S)/include/h.h
\tcat $^ > $@
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_rebuilds_exactly_what_changed_between_trees(space, tmp_path):
    """With make itself: series B, then C (B's change undone, another file changed), then B
    again; each build's output matches its own tree, and an unchanged tree builds nothing."""
    base = {"Makefile": MAKEFILE, "mm/x.c": "x1\n", "include/h.h": "h1\n"}
    obj = space.objdir("c" * 64)

    def build(files: dict[str, str], name: str) -> str:
        workspace.sync(write_tree(tmp_path / name, files), space, workspace.last_build_ns(space))
        obj.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["make", "-f", str(space.src / "Makefile"),
                                 f"S={space.src}", f"O={obj}"], capture_output=True, text=True)
        workspace.mark_build_end(space)
        assert result.returncode == 0, result.stderr
        return (obj / "x.o").read_text() + ("(rebuilt)" if "cat " in result.stdout else "")

    assert build(base, "a") == "x1\nh1\n(rebuilt)"
    assert build({**base, "mm/x.c": "x2\n"}, "b") == "x2\nh1\n(rebuilt)"
    assert build({**base, "include/h.h": "h2\n"}, "c") == "x1\nh2\n(rebuilt)"
    assert build({**base, "include/h.h": "h2\n"}, "c2") == "x1\nh2\n"  # nothing changed
    assert build({**base, "mm/x.c": "x2\n"}, "b2") == "x2\nh1\n(rebuilt)"


def test_a_new_configuration_starts_from_the_closest_one(space, tmp_path):
    for name, config in (("near", "CONFIG_A=y\nCONFIG_B=y\n"), ("far", "CONFIG_C=y\n"),
                         ("unbuilt", "CONFIG_A=y\nCONFIG_B=y\n")):
        objdir = space.root / f"obj-{name}"
        objdir.mkdir(parents=True)
        (objdir / ".config").write_text(config)
        if name != "unbuilt":
            (objdir / "vmlinux").write_text(name)
            (objdir / "mm.o").write_text(name)
    new = space.root / "obj-new"
    new.mkdir()
    (new / ".config").write_text("CONFIG_A=y\nCONFIG_B=y\nCONFIG_D=y\n")
    origin = workspace.closest_objdir(space, new, {"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_D": "y"})
    assert origin == space.root / "obj-near"
    before = os.stat(origin / "mm.o").st_mtime_ns
    workspace.seed(new, origin)
    assert (new / "mm.o").read_text() == "near"
    assert os.stat(new / "mm.o").st_mtime_ns == before  # times kept: make judges them
    assert (new / ".config").read_text().endswith("CONFIG_D=y\n")  # its own configuration


def test_a_seeded_directory_keeps_objtool_built(space):
    """objtool's records name the object directory: after a copy they must name the new
    one (times kept), or objtool is relinked and every object after it recompiled."""
    origin, new = space.root / "obj-old", space.root / "obj-new"
    (origin / "tools/objtool").mkdir(parents=True)
    new.mkdir()
    (new / ".config").write_text("CONFIG_A=y\n")
    record = origin / "tools/objtool/.objtool.o.cmd"
    record.write_text(f"cmd := gcc -o {origin}/tools/objtool/objtool.o\n"
                      f"deps := {origin}/tools/objtool/libsubcmd/include/x.h\n")
    (origin / "tools/objtool/objtool").write_text(f"binary naming {origin}")
    before = os.stat(record).st_mtime_ns
    workspace.seed(new, origin)
    copied = new / "tools/objtool/.objtool.o.cmd"
    assert copied.read_text() == (f"cmd := gcc -o {new}/tools/objtool/objtool.o\n"
                                  f"deps := {new}/tools/objtool/libsubcmd/include/x.h\n")
    assert os.stat(copied).st_mtime_ns == before
    assert (new / "tools/objtool/objtool").read_text() == f"binary naming {origin}"  # untouched
    assert record.read_text().startswith(f"cmd := gcc -o {origin}/")  # the origin is unchanged
