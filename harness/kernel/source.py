"""Stage 1: turn a tree spec into a kernel source directory with a stable identity.

Specs:
  debian:6.12            the tarball Debian's linux-source-6.12 installs under /usr/src
  /path/to/dir           a kernel tree as it is
  git:/path/repo@REF     REF checked out in a git worktree of the harness's own
  /path/linux.tar.xz     a tarball, extracted into the cache
  https://.../x.tar.xz#sha256=HEX   downloaded, verified, extracted
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.cache import sha256_file, sha256_text, subdir
from harness.progress import Stage, say
from harness.errors import TreeError

DEFAULT_TREE = "debian:6.12"
DEBIAN_SRC = Path("/usr/src")
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst")


@dataclass(frozen=True)
class TreeSpec:
    kind: str  # debian | dir | git | tarball | url
    location: str
    ref: str = ""
    sha256: str = ""

    def __str__(self) -> str:
        return {"debian": f"debian:{self.location}", "git": f"git:{self.location}@{self.ref}",
                "url": self.location}.get(self.kind, self.location)


@dataclass(frozen=True)
class KernelTree:
    path: Path
    identity: str
    version: str
    spec: TreeSpec


def parse_spec(text: str) -> TreeSpec:
    """Parse a tree spec without touching the file system."""
    text = text.strip()
    if not text:
        raise TreeError("empty kernel tree spec")
    if text.startswith("debian:"):
        version = text.split(":", 1)[1]
        if not re.fullmatch(r"\d+\.\d+", version):
            raise TreeError(f"bad Debian tree spec {text!r}: expected debian:MAJOR.MINOR, e.g. debian:6.12")
        return TreeSpec("debian", version)
    if text.startswith("git:"):
        rest = text[4:]
        repo, sep, ref = rest.rpartition("@")
        if not sep:
            repo, ref = rest, "HEAD"
        if not repo or not ref:
            raise TreeError(f"bad git tree spec {text!r}: expected git:PATH@REF")
        return TreeSpec("git", repo, ref=ref)
    if text.startswith(("http://", "https://")):
        url, _, fragment = text.partition("#")
        match = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", fragment)
        if not match:
            raise TreeError(f"tarball URL {url} needs its checksum: append #sha256=<64 hex digits>")
        return TreeSpec("url", url, sha256=match.group(1).lower())
    if text.endswith(TARBALL_SUFFIXES):
        return TreeSpec("tarball", text)
    return TreeSpec("dir", text)


def is_kernel_tree(path: Path) -> bool:
    """A directory that looks like the top of a kernel source tree."""
    try:
        head = (path / "Makefile").read_text(errors="replace")[:2000]
    except OSError:
        return False
    return (path / "Kconfig").is_file() and (path / "mm").is_dir() and \
        bool(re.search(r"^VERSION\s*=", head, re.M))


KERNEL_FILES = ("Kconfig", "arch/x86/Kconfig")  # besides the Makefile, what a tree must have
KERNEL_DIRS = ("scripts/kconfig",)


def kernel_version(tree: Path, what: str = "") -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL read from the tree's top Makefile; a tree without the
    Kconfig files and scripts/kconfig a build needs is a TreeError naming what is missing
    (``what``: where the tree came from, for the message)."""
    name = f"{tree}{f' (from {what})' if what else ''}"
    try:
        head = (tree / "Makefile").read_text(errors="replace")[:2000]
    except OSError as exc:
        raise TreeError(f"{name} is not a kernel tree: no top-level Makefile") from exc
    version = makefile_version(head, f"{name}/Makefile")
    missing = [f for f in KERNEL_FILES if not (tree / f).is_file()] + \
        [f"{d}/" for d in KERNEL_DIRS if not (tree / d).is_dir()]
    if missing:
        raise TreeError(f"{name} is not a kernel tree for x86: it has a Makefile of Linux "
                        f"{version} but no {', '.join(missing)}")
    return version


