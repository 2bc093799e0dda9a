"""docs/plugins.md cannot drift from what it describes. Its ```bash blocks run, in order, as one script in a
fresh venv, from a directory that holds only a copy of the xlm-core sources as ``xlm/`` (the checkout the page
starts from); its ```python, ```yaml and ```toml blocks are excerpts of what `xlm new-family mylm` writes or
of the core's configs; its file tree is exactly what `xlm new-family mylm` writes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from xlm_wheel_env import CORE_SOURCES, REPO, copy_sources, make_venv

from xlm_core.scaffold import render_files

PAGE = REPO / "docs" / "plugins.md"
FAMILY = "mylm"  # the name the page uses
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
# The script runs offline: pip takes every dependency from the parent environment the venv mirrors, and builds
# with its setuptools (pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation).
_OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def fenced(language: str) -> list[str]:
    """The bodies of the page's fenced blocks of ``language``, in page order."""
    return [body for lang, body in _FENCE.findall(PAGE.read_text()) if lang == language]


def _is_excerpt(lines: list[str], source: list[str]) -> bool:
    """Whether ``lines`` appear in ``source`` in this order (other lines may come between them)."""
    remaining = iter(source)
    return all(any(line == candidate for candidate in remaining) for line in lines)


@pytest.mark.parametrize("language", ["python", "yaml", "toml"])
def test_code_blocks_are_excerpts_of_the_scaffold_or_the_core_configs(language: str) -> None:
    sources = {f"xlm-{FAMILY}/{path}": text for path, text in render_files(FAMILY).items()}
    sources |= {str(p.relative_to(REPO)): p.read_text() for p in (REPO / "configs").rglob("*.yaml")}
    blocks = fenced(language)
    assert blocks, f"docs/plugins.md has no {language} block"
    for body in blocks:
        lines = [line.rstrip() for line in body.splitlines() if line.strip()]
        assert any(_is_excerpt(lines, text.splitlines()) for text in sources.values()), (
            f"this {language} block of docs/plugins.md is not an excerpt of the scaffold (xlm_core/scaffold/template, "
            f"rendered for '{FAMILY}') or of the core's configs/; copy it from there again:\n{body}"
        )


def test_the_file_tree_is_what_new_family_writes() -> None:
    (tree,) = [body for body in fenced("text") if body.startswith(f"xlm-{FAMILY}/\n")]
    assert {line.split()[0] for line in tree.splitlines()[1:]} == set(render_files(FAMILY))


@pytest.mark.integration
@pytest.mark.slow
def test_every_shell_command_of_the_page_runs(tmp_path: Path) -> None:
    venv = make_venv(tmp_path)
    home = tmp_path / "home"
    copy_sources(REPO, home / "xlm", only=CORE_SOURCES)
    script = "set -euo pipefail\n" + "".join(
        f"echo '>>> docs/plugins.md bash block {i}'\n{body}" for i, body in enumerate(fenced("bash"))
    )
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=home,
        env={**venv.env(), **_OFFLINE_PIP},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout (end)\n{proc.stdout[-6000:]}\n--- stderr (end)\n{proc.stderr[-6000:]}"
    )
    # What the walk-through promises is there: checkpoints, one evaluation, one generation, the family's wheel.
    run = home / "outputs" / f"star_easy_{FAMILY}"
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"best.ckpt", "last.ckpt"}
    (evaluation,) = (run / "eval").iterdir()
    assert "val/prediction/exact_match" in json.loads((evaluation / "metrics.json").read_text())
    (generation,) = (run / "generate").iterdir()
    (prompts,) = (generation / "predictions" / "predict" / "prompts").iterdir()
    (row,) = [json.loads(line) for line in prompts.read_text().splitlines()]
    assert isinstance(row["text"], str) and f"-> {row['text']!r}" in proc.stdout
    assert (home / "wheels" / f"xlm_{FAMILY}-0.1.0-py3-none-any.whl").is_file()
