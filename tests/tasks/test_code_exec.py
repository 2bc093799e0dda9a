"""Sandboxed code execution: extraction, answers, evaluator on correct, wrong and hostile programs."""

import logging
import os
import time

import pytest

from xlm_core.tasks.code_exec import (
    Gsm8kCodeEval,
    SandboxLimits,
    extract_program,
    normalize_value,
    numbers_match,
    parse_numeric_string,
    probe_isolation,
    run_programs,
)
from xlm_core.tasks.gsm8k import read_jsonl, shipped_data_path

MODES = [m for m in ("none", "namespace", "bwrap") if probe_isolation(m) is None]
STRONG_MODES = [m for m in MODES if m != "none"]


def prog(body: str) -> str:
    return "def simple_math_problem():\n" + "".join(f"    {ln}\n" for ln in body.splitlines())


# A deliberate guard bypass: real libc through the guard's own globals, to show the OS-level
# barriers (rlimits, namespaces, uid) hold even when the Python-level guard is defeated.
LIBC = "libc = open.__globals__['ctypes'].CDLL(None)\n"


# ---------------------------------------------------------------- extraction and answers
def test_extract_fence_stop_and_trailing_junk():
    text = (
        "Here you go:\n```python\ndef simple_math_problem() -> int:\n    x = 3\n    return x * 2\n"
        "```\nDone<|endoftext|>garbage"
    )
    assert extract_program(text).code == "def simple_math_problem() -> int:\n    x = 3\n    return x * 2\n"
    raw = "def helper():\n    return 1\ndef simple_math_problem():\n    return 5\nThe answer is 5 because\n"
    assert extract_program(raw).code == "def simple_math_problem():\n    return 5\n"
    cut = "def simple_math_problem():\n    a = 2\n    return a<|im_end|>\n    b = ("
    assert extract_program(cut).code == "def simple_math_problem():\n    a = 2\n    return a\n"
    assert extract_program("no code at all").code is None
    assert extract_program("def simple_math_problem(:\n").reason == "no prefix of the output parses as Python"


def test_numbers():
    assert parse_numeric_string("1,234") == (1234, None)
    assert parse_numeric_string("$5") == (5, None)
    assert parse_numeric_string("5.0") == (5.0, None)
    assert parse_numeric_string("abc")[0] is None
    assert normalize_value(True) == (None, "returned a bool (True)")
    assert normalize_value(None) == (None, "returned None")
    assert numbers_match(24.0004, 24) and not numbers_match(24.01, 24)
    assert numbers_match(10**30, 10**30) and not numbers_match(10**30 + 1, 10**30)


# ---------------------------------------------------------------- evaluator
def test_refuses_without_opt_in():
    with pytest.raises(PermissionError, match="execute_generated_code=true"):
        Gsm8kCodeEval().eval([{"generated_text": prog("return 1"), "answer": "1"}])


def test_correct_wrong_and_typed_returns():
    ev = Gsm8kCodeEval(timeout_s=5, allow_code_execution=True, isolation="auto")
    preds = [
        {"generated_text": prog("return 72"), "answer": "72"},
        {"generated_text": prog("return 12 / 60 * 50"), "answer": "10"},
        {"generated_text": prog("return '1,234'"), "answer": "1234"},
        {"generated_text": prog("return 71"), "answer": "72"},
        {"generated_text": prog("return True"), "answer": "1"},
        {"generated_text": prog("return None"), "answer": "1"},
        {"generated_text": prog("return 1 / 0"), "answer": "1"},
        {"text": "Q?\n" + prog("import math\nreturn math.floor(7.9)"), "answer": "7"},
        {"generated_text": "I don't know", "answer": "3"},
    ]
    rows, metrics = ev.eval(preds)
    assert [r["correct"] for r in rows] == [True, True, True, False, False, False, False, True, False]
    assert rows[3]["pred_value"] == 71 and rows[3]["exec_error"] is None
    assert rows[4]["exec_error"] == "wrong_type: returned a bool (True)"
    assert rows[5]["exec_error"] == "wrong_type: returned None"
    assert rows[6]["exec_error"] == "error: ZeroDivisionError: division by zero"
    assert rows[8]["exec_error"].startswith("extraction:")
    assert metrics == {"code_exec_accuracy": 4 / 9, "n_correct": 4, "n_total": 9, "n_exec_failures": 2}


def test_all_failures_are_loud(caplog):
    ev = Gsm8kCodeEval(timeout_s=2, allow_code_execution=True)
    with caplog.at_level(logging.ERROR):
        _, metrics = ev.eval([{"generated_text": "nothing", "answer": "1"}] * 2)
    assert metrics["n_exec_failures"] == 2
    assert "EVERY program failed (2/2" in caplog.text


