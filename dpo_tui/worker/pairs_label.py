"""Pair labelling by a judge: the judge's :class:`~dpo_tui.core.pairs.labelling.Labeller`, and the whole
``pairs label`` pass when a judge (an endpoint or a reward model, which may need torch) takes part.

Two usable candidates: one :func:`~dpo_tui.core.judge.judge_both_orders` comparison (both orders, so a judge's
position bias becomes a tie). More than two: a round robin of ``judge_both_orders`` over every pair of candidates
(at most n·(n−1)/2 comparisons), a win scoring 1 and a tie 0.5 to each; the chosen answer is the highest score
and the rejected one the lowest (the first in file order among equals); equal scores are a tie. The first
comparison without a verdict ends the prompt's round ("no verdict": the prompt is dropped and counted, never
fatal), so a failing endpoint costs one comparison per prompt, not n·(n−1)/2.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any, Literal

from ..core.judge import Judge, Verdict, judge_both_orders
from ..core.pairs.labelling import (
    Candidate,
    Decision,
    Labeller,
    LabelResult,
    PromptRow,
    Rule,
    check_folder,
    label_folder,
)
from .judges import build_judge


def judge_labeller(judge: Judge) -> Labeller:
    counts = {"comparisons": 0, "no_verdict": 0}

    def both(row: PromptRow, a: Candidate, b: Candidate) -> Verdict:
        counts["comparisons"] += 1
        combined, _, _ = judge_both_orders(judge, row.judge_prompt, a.text, b.text)
        if combined.winner is None:
            counts["no_verdict"] += 1
        return combined

    def decide(row: PromptRow, cands: list[Candidate]) -> Decision:
        score = [0.0] * len(cands)
        for i, j in combinations(range(len(cands)), 2):
            verdict = both(row, cands[i], cands[j])
            if verdict.winner is None:
                return Decision("no_verdict", reason=verdict.reason)
            if verdict.winner == "a":
                score[i] += 1
            elif verdict.winner == "b":
                score[j] += 1
            else:
                score[i] += 0.5
                score[j] += 0.5
        best = max(range(len(cands)), key=score.__getitem__)
        worst = min(range(len(cands)), key=score.__getitem__)
        if score[best] == score[worst]:
            return Decision("tie", reason="the judge ranks the candidates the same")
        return Decision("pair", cands[best], cands[worst])

    def prefers(row: PromptRow, a: Candidate, b: Candidate) -> Literal["a", "b", "tie"] | None:
        return both(row, a, b).winner

    return Labeller(f"judge {judge.name}", decide, prefers, counts)


def run_label(folder: Path | str, *, by: str, rule: Rule | None = None, judge_spec: str | None = None,
              fmt: str | None = None) -> tuple[LabelResult, Any]:
    """``dpo-tui pairs label`` with a judge: checks the folder first (building a reward model costs seconds),
    builds the judge, labels, and closes the judge whatever happens."""
    folder = Path(folder)
    check_folder(folder, by)
    judge = build_judge(judge_spec) if judge_spec else None
    try:
        return label_folder(folder, by=by, rule=rule, judge=judge_labeller(judge) if judge else None, fmt=fmt)
    finally:
        close = getattr(judge, "close", None)
        if callable(close):
            close()
