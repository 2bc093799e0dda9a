"""The file-system view of the bwrap and namespace sandboxes: only what the interpreter needs.

The view is a list of :class:`ViewEntry` rows, computed once per process from a discovery run of
the sandbox child itself (``_child.py --loaded-objects``): the interpreter binary, its standard
library directories (``sys.path`` under ``-I -S``), and every shared object the dynamic loader
mapped once the child's modules were imported, each at the path the loader looked it up under,
with the symlinks along that path reproduced. Nothing else of the host appears: no /etc, /home,
/root (beyond the directories leading to the interpreter), project directory, site-packages or
working directory. See docs/code_execution.md for the table per mode.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CHILD_SCRIPT = str(Path(__file__).with_name("_child.py"))
# Where bwrap shows the child runner inside the sandbox (namespace mode reads it before pivoting).
CHILD_IN_SANDBOX = "/sandbox/child.py"
# Interpreter flags for every mode: isolated (no env, no user site), no site-packages, no .pyc
# writes, UTF-8 I/O without needing the host's locale files.
PYTHON_FLAGS = ("-I", "-S", "-B", "-X", "utf8")
# Third-party package directories that may sit inside a standard library directory.
_PACKAGE_DIRS = ("site-packages", "dist-packages")
_MAX_SYMLINKS = 40


@dataclass(frozen=True)
class ViewEntry:
    """One row: ``dir`` (empty, 0755), ``bind`` (host path, read-only, same place), ``symlink``, ``mask`` (empty, read-only)."""

    kind: Literal["dir", "bind", "symlink", "mask"]
    path: str
    target: str = ""


@dataclass(frozen=True)
class SandboxView:
    """The entries plus the loader search path that finds the bound libraries without /etc."""

    entries: tuple[ViewEntry, ...]
    library_path: str
    interpreter: str


@functools.cache
def interpreter() -> str:
    """The real interpreter binary (a virtual environment's ``python`` resolves to its base)."""
    exe = getattr(sys, "_base_executable", None) or sys.executable
    path = os.path.realpath(exe)
    if not os.path.isfile(path):
        raise RuntimeError(f"the interpreter {exe!r} does not resolve to a file; run xlm from a real Python install")
    return path


def _discover(python: str) -> dict:
    """Run the child in discovery mode on the host: its sys.path and loaded shared objects."""
    argv = [python, *PYTHON_FLAGS, CHILD_SCRIPT, "--loaded-objects"]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    try:
        out = subprocess.run(argv, capture_output=True, env=env, timeout=60, check=True, cwd="/").stdout
        return json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise RuntimeError(
            f"could not list the interpreter's libraries ({exc!r} {detail[-300:]!r}); "
            "run xlm with a glibc-based Linux Python (the sandbox reads the loader's link map)"
        ) from exc


def _is_under(path: str, roots: list[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one."""
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _parts(path: str) -> list[str]:
    """Path components without empty and ``.`` ones."""
    return [p for p in path.split("/") if p not in ("", ".")]


def path_chain(path: str) -> list[ViewEntry]:
    """Entries that make ``path`` resolve inside the sandbox as on the host: every symlink met on
    the way (as a symlink) and the final file or directory (as a read-only bind)."""
    entries: list[ViewEntry] = []
    todo, current, hops = _parts(path), "/", 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        if not os.path.islink(candidate):
            current = candidate
            continue
        hops += 1
        if hops > _MAX_SYMLINKS:
            raise RuntimeError(f"too many symlinks resolving {path!r}; fix the link loop on the host")
        target = os.readlink(candidate)
        entries.append(ViewEntry("symlink", candidate, target))
        todo = _parts(target) + todo
        if target.startswith("/"):
            current = "/"
    if not os.path.exists(current):
        raise RuntimeError(f"{path!r} does not exist on the host; reinstall the interpreter")
    return [*entries, ViewEntry("bind", current)]


def _add(entries: dict[str, ViewEntry], new: list[ViewEntry], dirs: list[str]) -> None:
    """Append ``new`` rows, skipping paths already present or inside a bound directory."""
    for entry in new:
        if entry.path in entries or _is_under(entry.path, dirs):
            continue
        entries[entry.path] = entry
        if entry.kind == "bind" and os.path.isdir(entry.path):
            dirs.append(entry.path)


@functools.cache
def sandbox_view() -> SandboxView:
    """Compute the view once per process (a discovery run of the child, ~50 ms)."""
    python = interpreter()
    found = _discover(python)
    entries: dict[str, ViewEntry] = {}
    dirs: list[str] = []
    stdlib = [p for p in found["path"] if p and os.path.exists(p)]
    for path in stdlib:
        _add(entries, path_chain(path), dirs)
    _add(entries, path_chain(python), dirs)
    lib_dirs: list[str] = []
    for obj in found["objects"]:
        if obj.startswith("/"):
            _add(entries, path_chain(obj), dirs)
            if not _is_under(obj, stdlib) and os.path.dirname(obj) not in lib_dirs:
                lib_dirs.append(os.path.dirname(obj))
    masks = [
        ViewEntry("mask", os.path.join(d, name))
        for d in stdlib
        for name in _PACKAGE_DIRS
        if os.path.isdir(os.path.join(d, name))
    ]
    rows = [*entries.values(), *masks]
    return SandboxView((*_parent_dirs(rows, dirs), *rows), ":".join(lib_dirs), python)


def _parent_dirs(rows: list[ViewEntry], bound_dirs: list[str]) -> list[ViewEntry]:
    """``dir`` rows for every directory leading to ``rows`` (outside bound ones), parents first."""
    parents: set[str] = set()
    for row in rows:
        parent = os.path.dirname(row.path)
        while parent != "/" and not _is_under(parent, bound_dirs):
            parents.add(parent)
            parent = os.path.dirname(parent)
    return [ViewEntry("dir", p) for p in sorted(parents, key=lambda p: (p.count("/"), p))]


def bwrap_view_args(view: SandboxView) -> list[str]:
    """bwrap arguments for the view, the child runner, /dev, /proc and a private /tmp."""
    args: list[str] = []
    for entry in view.entries:
        if entry.kind == "dir":
            args += ["--perms", "0755", "--dir", entry.path]
        elif entry.kind == "bind":
            args += ["--ro-bind", entry.path, entry.path]
        elif entry.kind == "symlink":
            args += ["--symlink", entry.target, entry.path]
        else:
            args += ["--perms", "0555", "--tmpfs", entry.path, "--remount-ro", entry.path]
    args += [
        "--perms",
        "0755",
        "--dir",
        os.path.dirname(CHILD_IN_SANDBOX),
        "--ro-bind",
        CHILD_SCRIPT,
        CHILD_IN_SANDBOX,
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--perms",
        "01777",
        "--tmpfs",
        "/tmp",
        "--remount-ro",
        "/",
        "--chdir",
        "/tmp",
    ]
    return args


def sandbox_env(view: SandboxView) -> dict[str, str]:
    """Environment inside the bwrap and namespace sandboxes: home and temp dir are the private /tmp."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LD_LIBRARY_PATH": view.library_path,
    }