def makefile_version(head: str, where: str) -> str:
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL)\s*=\s*(\d*)", head, re.M))
    if "VERSION" not in fields or "PATCHLEVEL" not in fields:
        raise TreeError(f"{where} has no VERSION/PATCHLEVEL: not a kernel tree")
    parts = [fields["VERSION"], fields["PATCHLEVEL"]]
    if fields.get("SUBLEVEL"):
        parts.append(fields["SUBLEVEL"])
    return ".".join(parts)


def release(spec: TreeSpec) -> str:
    """MAJOR.MINOR of the tree (e.g. "6.12"), read as cheaply as the spec allows."""
    if spec.kind == "debian":
        return spec.location
    if spec.kind == "dir":
        version = kernel_version(_directory(spec))
    elif spec.kind == "git":
        repo = _git_repo(spec)
        commit = _commit(repo, spec.ref)
        version = makefile_version(_git(repo, "show", f"{commit}:Makefile")[:2000],
                                   f"Makefile of {spec}")
    else:
        version = resolve(spec).version
    return ".".join(version.split(".")[:2])


def read_file(spec: TreeSpec, relpath: str) -> str | None:
    """One file of the tree (None when it has none), as cheaply as the spec allows."""
    if spec.kind == "dir":
        path = _directory(spec) / relpath
        return path.read_text(errors="replace") if path.is_file() else None
    if spec.kind == "git":
        repo = _git_repo(spec)
        result = subprocess.run(["git", "-C", str(repo), "show",
                                 f"{_commit(repo, spec.ref)}:{relpath}"],
                                capture_output=True, text=True, errors="replace")
        return result.stdout if result.returncode == 0 else None
    path = resolve(spec).path / relpath
    return path.read_text(errors="replace") if path.is_file() else None


def unclean_reason(path: Path) -> str | None:
    """Why ``make O=...`` would refuse this source tree (in-tree build output), if it would."""
    for name in (".config", "include/config", "arch/x86/include/generated"):
        if (path / name).exists():
            return f"{path / name} exists (the tree was configured or built in place)"
    return None


def identify(spec: TreeSpec) -> str:
    """The tree's identity without extracting or checking out anything."""
    if spec.kind in ("debian", "tarball"):
        tarball = _tarball_path(spec)
        return "tarball:" + sha256_file(tarball)
    if spec.kind == "url":
        return "tarball:" + spec.sha256
    if spec.kind == "git":
        repo = _git_repo(spec)
        return "git:" + _commit(repo, spec.ref)
    return "dir:" + directory_identity(_directory(spec))


def check_exists(spec: TreeSpec) -> None:
    """Raise TreeError when a local tree (Debian's tarball, a tarball, a directory, a git
    repository) is not there; URLs are checked when downloaded."""
    if spec.kind in ("debian", "tarball"):
        _tarball_path(spec)
    elif spec.kind == "dir":
        _directory(spec)
    elif spec.kind == "git":
        _git_repo(spec)


def _tarball_path(spec: TreeSpec) -> Path:
    if spec.kind == "debian":
        tarball = DEBIAN_SRC / f"linux-source-{spec.location}.tar.xz"
        if not tarball.is_file():
            raise TreeError(f"{tarball} not found: install it with "
                            f"'apt-get install linux-source-{spec.location}'")
        return tarball
    path = Path(spec.location).expanduser()
    if not path.is_file():
        raise TreeError(f"kernel tarball {path} does not exist")
    return path


def _directory(spec: TreeSpec) -> Path:
    path = Path(spec.location).expanduser()
    if not path.is_dir():
        raise TreeError(f"kernel tree {path} does not exist or is not a directory")
    return path.resolve()


def resolve(spec: TreeSpec) -> KernelTree:
    """Make the tree available locally and return it with its identity."""
    if spec.kind in ("debian", "tarball"):
        return _from_tarball(_tarball_path(spec), spec)
    if spec.kind == "url":
        return _from_tarball(download(spec.location, spec.sha256), spec)
    if spec.kind == "git":
        return _from_git(spec)
    path = _directory(spec)
    return KernelTree(path, "dir:" + directory_identity(path), kernel_version(path), spec)


