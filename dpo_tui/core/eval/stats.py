"""The arithmetic of an evaluation report: lengths, bootstrap and Wilson intervals, judge win rates.

Pure standard library (``random``, ``statistics``, ``math``) so the numbers are the same on every machine
and testable without a model. Definitions used throughout:

* words: :func:`dpo_tui.core.judge.words` (whitespace-separated), the same measure rules and pair
  labelling use;
* median: :func:`statistics.median`; p90: ``statistics.quantiles(n=10, method="inclusive")[-1]`` (linear
  interpolation between the sorted values, never outside their range; one value is its own p90);
* a bootstrap interval is the percentile interval of the resampled means, from a seeded
  :class:`random.Random`, so a report is reproducible for a given seed.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..judge import Verdict, words
from .raw import Answer
from .report import Lengths

LOOP_NGRAM = 4
LOOP_MIN_REPEATS = 3
LC_MIN_DECIDED = 5
"""Fewer decided verdicts than this give no length-controlled win rate: two parameters need some data."""
LC_RIDGE = 0.01
"""L2 penalty of the length-controlled fit: keeps a perfectly separable judge (tuned wins exactly when
longer) finite, and is small enough to move a non-separable fit by well under a point."""

_WORD_EDGES = re.compile(r"^\W+|\W+$")


def _quantile90(values: Sequence[float]) -> float:
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=10, method="inclusive")[-1])


def _mean(values: Sequence[float]) -> float:
    return float(statistics.fmean(values)) if values else 0.0


def is_looping(text: str, n: int = LOOP_NGRAM, min_repeats: int = LOOP_MIN_REPEATS) -> bool:
    """True when some run of ``n`` consecutive words occurs ``min_repeats`` or more times in ``text``.

    Words are compared lower-cased with leading/trailing punctuation removed, and occurrences may overlap
    (``the the the the the the`` holds ``the the the the`` three times). Three occurrences, not two, because a
    normal verbose answer says its point twice ("…is Oslo. So, once again, the capital is Oslo."); a model
    stuck in a loop repeats a sentence or a word until it hits the token limit.
    """
    tokens = [w for w in (_WORD_EDGES.sub("", t).lower() for t in text.split()) if w]
    if n <= 0 or len(tokens) < n:
        return False
    counts = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return max(counts.values()) >= min_repeats


def lengths(answers: Sequence[Answer]) -> Lengths:
    """Length statistics of a set of answers (all zero for none)."""
    if not answers:
        return Lengths()
    w = [float(words(a.text)) for a in answers]
    t = [float(a.tokens) for a in answers]
    return Lengths(
        n=len(answers),
        mean_words=_mean(w), median_words=float(statistics.median(w)), p90_words=_quantile90(w),
        mean_tokens=_mean(t), median_tokens=float(statistics.median(t)), p90_tokens=_quantile90(t),
        empty=sum(1 for x in w if x == 0),
        truncated=sum(1 for a in answers if a.finish == "length"),
        looping=sum(1 for a in answers if is_looping(a.text)),
    )


def _percentile_interval(means: list[float], level: float) -> tuple[float, float]:
    means.sort()
    k = int(math.floor((1.0 - level) / 2.0 * len(means)))
    return means[k], means[len(means) - 1 - k]


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (each value one resampling unit)."""
    if not values:
        return (0.0, 0.0)
    if len(values) == 1:
        return (float(values[0]), float(values[0]))
    rng = random.Random(seed)
    n = len(values)
    means = [math.fsum(rng.choices(values, k=n)) / n for _ in range(max(1, n_boot))]
    return _percentile_interval(means, level)


