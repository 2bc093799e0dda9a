"""The API reference pages read as text: each lists its modules with a one-line summary, kept in sync."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_api_pages_are_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "api_pages.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_every_core_module_is_on_an_api_page() -> None:
    listed = "\n".join(p.read_text() for p in (REPO / "docs" / "api").glob("*.md"))
    modules = []
    for path in sorted((REPO / "xlm_core").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        name = ".".join(parts)
        if any(p.startswith("_") for p in parts) or ".tasks" in name or ".testing." in name or name == "xlm_core":
            continue
        if rel.name == "__init__" and name not in ("xlm_core.jobs", "xlm_core.scaffold", "xlm_core.testing"):
            continue
        modules.append(name)
    missing = [m for m in modules if f"::: {m}\n" not in listed]
    assert not missing, f"not on any docs/api page: {missing} (add them to scripts/api_pages.py)"
