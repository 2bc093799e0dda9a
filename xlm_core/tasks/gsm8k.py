"""GSM8K: gold parsing, prediction preprocessing, and a converter from calculator annotations to
TinyGSM-format ``simple_math_problem()`` programs (verified by running them in the sandbox).

Converter CLI::

    python -m xlm_core.tasks.gsm8k --input gsm8k/test.jsonl --output derived.jsonl
"""

from __future__ import annotations

import argparse
import ast
import builtins
import functools
import json
import keyword
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlm_core.run.fileio import write_jsonl
from xlm_core.tasks.code_exec.answers import normalize_sandbox_value, normalize_value, numbers_match
from xlm_core.tasks.code_exec.pool import run_programs
from xlm_core.tasks.code_exec.sandbox import SandboxLimits, resolve_isolation

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).with_name("data")
_GOLD = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)
_ANNOTATION = re.compile(r"<<([^<>]*?)=([^<>=]*)>>")
_NUM = re.compile(r"\d*\.?\d+")
_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.USub,
    ast.UAdd,
)
_STOPWORDS = frozenset(
    """a an the and or of to in on for per at by from with as is are was were be
    more less each that this than so then all which who it its his her their he she they we you
    our your has have had will would can could""".split()
)


def shipped_data_path(name: str) -> Path:
    """Path of a data file shipped in xlm_core/tasks/data (e.g. "gsm8k_test.jsonl")."""
    path = DATA_DIR / name
    if not path.is_file():
        available = sorted(p.name for p in DATA_DIR.glob("*.jsonl"))
        raise FileNotFoundError(f"no shipped data file {name!r}; available: {available}")
    return path