def paired_bootstrap_ci(base: Sequence[float], tuned: Sequence[float], n_boot: int = 2000,
                        level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval of mean(tuned − base), resampling prompts: each prompt keeps its base and tuned value together,
    so what varies from prompt to prompt (some questions need long answers) cancels out."""
    if len(base) != len(tuned):
        raise ValueError(f"paired values differ in length: {len(base)} base, {len(tuned)} tuned")
    return bootstrap_mean_ci([float(t) - float(b) for b, t in zip(base, tuned, strict=True)], n_boot, level, seed)


def proportion_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: sensible at 0 and n (unlike the normal approximation);
    (0, 1) when there is nothing to count."""
    if n <= 0:
        return (0.0, 1.0)
    z = statistics.NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 and n the bound is exactly 0 or 1; the formula leaves a rounding crumb there.
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return lo, hi


_SCORE = {"a": 1.0, "tie": 0.5, "b": 0.0}


def verdict_score(verdict: Verdict | None) -> float | None:
    """1 when tuned (``a``) won, 0.5 for a tie, 0 when base won; None without a verdict."""
    if verdict is None or verdict.winner is None:
        return None
    return _SCORE[verdict.winner]


def win_rate(verdicts: Sequence[Verdict | None], n_boot: int = 2000, level: float = 0.95,
             seed: int = 0) -> dict[str, Any]:
    """The :class:`~dpo_tui.core.eval.report.JudgeResult` counts and rate of tuned (``a``) over base (``b``).

    rate = (wins + ties/2) / decided; its interval is a bootstrap over the decided prompts. A missing
    verdict (None, or ``winner`` None) counts as ``no_verdict`` and stays out of the rate.
    """
    scores = [verdict_score(v) for v in verdicts]
    decided = [s for s in scores if s is not None]
    rate = _mean(decided) if decided else None
    return {
        "n": len(verdicts),
        "wins": sum(1 for s in decided if s == 1.0),
        "losses": sum(1 for s in decided if s == 0.0),
        "ties": sum(1 for s in decided if s == 0.5),
        "no_verdict": len(scores) - len(decided),
        "win_rate": rate,
        "win_rate_ci": bootstrap_mean_ci(decided, n_boot, level, seed) if decided else None,
    }


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _log1pexp(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def length_controlled_win_rate(outcomes: Sequence[float], length_diffs: Sequence[float],
                               ridge: float = LC_RIDGE) -> float | None:
    """Win rate of tuned over base read at equal answer length, as AlpacaEval 2 controls for length.

    ``outcomes`` are decided verdicts scored 1 (tuned won), 0.5 (tie: half a win and half a loss) or 0;
    ``length_diffs`` the word-count differences tuned − base of the same prompts. Fits
    P(tuned wins) = sigmoid(a + b·z) with z = diff / RMS(diff) (scaled, not centred, so z = 0 is equal
    length) by Newton's method on the ridge-penalised log-likelihood, and returns sigmoid(a). A judge that
    rewards length alone gives about 0.5 here whatever its raw rate. None with fewer than
    :data:`LC_MIN_DECIDED` outcomes.
    """
    if len(outcomes) != len(length_diffs):
        raise ValueError(f"{len(outcomes)} outcomes but {len(length_diffs)} length differences")
    if len(outcomes) < LC_MIN_DECIDED:
        return None
    ys = [float(y) for y in outcomes]
    rms = math.sqrt(math.fsum(float(d) ** 2 for d in length_diffs) / len(length_diffs))
    zs = [float(d) / rms if rms > 0 else 0.0 for d in length_diffs]

    def loss(a: float, b: float) -> float:
        # Negative log-likelihood with fractional outcomes, plus the ridge.
        total = 0.0
        for y, z in zip(ys, zs, strict=True):
            s = a + b * z
            total += _log1pexp(s) - y * s
        return total + 0.5 * ridge * (a * a + b * b)

    a = b = 0.0
    current = loss(a, b)
    for _ in range(100):
        g0 = ridge * a
        g1 = ridge * b
        h00, h01, h11 = ridge, 0.0, ridge
        for y, z in zip(ys, zs, strict=True):
            p = _sigmoid(a + b * z)
            w = p * (1.0 - p)
            g0 += p - y
            g1 += (p - y) * z
            h00 += w
            h01 += w * z
            h11 += w * z * z
        det = h00 * h11 - h01 * h01
        step_a = (h11 * g0 - h01 * g1) / det
        step_b = (h00 * g1 - h01 * g0) / det
        t = 1.0
        # Step halving keeps every iteration downhill, which plain Newton does not promise far from the optimum.
        while t > 1e-8:
            na, nb = a - t * step_a, b - t * step_b
            new = loss(na, nb)
            if new <= current:
                break
            t /= 2
        else:
            break
        a, b, current = na, nb, new
        if max(abs(t * step_a), abs(t * step_b)) < 1e-10:
            break
    return _sigmoid(a)
