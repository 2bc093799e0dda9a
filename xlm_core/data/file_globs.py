"""Expand ``data_files`` globs into a list of files, each real file once.

``**`` matches any number of directories, but directory symlinks are not followed unless asked
(``follow_symlinks=true``; then each real directory is entered once), so a link such as ``self -> .`` can
neither multiply the documents nor loop forever. Two names of one real file (a file symlink, a linked
directory) count once: its own path is kept when it is matched, else the first link to it.
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import os
import re
from collections.abc import Iterator

__all__ = ["expand_data_files", "glob_regex", "GLOB_CHARS"]

GLOB_CHARS = ("*", "?", "[")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a path glob as ``glob.glob(recursive=True)`` reads it: ``*`` and ``?`` stay inside one path
    component, ``**/`` spans directories, and a wildcard never matches a name starting with ``.``."""
    out, i = [], 0
    name = r"(?!\.)[^/]*"  # one path component, not hidden
    while i < len(pattern):
        start = i == 0 or pattern[i - 1] == "/"
        if start and pattern.startswith("**/", i):
            out.append(f"(?:{name}/)*")
            i += 3
        elif start and pattern.startswith("**", i) and i + 2 == len(pattern):
            out.append(f"(?:{name}/)*{name}")
            i += 2
        elif pattern[i] == "*":
            out.append(name if start else "[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/.]" if start else "[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _static_root(pattern: str) -> str:
    """The longest leading directory of ``pattern`` without glob characters (where the walk starts)."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts[:-1]:
        if any(c in part for c in GLOB_CHARS):
            break
        fixed.append(part)
    return os.sep.join(fixed) or (os.sep if pattern.startswith(os.sep) else ".")


def _walk(root: str, follow_symlinks: bool) -> Iterator[str]:
    """Every file below ``root``; directory links are entered only with ``follow_symlinks`` (each real
    directory once, so link cycles end)."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(directory), key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False) or (follow_symlinks and entry.is_symlink() and entry.is_dir()):
                    stack.append(entry.path)
                elif entry.is_file():
                    yield entry.path
            except OSError:
                continue


def _matches(pattern: str, follow_symlinks: bool) -> list[str]:
    if "**" not in pattern:
        return sorted(p for p in globlib.glob(pattern) if os.path.isfile(p))
    root = _static_root(pattern)
    regex = glob_regex(pattern)
    strip = 2 if root == "." and not pattern.startswith("./") else 0  # the walk's "./" prefix
    return sorted(p[strip:] for p in _walk(root, follow_symlinks) if regex.match(p[strip:]))


def expand_data_files(
    data_files: str | list[str], exclude: list[str] | None = None, follow_symlinks: bool = False
) -> list[str]:
    """Expand globs into a sorted file list, dropping ``exclude`` matches (fnmatch on the full path) and
    second names of the same real file.

    Plain paths are kept as given (a missing one is reported by the loader); a glob that matches nothing
    is kept too, so the error names the pattern.
    """
    patterns = [data_files] if isinstance(data_files, str) else list(data_files)
    files: list[str] = []
    for pattern in patterns:
        pattern = os.path.expanduser(str(pattern))
        if any(c in pattern for c in GLOB_CHARS):
            files.extend(_matches(pattern, follow_symlinks) or [pattern])
        else:
            files.append(pattern)
    if exclude:
        files = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in exclude)]
    unique: dict[str, str] = {}
    for f in files:  # one name per real file: its own path when it is among them, else the first link to it
        real = os.path.realpath(f) if os.path.exists(f) else f
        if real not in unique or os.path.abspath(f) == real:
            unique[real] = f
    return list(unique.values())
