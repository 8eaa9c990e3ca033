"""Turn what the evaluation worker measured (:mod:`dpo_tui.core.eval.raw`) into an :class:`EvalReport`.

Every interval comes from :mod:`dpo_tui.core.eval.stats` with the one ``seed`` given here, so the same
measurements always give the same report, byte for byte.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal

from ..judge import Verdict, words
from .facts import fact_ok
from .raw import PairScore, PromptResult
from .report import (
    Behaviour,
    Change,
    EvalReport,
    EvalSettings,
    Facts,
    JudgeResult,
    PairAccuracy,
    PromptRow,
)
from .stats import (
    length_controlled_win_rate,
    lengths,
    paired_bootstrap_ci,
    proportion_ci,
    verdict_score,
    win_rate,
)

CI_LEVEL = 0.95
Side = Literal["tuned", "base", "tie"]
_WINNER: dict[str, Side] = {"a": "tuned", "b": "base", "tie": "tie"}


def change(base: Sequence[float], tuned: Sequence[float], seed: int = 0, level: float = CI_LEVEL) -> Change:
    """tuned − base of the means of paired values, with the paired bootstrap interval of the difference."""
    mb = statistics.fmean(base) if base else 0.0
    mt = statistics.fmean(tuned) if tuned else 0.0
    return Change(base=mb, tuned=mt, diff=mt - mb, rel=(mt - mb) / mb if mb else None,
                  ci=paired_bootstrap_ci(base, tuned, level=level, seed=seed), ci_level=level)


def _behaviour(prompts: list[PromptResult], seed: int) -> Behaviour:
    base_words = [float(words(p.base.text)) for p in prompts]
    tuned_words = [float(words(p.tuned.text)) for p in prompts]
    out = Behaviour(
        base=lengths([p.base for p in prompts]),
        tuned=lengths([p.tuned for p in prompts]),
        words=change(base_words, tuned_words, seed),
        tokens=change([float(p.base.tokens) for p in prompts], [float(p.tuned.tokens) for p in prompts], seed),
    )
    if any(p.base_samples or p.tuned_samples for p in prompts):
        out.sampled_base = lengths([a for p in prompts for a in p.base_samples])
        out.sampled_tuned = lengths([a for p in prompts for a in p.tuned_samples])
        # One value per prompt (its samples' mean) keeps the resampling unit the prompt, as for greedy answers.
        both = [p for p in prompts if p.base_samples and p.tuned_samples]
        out.sampled_words = change([statistics.fmean(words(a.text) for a in p.base_samples) for p in both],
                                   [statistics.fmean(words(a.text) for a in p.tuned_samples) for p in both], seed)
    return out


def _pairs(pairs: list[PairScore], source: str, beta: float | None) -> PairAccuracy:
    # The rewards already carry β; a run without a known β still gets its accuracy, with β shown as 0.
    right = sum(1 for s in pairs if s.margin > 0)
    return PairAccuracy(source=source, n=len(pairs), accuracy=right / len(pairs),
                        accuracy_ci=proportion_ci(right, len(pairs), CI_LEVEL),
                        mean_margin=statistics.fmean(s.margin for s in pairs),
                        beta=beta if beta is not None else 0.0)


def _judge(prompts: list[PromptResult], name: str, seed: int) -> JudgeResult:
    fields = win_rate([p.verdict for p in prompts], level=CI_LEVEL, seed=seed)
    outcomes: list[float] = []
    diffs: list[float] = []
    for p in prompts:
        score = verdict_score(p.verdict)
        if score is not None:
            outcomes.append(score)
            diffs.append(float(words(p.tuned.text) - words(p.base.text)))
    return JudgeResult(name=name, **fields, length_controlled_win_rate=length_controlled_win_rate(outcomes, diffs))


def _expected(p: PromptResult) -> str:
    if p.expected is None:
        raise ValueError(f"facts prompt without an expected answer: {p.prompt!r}")
    return p.expected


def _facts(facts: list[PromptResult], source: str, seed: int) -> Facts:
    base_ok = [1.0 if fact_ok(p.base.text, _expected(p), p.match) else 0.0 for p in facts]
    tuned_ok = [1.0 if fact_ok(p.tuned.text, _expected(p), p.match) else 0.0 for p in facts]
    return Facts(source=source, n=len(facts), base_correct=int(sum(base_ok)), tuned_correct=int(sum(tuned_ok)),
                 change=change(base_ok, tuned_ok, seed))


def _verdict(v: Verdict | None) -> tuple[Side | None, str]:
    if v is None:
        return None, ""
    return (_WINNER[v.winner] if v.winner else None), v.reason


def _row(p: PromptResult, fact: bool) -> PromptRow:
    verdict, reason = _verdict(p.verdict)
    row = PromptRow(prompt=p.prompt, base=p.base.text, tuned=p.tuned.text, base_words=words(p.base.text),
                    tuned_words=words(p.tuned.text), base_finish=p.base.finish, tuned_finish=p.tuned.finish,
                    verdict=verdict, verdict_reason=reason)
    if fact:
        expected = _expected(p)
        row.expected = expected
        row.base_ok = fact_ok(p.base.text, expected, p.match)
        row.tuned_ok = fact_ok(p.tuned.text, expected, p.match)
    return row


def build_report(*, eval_id: str, run_id: str, checkpoint: str, base_model: str, adapter_path: str,
                 beta: float | None, created_at: float, elapsed_s: float | None, device: str,
                 settings: EvalSettings, prompts: list[PromptResult], facts: list[PromptResult] | None,
                 facts_source: str | None, pairs: list[PairScore] | None, pairs_source: str | None,
                 judge_name: str | None, seed: int = 0) -> EvalReport:
    """The complete report of one tuned adapter against base.

    ``prompts`` are the behaviour prompts (greedy answers, sampled answers, and the judge's verdicts with
    ``a`` = tuned when ``judge_name`` is set); ``facts`` the facts prompts (greedy answers, ``expected`` and
    ``match`` set). A section with nothing measured (``pairs``/``facts`` None or empty, no judge) is None.
    The prompt rows list the behaviour prompts, then the facts prompts.
    """
    return EvalReport(
        id=eval_id, run_id=run_id, checkpoint=checkpoint, base_model=base_model, adapter_path=adapter_path,
        beta=beta, created_at=created_at, elapsed_s=elapsed_s, device=device, settings=settings,
        behaviour=_behaviour(prompts, seed),
        pairs=_pairs(pairs, pairs_source or "pairs", beta) if pairs else None,
        judge=_judge(prompts, judge_name, seed) if judge_name is not None else None,
        facts=_facts(facts, facts_source or "facts", seed) if facts else None,
        prompts=[_row(p, False) for p in prompts] + [_row(p, True) for p in facts or []],
    )
