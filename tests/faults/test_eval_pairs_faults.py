"""Faults an operator meets around evaluation and pair making: damaged job folders, hostile files, full or
read-only disks, a judge that is not there, two commands on one job at once.

Every case either pins behaviour that already holds or a fix; each records its outcome (suites "eval" and
"pairs") for ``scripts/reliability_report.py``. The contract everywhere: a clear one-line refusal (exit 2) or a
clean skip-and-count, never a traceback, never a half-written file, never a lost job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli import run_cli_inprocess
from tests.support.mounts import tmpfs
from tests.support.reliability import record_outcome

ROWS = [["Paris.", "The capital of France is Paris, on the Seine."],
        ["Four.", "Two plus two makes four, as every child learns."],
        ["Blue.", "The sky looks blue because of Rayleigh scattering."]]


def candidate_line(i: int, texts: list[str]) -> str:
    return json.dumps({
        "index": i, "line": i + 1, "prompt": f"Question {i}?", "messages": [{"role": "user", "content": f"Question {i}?"}],
        "conversational": False,
        "candidates": [{"id": f"c{k}", "text": t, "tokens": len(t.split()), "finish": "eos", "seed": k,
                        "instruction": None} for k, t in enumerate(texts)],
        "provenance": {"model": "sample", "adapter": None, "created_at": 0.0}}) + "\n"


def pairs_folder(d: Path, rows: list[list[str]] = ROWS, extra: bytes = b"") -> Path:
    """A pairs folder as ``pairs generate`` leaves it, with ``extra`` bytes spliced in after the first line."""
    d.mkdir(parents=True, exist_ok=True)
    lines = [candidate_line(i, t).encode() for i, t in enumerate(rows)]
    (d / "candidates.jsonl").write_bytes(lines[0] + extra + b"".join(lines[1:]))
    return d


def assert_clean(proc, code: int | None = None) -> str:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "internal error" not in out.lower(), out
    if code is not None:
        assert proc.returncode == code, f"exit {proc.returncode}\n{out}"
    return out


def no_temp_files(*folders: Path) -> None:
    for folder in folders:
        left = [p for p in folder.rglob("*") if p.name.endswith(".tmp")] if folder.is_dir() else []
        assert not left, left


# --- pairs label: hostile candidates and labels -----------------------------------------------------------
HOSTILE_CANDIDATES = {
    "wrong-types": json.dumps({"index": "x", "candidates": "nope", "messages": 3}).encode() + b"\n",
    "not-an-object": b"[1, 2, 3]\n",
    "candidates-wrong-types": json.dumps({"index": 7, "line": 8, "prompt": 5, "messages": [],
                                          "candidates": [{"id": 1, "text": None}, 4]}).encode() + b"\n",
    "invalid-utf8": b'{"index": 9, "prompt": "\xff\xfe bad"}\n',
    "ten-mb-line": b'{"index": 9, "prompt": "' + b"x" * (10 * 1024 * 1024) + b'"}\n',
    "nul-bytes": b"\x00\x00\x00\n",
    "infinite-tokens": candidate_line(8, ["a b", "c d e"]).replace('"tokens": 2', '"tokens": Infinity').encode(),
    "huge-seed": candidate_line(8, ["a b", "c d e"]).replace('"seed": 0', '"seed": 1e400').encode(),
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000 + b"\n",
}


@pytest.mark.parametrize("case", list(HOSTILE_CANDIDATES))
def test_pairs_label_skips_and_counts_a_hostile_candidates_line(tmp_path: Path, case: str) -> None:
    d = pairs_folder(tmp_path / "p", extra=HOSTILE_CANDIDATES[case])
    proc = run_cli_inprocess("pairs", "label", str(d), "--rule", "shorter", "--json")
    assert_clean(proc, 0)
    summary = json.loads(proc.stdout)
    assert summary["pairs"] == 3, summary
    print(summary)
    no_temp_files(d)
    record_outcome("pairs", f"label-candidates/{case}", "survived")
