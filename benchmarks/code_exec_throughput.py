"""Programs evaluated per second by Gsm8kCodeEval on the shipped GSM8K-derived programs, per
isolation mode available on this machine.

    python benchmarks/code_exec_throughput.py --n 200 [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from xlm_core.tasks.code_exec import Gsm8kCodeEval, probe_isolation
from xlm_core.tasks.code_exec.pool import default_num_workers
from xlm_core.tasks.gsm8k import read_jsonl, shipped_data_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of programs")
    parser.add_argument("--workers", type=int, default=None, help="pool size (default: CPU cores)")
    parser.add_argument("--modes", default="none,namespace,bwrap")
    args = parser.parse_args()
    rows = read_jsonl(shipped_data_path("tinygsm_gsm8k_test.jsonl"), limit=args.n)
    preds = [{"generated_text": r["code"], "answer": r["answer"]} for r in rows]
    workers = args.workers or default_num_workers()
    print(f"# {len(preds)} programs, {workers} workers, {os.cpu_count()} CPUs, euid={os.geteuid()}")
    for mode in args.modes.split(","):
        reason = probe_isolation(mode)
        if reason is not None:
            print(json.dumps({"isolation": mode, "available": False, "reason": reason}))
            continue
        ev = Gsm8kCodeEval(timeout_s=10, num_workers=workers, isolation=mode, allow_code_execution=True)
        start = time.perf_counter()
        _, metrics = ev.eval(preds)
        elapsed = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "isolation": mode,
                    "programs": len(preds),
                    "seconds": round(elapsed, 2),
                    "programs_per_s": round(len(preds) / elapsed, 1),
                    "accuracy": metrics["code_exec_accuracy"],
                }
            )
        )


if __name__ == "__main__":
    main()
