#!/usr/bin/env python
"""Write the API reference pages of the docs site (docs/api/*.md) from the modules' docstrings.

Each page says in plain Markdown what its modules hold (a table: module, first line of its docstring),
so it reads as text on GitHub too, then asks mkdocstrings to render every module (``::: module``).
``--check`` fails when a page differs from what this script would write (CI-friendly).

    python scripts/api_pages.py           # rewrite docs/api/
    python scripts/api_pages.py --check
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO, REPO / "xlm_plugins" / "arlm", REPO / "xlm_plugins" / "mlm", REPO / "xlm_plugins" / "mdlm"]

PAGES: dict[str, tuple[str, str, list[str]]] = {
    "core_plugins.md": (
        "Core: the plugin API",
        "What a family imports (`xlm_core.api`, versioned), how families are found and checked, and the "
        "contracts their components satisfy.",
        [
            "xlm_core.api",
            "xlm_core.plugin.version",
            "xlm_core.plugin.hookspecs",
            "xlm_core.plugin.manager",
            "xlm_core.plugin.components",
            "xlm_core.plugin.names",
            "xlm_core.plugin.protocols",
            "xlm_core.testing",
        ],
    ),
    "core_kit.md": (
        "Core: the family kit",
        "What every family needs and imports instead of copying: row checks for collators, the positions rule, "
        "batch checks, the metrics and their update functions, prediction rows, sampling, noise schedules, masking and "
        "unmasking orders, answer-slot and text-row layouts, packed-document fields.",
        [
            "xlm_core.kit.collate",
            "xlm_core.kit.positions",
            "xlm_core.kit.batch_checks",
            "xlm_core.kit.types",
            "xlm_core.kit.metrics",
            "xlm_core.kit.prediction",
            "xlm_core.kit.sampling",
            "xlm_core.kit.noise",
            "xlm_core.kit.masking",
            "xlm_core.kit.unmasking",
            "xlm_core.kit.answer_slot",
            "xlm_core.kit.text_rows",
            "xlm_core.kit.token_nll",
            "xlm_core.kit.documents",
            "xlm_core.kit.renamed",
        ],
    ),
    "core_modules.md": (
        "Core: modules",
        "The neural-network building blocks shared by the families.",
        [
            "xlm_core.modules.rotary",
            "xlm_core.modules.transformer",
            "xlm_core.modules.network",
            "xlm_core.modules.bidirectional",
            "xlm_core.modules.kv_cache",
            "xlm_core.modules.decode_step",
            "xlm_core.modules.model_kit",
            "xlm_core.modules.position_aids",
            "xlm_core.modules.linear_cross_entropy",
        ],
    ),
    "core_training.md": (
        "Core: training and jobs",
        "The Lightning harness every family trains with, what a job resolves once and builds, and the jobs the "
        "`xlm` command dispatches to.",
        [
            "xlm_core.training.harness",
            "xlm_core.training.settings",
            "xlm_core.training.runtime",
            "xlm_core.training.optim",
            "xlm_core.training.precision",
            "xlm_core.training.reported_metrics",
            "xlm_core.training.callbacks",
            "xlm_core.training.loggers",
            "xlm_core.jobs",
            "xlm_core.jobs.common",
            "xlm_core.jobs.train",
            "xlm_core.jobs.eval",
            "xlm_core.jobs.generate",
            "xlm_core.jobs.export",
            "xlm_core.jobs.prepare_data",
            "xlm_core.jobs.name",
        ],
    ),
    "core_run.md": (
        "Core: run directories",
        "A run directory and what keeps it truthful: its files, atomic writes, the lock, checkpoints, resumes "
        "and the report over many runs.",
        [
            "xlm_core.run.files",
            "xlm_core.run.fileio",
            "xlm_core.run.names",
            "xlm_core.run.lock",
            "xlm_core.run.checkpoints",
            "xlm_core.run.checkpoint_callbacks",
            "xlm_core.run.callbacks",
            "xlm_core.run.resume",
            "xlm_core.run.invocation",
            "xlm_core.run.report",
        ],
    ),
    "core_cli.md": (
        "Core: command line and configs",
        "The `xlm` command, its subcommands, one-line errors, and the Hydra config helpers behind them.",
        [
            "xlm_core.cli.main",
            "xlm_core.cli.commands",
            "xlm_core.cli.errors",
            "xlm_core.errors",
            "xlm_core.config.compose",
            "xlm_core.config.checks",
            "xlm_core.config.targets",
            "xlm_core.config.aliases",
            "xlm_core.config.tools",
            "xlm_core.scaffold",
        ],
    ),
    "core_data.md": (
        "Core: data",
        "Datasets, their cache, packing, tokenizers and the datamodule (`xlm_core.data`).",
        [
            "xlm_core.data.dataset_manager",
            "xlm_core.data.file_globs",
            "xlm_core.data.packing",
            "xlm_core.data.text_corpus",
            "xlm_core.data.datamodule",
            "xlm_core.data.padding",
            "xlm_core.data.simple_tokenizer",
            "xlm_core.data.bpe_tokenizer",
            "xlm_core.data.auto_tokenizer",
            "xlm_core.data.hub",
        ],
    ),
    "arlm.md": (
        "ARLM family (`xlm-arlm`)",
        "The auto-regressive family: a causal rotary Transformer, its loss, collators, KV-cache predictor and "
        "the Hugging Face exporter. Its metrics are the kit's.",
        [
            "xlm_arlm.model_arlm",
            "xlm_arlm.loss_arlm",
            "xlm_arlm.collators_arlm",
            "xlm_arlm.predictor_arlm",
            "xlm_arlm.types_arlm",
            "xlm_arlm.export_hf",
            "xlm_arlm.plugin",
        ],
    ),
    "mlm.md": (
        "MLM family (`xlm-mlm`)",
        "The masked family: a bidirectional rotary Transformer, the masked-token loss, answer-slot collators "
        "and the iterative-unmasking predictor. Its metrics are the kit's.",
        [
            "xlm_mlm.model_mlm",
            "xlm_mlm.loss_mlm",
            "xlm_mlm.collators_mlm",
            "xlm_mlm.predictor_mlm",
            "xlm_mlm.types_mlm",
            "xlm_mlm.plugin",
        ],
    ),
    "mdlm.md": (
        "MDLM family (`xlm-mdlm`)",
        "The masked diffusion family: the bidirectional rotary Transformer with the SUBS output, collators that "
        "noise rows to a time drawn from a noise schedule, the continuous-time NELBO loss and the ancestral, "
        "cached and confidence-ordered samplers. Its metrics are the kit's.",
        [
            "xlm_mdlm.model_mdlm",
            "xlm_mdlm.loss_mdlm",
            "xlm_mdlm.collators_mdlm",
            "xlm_mdlm.predictor_mdlm",
            "xlm_mdlm.types_mdlm",
            "xlm_mdlm.plugin",
        ],
    ),
}


def module_file(module: str) -> Path | None:
    parts = module.split(".")
    for root in SOURCES:
        for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate
    return None


def summary(module: str) -> str:
    """The first sentence-line of a module's docstring."""
    path = module_file(module)
    if path is None:
        raise SystemExit(f"api_pages.py: module {module} not found; fix PAGES")
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.replace("|", "\\|")


def render(title: str, intro: str, modules: list[str]) -> str:
    lines = [f"# {title}", "", intro, "", "| module | what it holds |", "|---|---|"]
    lines += [f"| `{m}` | {summary(m)} |" for m in modules]
    lines += [""]
    for m in modules:
        lines += [f"::: {m}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a page is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, (title, intro, modules) in PAGES.items():
        if modules[0].startswith("xlm_mdlm") and module_file(modules[0]) is None:
            continue
        path = REPO / "docs" / "api" / name
        text = render(title, intro, modules)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/api_pages.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