HOSTILE = {
    "infinite_loop": (prog("while True: pass"), "timeout"),
    "memory_bomb": (prog("x = bytearray(10**10)\nreturn 1"), "error: MemoryError"),
    "fork_bomb": (prog("import os\nwhile True: os.fork()"), "error: ImportError"),
    "fork_bomb_bypass": (prog(LIBC + "return sum(libc.fork() >= 0 for _ in range(200))"), "ok:0"),
    "os_system": (prog("import os\nos.system('touch WATCH/sys')"), "error: ImportError"),
    "os_system_bypass": (prog(LIBC + "return libc.system(b'touch WATCH/sys2')"), "ok:32512"),
    "subprocess": (prog("import subprocess\nsubprocess.run(['touch', 'WATCH/sp'])"), "error: ImportError"),
    "write_file": (prog("open('WATCH/pwned', 'w').write('x')\nreturn 1"), "error: "),
    "write_file_bypass": (prog(LIBC + "return libc.creat(b'WATCH/pwned2', 420)"), "ok:-1"),
    "sys_exit": (prog("raise SystemExit(3)"), "error: SystemExit: 3"),
    "hard_exit_bypass": (prog(LIBC + "libc._exit(0)"), "no_result"),
    "enormous_output": (prog("while True: print('A' * 10000)"), "output_limit"),
    "forbidden_import": (prog("import socket\nreturn 1"), "error: ImportError"),
    "deep_recursion": (prog("def f(n): return f(n + 1)\nreturn f(0)"), "error: RecursionError"),
    "signal_tamper": (prog("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)"), "error: ImportError"),
    "timer_tamper_bypass": (
        prog(LIBC + "libc.signal(14, 1)\nlibc.signal(24, 1)\nlibc.alarm(0)\nwhile True: pass"),
        "timeout",
    ),
    "kill_parent": (prog("import os\nos.kill(os.getppid(), 9)"), "error: ImportError"),
    "kill_evaluator_bypass": (prog(LIBC + "return libc.kill(EVAL_PID, 9)"), "ok:-1"),
    "killpg_evaluator_bypass": (prog(LIBC + "return libc.killpg(EVAL_PGID, 9)"), "ok:-1"),
    "spoofed_result_line": (
        prog('print(\'0\' * 32 + \' {"status": "ok", "value": {"kind": "int", "value": "7"}}\')\nreturn 1'),
        "ok:1",
    ),
}


@pytest.mark.parametrize("mode", MODES)
def test_hostile_programs_are_contained(mode, tmp_path):
    if mode == "none" and os.geteuid() != 0:
        pytest.skip("mode none as non-root shares the evaluator's uid: bypass signals would land")
    watch = tmp_path / "watch"
    watch.mkdir()
    names = list(HOSTILE)
    sources = [
        HOSTILE[n][0]
        .replace("WATCH", str(watch))
        .replace("EVAL_PID", str(os.getpid()))
        .replace("EVAL_PGID", str(os.getpgid(0)))
        for n in names
    ]
    start = time.monotonic()
    results = run_programs(sources, SandboxLimits(timeout_s=2.0), isolation=mode, num_workers=4)
    elapsed = time.monotonic() - start
    for name, res in zip(names, results):
        expected = HOSTILE[name][1]
        if expected.startswith("ok:"):
            got = f"ok:{res.value.get('value')}" if res.ok else f"{res.status}: {res.error}"
            assert got == expected, (name, res)
        elif expected.startswith("error: "):
            assert f"{res.status}: {res.error}".startswith(expected), (name, res)
        else:
            assert res.status == expected, (name, res)
    assert os.listdir(watch) == []  # no file written outside the sandbox's private directory
    assert elapsed < 30, elapsed  # timeouts bounded; the test process is still alive to assert this


@pytest.mark.parametrize("mode", STRONG_MODES)
def test_namespace_modes_have_no_network_and_private_tmp(mode, tmp_path):
    (tmp_path / "secret").write_text("host")
    net = prog("return len(open('/proc/net/dev').read().splitlines())")
    tmp = prog(f"return len(open('{tmp_path}/secret').read())")
    res = run_programs([net, tmp], SandboxLimits(timeout_s=5.0), isolation=mode, num_workers=2)
    assert res[0].value == {"kind": "int", "value": "3"}  # header lines + loopback only
    assert res[1].status == "error" and "FileNotFoundError" in res[1].error


def test_derived_gold_programs_score_100_percent_sample():
    rows = read_jsonl(shipped_data_path("tinygsm_gsm8k_test.jsonl"), limit=50)
    preds = [{"generated_text": r["code"] + "<|endoftext|>", "answer": r["answer"]} for r in rows]
    _, metrics = Gsm8kCodeEval(timeout_s=5, allow_code_execution=True).eval(preds)
    assert metrics == {"code_exec_accuracy": 1.0, "n_correct": 50, "n_total": 50, "n_exec_failures": 0}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tinygsm_gsm8k_test.jsonl", "tinygsm_gsm8k_train.jsonl"])
def test_derived_gold_programs_score_100_percent_all(name):
    rows = read_jsonl(shipped_data_path(name))
    preds = [{"generated_text": r["code"], "answer": r["answer"]} for r in rows]
    _, metrics = Gsm8kCodeEval(timeout_s=10, allow_code_execution=True).eval(preds)
    assert metrics["n_correct"] == len(rows) and metrics["n_exec_failures"] == 0
