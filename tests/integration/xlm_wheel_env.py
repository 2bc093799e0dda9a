"""Build wheels from this checkout and install them into throwaway virtual environments.

The venv is created without pip; it reuses the third-party packages of the running environment
through a ``.pth`` file pointing at a *filtered mirror* of its site-packages (symlinks to every
entry except xlm distributions and editable-install hooks), and its ``bin/pip`` runs the parent's pip.
So the venv imports xlm_core and families only from the wheels installed into it, and nothing is
downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What the xlm-core wheel is built from (the rest of the checkout is tests, docs, other distributions).
CORE_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "xlm_core", "configs")
# Entries of the parent site-packages the venv must not see: xlm distributions (ours and families scaffolded
# while developing) and editable hooks.
_OWN_PREFIXES = ("xlm_", "xlm-", "__editable__")
_COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "outputs", ".xlm_cache", ".pytest_cache"
)


def copy_sources(source: Path, dest: Path, only: tuple[str, ...] | None = None) -> Path:
    """Copy the distribution at ``source`` to ``dest`` without build outputs and caches; return ``dest``.

    ``only``: the top-level entries to copy (default: all).
    """
    if only is None:
        shutil.copytree(source, dest, ignore=_COPY_IGNORE)
        return dest
    dest.mkdir(parents=True)
    for name in only:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=_COPY_IGNORE)
        elif src.exists():
            shutil.copy(src, dest / name)
    return dest


def build_wheel(source: Path, workdir: Path, only: tuple[str, ...] | None = None) -> Path:
    """Build the wheel of the distribution at ``source`` (copied first, so the checkout stays clean).

    ``only``: the top-level entries to copy (default: all but build outputs and caches).
    """
    copy = copy_sources(source, workdir / f"src-{source.name}", only)
    out = workdir / "wheels"
    before = set(out.glob("*.whl")) if out.exists() else set()
    run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--skip-dependency-check",
            "--outdir",
            str(out),
            str(copy),
        ],
        cwd=workdir,
    )
    (wheel,) = set(out.glob("*.whl")) - before
    return wheel


def run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure (with ``check``) raise with its full output, for a readable test failure."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


@dataclass(frozen=True)
class Venv:
    """A temporary virtual environment holding our wheels."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        return Path(
            subprocess.check_output(
                [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
            ).strip()
        )

    def env(self) -> dict[str, str]:
        """The environment a user of this venv has (no PYTHONPATH, venv bin first on PATH)."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def run(self, args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a program of the venv (``xlm``, ``python``) by name from its ``bin``."""
        return run([str(self.root / "bin" / args[0]), *args[1:]], cwd=cwd, env=self.env(), check=check)

    def install(self, *wheels: Path) -> None:
        """Install wheels without dependencies (they come from the parent environment)."""
        self.run(
            [
                "python",
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--no-index",
                "--disable-pip-version-check",
                "-q",
                *map(str, wheels),
            ],
            cwd=self.root,
        )


def make_venv(workdir: Path) -> Venv:
    """A fresh venv that sees the parent's third-party packages but none of ours."""
    root = workdir / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=workdir)
    venv = Venv(root)
    mirror = workdir / "parent-site-packages"
    mirror.mkdir()
    parents = {Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["platlib"])}
    for parent in parents:
        for entry in parent.iterdir():
            if entry.name.startswith(_OWN_PREFIXES) or entry.suffix == ".pth" or (mirror / entry.name).exists():
                continue
            (mirror / entry.name).symlink_to(entry)
    (venv.site_packages / "_parent_site_packages.pth").write_text(f"{mirror}\n")
    pip = venv.root / "bin" / "pip"  # a venv without pip of its own runs the parent's, as `pip`
    pip.write_text(f'#!/bin/sh\nexec "{venv.python}" -m pip "$@"\n')
    pip.chmod(0o755)
    return venv