def directory_identity(path: Path) -> str:
    """A cheap fingerprint of a plain directory: names, sizes and mtimes of all files."""
    parts: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            parts.append(f"{os.path.relpath(full, path)}:{st.st_size}:{st.st_mtime_ns}")
    return sha256_text(*parts)


def download(url: str, sha256: str, timeout: float = 60.0) -> Path:
    """Stream a tarball into the cache and verify its sha256; reuse a verified copy."""
    name = url.rstrip("/").rsplit("/", 1)[-1] or "tree.tar"
    target = subdir("downloads") / f"{sha256}-{name}"
    if target.is_file() and sha256_file(target) == sha256:
        return target
    partial = target.with_name(target.name + ".part")
    import requests  # here: only a download needs it, and every command starts faster

    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length") or 0) or None
            with partial.open("wb") as out, \
                    Stage(f"download {url}", total=total, unit="B", unit_scale=True) as stage:
                for chunk in response.iter_content(1 << 20):
                    out.write(chunk)
                    stage.advance(len(chunk))
                stage.done(f"{stage.count >> 20} MiB")
    except requests.RequestException as exc:
        partial.unlink(missing_ok=True)
        raise TreeError(f"download of {url} failed: {exc}") from exc
    got = sha256_file(partial)
    if got != sha256:
        partial.unlink(missing_ok=True)
        raise TreeError(f"checksum mismatch for {url}",
                        f"expected sha256 {sha256}\n     got sha256 {got}\nthe download was deleted")
    os.replace(partial, target)
    return target


def _from_tarball(tarball: Path, spec: TreeSpec) -> KernelTree:
    digest = sha256_file(tarball)
    dest = subdir("trees") / digest
    if not (dest / ".harness-complete").is_file():
        extract(tarball, dest)
    root = _tree_root(dest, tarball)
    return KernelTree(root, "tarball:" + digest, kernel_version(root, str(tarball)), spec)


def extract(tarball: Path, dest: Path) -> None:
    """Extract into ``dest`` refusing members that escape it; all or nothing."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(tarball) as archive, \
                Stage(f"extract {tarball.name}", unit="files") as stage:
            for member in archive:
                if member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise tarfile.FilterError(f"member {member.name!r} has an absolute or '..' path")
                archive.extract(member, tmp, filter="data")
                stage.advance()
    except tarfile.FilterError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TreeError(f"refusing to extract {tarball}: member escapes the target directory",
                        str(exc)) from exc
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TreeError(f"cannot extract {tarball}: {exc}") from exc
    (tmp / ".harness-complete").write_text(str(tarball) + "\n")
    os.replace(tmp, dest)


def _tree_root(dest: Path, tarball: Path) -> Path:
    if (dest / "Makefile").is_file():
        return dest
    subdirs = [p for p in dest.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / "Makefile").is_file():
        return subdirs[0]
    raise TreeError(f"no kernel tree found in {tarball} (extracted in {dest}): expected one "
                    "top directory with a Makefile")


def _git(repo: Path | str, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise TreeError(f"git {' '.join(args)} in {repo} failed", result.stderr.strip())
    return result.stdout.strip()


def _git_repo(spec: TreeSpec) -> Path:
    repo = Path(spec.location).expanduser()
    if not repo.is_dir():
        raise TreeError(f"git repository {repo} does not exist")
    return repo.resolve()


def _commit(repo: Path, ref: str) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except TreeError as exc:
        raise TreeError(f"{ref!r} is not a commit in git repository {repo}") from exc


def _from_git(spec: TreeSpec) -> KernelTree:
    repo = _git_repo(spec)
    commit = _commit(repo, spec.ref)
    worktree = subdir("worktrees") / sha256_text(str(repo))[:16]
    if (worktree / ".git").exists():
        _git(worktree, "checkout", "--quiet", "--detach", "--force", commit)
    else:
        shutil.rmtree(worktree, ignore_errors=True)
        _git(repo, "worktree", "prune")
        say(f"creating worktree {worktree} for {repo}@{spec.ref}")
        _git(repo, "worktree", "add", "--quiet", "--detach", "--force", str(worktree), commit)
    return KernelTree(worktree, "git:" + commit, kernel_version(worktree, str(spec)), spec)