def read_jsonl(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (first ``limit`` rows when given)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def parse_gsm8k_gold(answer: str) -> str:
    """The number after ``####`` in a GSM8K ``answer`` field, commas removed ("1,234" -> "1234")."""
    m = _GOLD.search(answer or "")
    if m is None:
        raise ValueError(f"GSM8K answer has no '#### <number>' line: {answer[-80:]!r}")
    return m.group(1).replace(",", "").replace("$", "").strip()


def gsm8k_prompt(question: str) -> str:
    """Prompt text shared with TinyGSM: the stripped question plus a newline."""
    return question.strip() + "\n"


def gsm8k_preprocess_fn(example: Mapping[str, Any], tokenizer: Any, **kwargs: Any) -> dict[str, Any]:
    """GSM8K row -> prompt_ids (question), empty input_ids and the numeric gold ``answer`` string."""
    prompt_ids = tokenizer.encode(gsm8k_prompt(example["question"]), add_special_tokens=False)
    return {"prompt_ids": prompt_ids, "input_ids": [], "answer": parse_gsm8k_gold(example["answer"])}


def gsm8k_preprocess_batched_fn(examples: Mapping[str, list], tokenizer: Any, **kwargs: Any) -> dict[str, list]:
    """Batched ``gsm8k_preprocess_fn`` for ``datasets.map(batched=True)``."""
    prompts = [gsm8k_prompt(q) for q in examples["question"]]
    prompt_ids = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    return {
        "prompt_ids": prompt_ids,
        "input_ids": [[] for _ in prompts],
        "answer": [parse_gsm8k_gold(a) for a in examples["answer"]],
    }


# ---------------------------------------------------------------------------------------------
# Calculator annotations -> simple_math_problem() programs
# ---------------------------------------------------------------------------------------------


@dataclass
class ConversionReport:
    """Counts of what happened to each input row."""

    n_input: int = 0
    n_converted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def _clean_number(tok: str) -> str:
    if "." in tok:
        whole, frac = tok.split(".", 1)
        return f"{whole.lstrip('0') or '0'}.{frac or '0'}"
    return tok.lstrip("0") or "0"


def _step_reference(num: re.Match, steps: list[tuple[str, str, float]]) -> str:
    """The name of the latest step whose value is the matched number, else the number itself."""
    tok = _clean_number(num.group(0))
    for name, _, val in reversed(steps):
        if abs(val - float(tok)) < 1e-9:
            return name
    return tok


def _variable_name(after: str, used: set[str], index: int) -> str:
    """Name a step after the first content word following its result in the solution text."""
    sentence = re.split(r"\n|\.\s|[.!?]$", after, maxsplit=1)[0]
    words = re.findall(r"[A-Za-z]+", sentence[:60])
    base = next((w.lower() for w in words if len(w) > 2 and w.lower() not in _STOPWORDS), None)
    if base is None or keyword.iskeyword(base) or base in {"result", "simple_math_problem"} or hasattr(builtins, base):
        base = f"step_{index}"
    name, k = base, 2
    while name in used:
        name, k = f"{base}_{k}", k + 1
    used.add(name)
    return name


def _docstring(question: str) -> str:
    text = " ".join(question.strip().split()).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text += " "
    return f'"""{text}"""'


def convert_gsm8k_solution(question: str, answer: str) -> tuple[str | None, str | None]:
    """Build a ``simple_math_problem()`` program from a GSM8K solution's ``<<expr=value>>``
    annotations; earlier results are reused by name. Returns (code, None) or (None, reason)."""
    try:
        gold = normalize_value(parse_gsm8k_gold(answer))[0]
    except ValueError:
        return None, "no_gold"
    if gold is None:
        return None, "non_numeric_gold"
    steps: list[tuple[str, str, float]] = []  # (name, expression, annotated value)
    used: set[str] = set()
    for m in _ANNOTATION.finditer(answer):
        lhs, rhs = m.group(1).strip(), m.group(2).strip().replace(",", "")
        try:
            value = float(rhs)
        except ValueError:
            return None, "unparsable_annotation"
        lhs = lhs.replace(",", "").replace("$", "").replace("x", "*").replace("×", "*").replace("^", "**")
        expr = _NUM.sub(functools.partial(_step_reference, steps=steps), lhs)
        try:
            tree = ast.parse(expr, mode="eval")
        except SyntaxError:
            return None, "unparsable_annotation"
        if not all(isinstance(node, _ALLOWED_NODES) for node in ast.walk(tree)):
            return None, "unparsable_annotation"
        name = _variable_name(answer[m.end() :].lstrip("$ 0123456789.,"), used, len(steps) + 1)
        steps.append((name, ast.unparse(tree), value))
    if not steps:
        return None, "no_annotations"
    final = next((s for s in reversed(steps) if numbers_match(s[2], gold)), None)
    if final is None:
        return None, "gold_not_annotated"
    keep = steps[: steps.index(final) + 1]
    body = [f"    {name} = {expr}" for name, expr, _ in keep]
    body += [f"    result = {final[0]}", "    return result"]
    code = "def simple_math_problem() -> int:\n    " + _docstring(question) + "\n" + "\n".join(body) + "\n"
    return code, None


def convert_gsm8k_rows(
    rows: Iterable[dict[str, Any]],
    verify: bool = True,
    isolation: str = "auto",
    timeout_s: float = 5.0,
    num_workers: int | None = None,
) -> tuple[list[dict[str, Any]], ConversionReport]:
    """Convert GSM8K rows to TinyGSM rows ``{question, code, answer}``; with ``verify`` each
    program is executed in the sandbox and kept only if it returns the gold number."""
    report = ConversionReport()
    out: list[dict[str, Any]] = []
    for row in rows:
        report.n_input += 1
        code, reason = convert_gsm8k_solution(row["question"], row["answer"])
        if code is None:
            report.drop(reason or "unknown")
            continue
        out.append({"question": row["question"], "code": code, "answer": parse_gsm8k_gold(row["answer"])})
    if verify and out:
        mode = resolve_isolation(isolation)
        results = run_programs(
            [r["code"] for r in out], SandboxLimits(timeout_s=timeout_s), isolation=mode, num_workers=num_workers
        )
        kept = []
        for row, res in zip(out, results):
            pred = normalize_sandbox_value(res.value)[0] if res.ok else None
            if res.ok and numbers_match(pred, normalize_value(row["answer"])[0]):
                kept.append(row)
            else:
                report.drop("wrong_when_executed" if res.ok else f"exec_{res.status}")
        out = kept
    report.n_converted = len(out)
    return out, report


def main(argv: list[str] | None = None) -> int:
    """CLI: convert a GSM8K jsonl file into verified TinyGSM-format rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="GSM8K jsonl with question/answer fields")
    parser.add_argument("--output", required=True, help="output jsonl with question/code/answer")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N rows")
    parser.add_argument(
        "--isolation",
        default="auto",
        choices=["auto", "bwrap", "namespace", "none"],
        help="auto: bwrap or namespace, else an error; none: NO isolation, only when asked for",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip executing the programs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    rows, report = convert_gsm8k_rows(
        read_jsonl(args.input, args.limit), verify=not args.no_verify, isolation=args.isolation
    )
    write_jsonl(args.output, rows)
    print(json.dumps({"input": report.n_input, "converted": report.n_converted, "dropped": report.dropped}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
