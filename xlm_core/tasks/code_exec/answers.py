"""Turn program return values and gold answers into numbers and compare them."""

from __future__ import annotations

import math
import re
from typing import Any

Number = int | float
FLOAT_TOLERANCE = 1e-3
_NUMERIC = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_numeric_string(text: str) -> tuple[Number | None, str | None]:
    """Parse strings such as "1,234", "$5", "5.0", "12%", "-3" -> (number, None) or (None, reason)."""
    s = text.strip().replace(",", "").replace("$", "").replace("%", "").strip().rstrip(".")
    if not _NUMERIC.fullmatch(s):
        return None, f"non-numeric string {text[:50]!r}"
    if re.fullmatch(r"[-+]?\d+", s):
        return int(s), None
    value = float(s)
    if not math.isfinite(value):
        return None, f"non-finite number {text[:50]!r}"
    return value, None


def normalize_value(value: Any) -> tuple[Number | None, str | None]:
    """Python value -> (int | float, None), or (None, reason) for bool/None/non-numeric."""
    if value is None:
        return None, "returned None"
    if isinstance(value, bool):
        return None, f"returned a bool ({value})"
    if isinstance(value, int):
        return value, None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, f"returned non-finite float {value!r}"
        return value, None
    if isinstance(value, str):
        return parse_numeric_string(value)
    return None, f"returned a non-numeric {type(value).__name__}"


def normalize_sandbox_value(desc: dict[str, Any] | None) -> tuple[Number | None, str | None]:
    """Decode the sandbox child's description of a return value (see _child._describe)."""
    if not desc:
        return None, "no return value"
    kind = desc.get("kind")
    if kind == "int":
        return int(desc["value"]), None
    if kind == "float":
        return normalize_value(float(desc["value"]))
    if kind == "str":
        return parse_numeric_string(desc["value"])
    if kind == "none":
        return None, "returned None"
    if kind == "bool":
        return None, f"returned a bool ({desc.get('repr')})"
    return None, f"returned a non-numeric {desc.get('type', 'value')}: {desc.get('repr', '')[:80]}"


def numbers_match(pred: Number | None, gold: Number | None, tol: float = FLOAT_TOLERANCE) -> bool:
    """Ints compare exactly; if either side is a float, within ``tol`` absolute."""
    if pred is None or gold is None:
        return False
    if isinstance(pred, int) and isinstance(gold, int):
        return pred == gold
    try:
        return abs(float(pred) - float(gold)) <= tol
    except OverflowError:
        return False
