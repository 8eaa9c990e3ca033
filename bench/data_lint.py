"""Dataset lint throughput, without tokenizing (docs/design/budgets.md: >= 50,000 rows/s).

Generates a JSONL file of short standard rows, then measures, in this process:

- baseline: read the file line by line and ``json.loads`` every line (the least any JSONL reader does);
- lint:     ``dpo_tui.core.data.check_data`` (stream, decode, parse, detect shape, normalize, lint,
            duplicate hashing, length statistics).

Prints rows/s for both, their ratio, and PASS/FAIL against the budget. Best of ``--repeat`` runs each.

    python bench/data_lint.py [--rows 200000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpo_tui.core.data import check_data

BUDGET_ROWS_PER_S = 50_000


def generate(path: Path, n: int, conversational: bool = False) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            q = f"What is {i} plus {i % 7}?"
            good, bad = f" It is {i + i % 7}.", f" It is {i * 3}, I think, but let me check again."
            if conversational:
                row = {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": good}],
                       "rejected": [{"role": "assistant", "content": bad}]}
            else:
                row = {"prompt": q, "chosen": good, "rejected": bad}
            fh.write(json.dumps(row) + "\n")


def baseline(path: Path) -> int:
    n = 0
    loads = json.loads
    with open(path, "rb") as fh:
        for line in fh:
            loads(line)
            n += 1
    return n


def best(fn, repeat: int) -> tuple[float, object]:
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("standard", "conversational"):
            path = Path(tmp) / f"{kind}.jsonl"
            generate(path, args.rows, conversational=kind == "conversational")
            t_base, n = best(lambda p=path: baseline(p), args.repeat)
            t_lint, report = best(lambda p=path: check_data(str(p)), args.repeat)
            assert report.ok and report.rows_usable == args.rows == n, report.render()
            results[kind] = {
                "rows": args.rows,
                "bytes": os.path.getsize(path),
                "baseline_rows_per_s": round(n / t_base),
                "lint_rows_per_s": round(args.rows / t_lint),
                "lint_vs_baseline": round(t_base / t_lint, 3),
            }
    ok = results["standard"]["lint_rows_per_s"] >= BUDGET_ROWS_PER_S
    if args.json:
        print(json.dumps({"budget_rows_per_s": BUDGET_ROWS_PER_S, "pass": ok, **results}))
    else:
        for kind, r in results.items():
            print(f"{kind:<15} {r['rows']:,} rows ({r['bytes'] / 1e6:.1f} MB): lint {r['lint_rows_per_s']:,} rows/s, "
                  f"json.loads baseline {r['baseline_rows_per_s']:,} rows/s, ratio {r['lint_vs_baseline']:.2f}")
        print(f"budget >= {BUDGET_ROWS_PER_S:,} rows/s (standard rows): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
