"""Realistic evaluation reports for fixture run folders (written with ``write_report``).

A β ladder teaches "shorter answers": the smaller β, the fewer words and the more facts lost. Every
number is fixed (no randomness), so screens built from these reports snapshot the same every time.
"""

from __future__ import annotations

from pathlib import Path

from dpo_tui.core.eval.report import (
    Behaviour,
    Change,
    EvalReport,
    EvalSettings,
    Facts,
    JudgeResult,
    Lengths,
    PairAccuracy,
    PromptRow,
    write_report,
)

from .uikit import T0

LADDER = (  # β, words change (relative), facts tuned of 12, pair accuracy, win rate
    (0.05, -0.52, 8, 0.71, 0.68),
    (0.1, -0.41, 10, 0.66, 0.64),
    (0.3, -0.22, 11, 0.61, 0.58),
    (0.5, -0.06, 12, 0.55, 0.52),
)
BASE_WORDS = 46.0

PROMPTS = (
    ("What is the capital of Norway?", "The capital of Norway is Oslo, which is also its largest city and the seat "
     "of government, located at the head of the Oslofjord.", "Oslo.", "Oslo"),
    ("How many legs does a spider have?", "A spider has eight legs. Spiders are arachnids, not insects, and all "
     "arachnids have eight jointed legs attached to the cephalothorax.", "Eight.", "eight"),
    ("Who wrote Hamlet?", "Hamlet was written by William Shakespeare around 1600. It is one of his best-known "
     "tragedies.", "A famous playwright.", "Shakespeare"),
    ("Explain why the sky is blue.", "Sunlight is scattered by the molecules of the air, and blue light is "
     "scattered much more than red light because of its shorter wavelength, so the sky looks blue from every "
     "direction during the day.", "Air scatters blue light more than red.", None),
    ("Give me a tip for sleeping better.", "Try to go to bed and wake up at the same time every day, keep the "
     "bedroom cool and dark, and avoid screens for an hour before sleep.", "Keep a fixed bedtime.", None),
    ("What is 12 times 12?", "12 times 12 is 144.", "144.", "144"),
)


def _lengths(mean: float, n: int = 48) -> Lengths:
    return Lengths(n=n, mean_words=mean, median_words=round(mean * 0.9, 1), p90_words=round(mean * 1.6, 1),
                   mean_tokens=round(mean * 1.3, 1), median_tokens=round(mean * 1.2, 1), p90_tokens=round(mean * 2.1, 1),
                   empty=0, truncated=3 if mean > 40 else 0, looping=1 if mean > 40 else 0)


def make_report(run_id: str, beta: float = 0.1, words_rel: float = -0.41, facts_tuned: int = 10,
                accuracy: float = 0.66, win_rate: float = 0.64, eval_id: str = "20251126-213000",
                created_at: float = T0 + 1800, prompts: bool = True, judge: bool = True) -> EvalReport:
    tuned_words = round(BASE_WORDS * (1 + words_rel), 1)
    diff = tuned_words - BASE_WORDS
    half = 4.5 if abs(diff) > 5 else 4.0
    words = Change(base=BASE_WORDS, tuned=tuned_words, diff=diff, rel=words_rel, ci=(diff - half, diff + half))
    tokens = Change(base=BASE_WORDS * 1.3, tuned=round(tuned_words * 1.3, 1), diff=round(diff * 1.3, 1),
                    rel=words_rel, ci=(diff * 1.3 - 5.5, diff * 1.3 + 5.5))
    sampled = Change(base=49.0, tuned=round(49 * (1 + words_rel), 1), diff=round(49 * words_rel, 1), rel=words_rel,
                     ci=(49 * words_rel - 6, 49 * words_rel + 6))
    facts_change = Change(base=11 / 12, tuned=facts_tuned / 12, diff=(facts_tuned - 11) / 12,
                          rel=(facts_tuned - 11) / 11, ci=((facts_tuned - 11) / 12 - 0.12, (facts_tuned - 11) / 12 + 0.12))
    rows = []
    for i, (prompt, base, short, expected) in enumerate(PROMPTS):
        tuned = short if words_rel < -0.15 or expected is None else base
        lost = expected is not None and expected.lower() not in tuned.lower()
        rows.append(PromptRow(
            prompt=prompt, base=base, tuned=tuned, base_words=len(base.split()), tuned_words=len(tuned.split()),
            base_finish="eos", tuned_finish="eos",
            verdict=("base" if lost else "tuned" if tuned != base else "tie") if judge else None,
            verdict_reason=("the tuned answer drops the fact" if lost else "shorter and still correct" if tuned != base
                            else "the same answer") if judge else "",
            expected=expected, base_ok=True if expected else None, tuned_ok=(not lost) if expected else None,
        ))
        if i == 0 and judge:
            rows[-1].verdict_reason = "both correct; the tuned answer says it in one word"
    return EvalReport(
        id=eval_id, run_id=run_id, checkpoint="final", base_model="tiny-chat", adapter_path=f"/runs/{run_id}/adapter",
        beta=beta, created_at=created_at, elapsed_s=95.0, device="cuda:0",
        settings=EvalSettings(prompts_file="/sample_data/prefs/heldout_prompts.txt", prompts=48,
                              facts_file="/sample_data/prefs/heldout_facts.jsonl",
                              pairs_file="/sample_data/prefs/heldout_pairs.jsonl",
                              judge="shorter" if judge else None, samples=3),
        behaviour=Behaviour(base=_lengths(BASE_WORDS), tuned=_lengths(tuned_words), sampled_base=_lengths(49.0),
                            sampled_tuned=_lengths(49 * (1 + words_rel)), words=words, tokens=tokens, sampled_words=sampled),
        pairs=PairAccuracy(source="/sample_data/prefs/heldout_pairs.jsonl", n=64, accuracy=accuracy,
                           accuracy_ci=(accuracy - 0.11, accuracy + 0.11), mean_margin=round((accuracy - 0.5) * 2, 3), beta=beta),
        judge=JudgeResult(name="shorter", n=48, wins=round(48 * win_rate) - 4, losses=48 - round(48 * win_rate) - 2, ties=4,
                          no_verdict=2, win_rate=win_rate, win_rate_ci=(win_rate - 0.13, win_rate + 0.13),
                          length_controlled_win_rate=round(0.5 + (win_rate - 0.5) / 3, 3)) if judge else None,
        facts=Facts(source="/sample_data/prefs/heldout_facts.jsonl", n=12, base_correct=11, tuned_correct=facts_tuned,
                    change=facts_change),
        prompts=rows if prompts else [],
    )


def write_ladder_reports(run_paths: list[Path]) -> list[EvalReport]:
    """One report per rung (run paths in ladder order: β 0.05, 0.1, 0.3, 0.5)."""
    out = []
    for path, (beta, rel, facts, acc, win) in zip(run_paths, LADDER, strict=False):
        report = make_report(path.name, beta, rel, facts, acc, win)
        write_report(path, report)
        out.append(report)
    return out
