"""Evaluation statistics on hand-made numbers whose answers are known."""

from __future__ import annotations

import random
import statistics

import pytest

from dpo_tui.core.eval.raw import Answer
from dpo_tui.core.eval.stats import (
    bootstrap_mean_ci,
    is_looping,
    length_controlled_win_rate,
    lengths,
    paired_bootstrap_ci,
    proportion_ci,
    win_rate,
)
from dpo_tui.core.judge import Verdict

VERBOSE = ("Great question! Let me explain this in detail. Keep in mind that details can vary. "
           "The capital of Norway is Oslo. So, once again, that is the short version. I hope this helps!")


def test_is_looping_flags_degenerate_text_not_a_verbose_answer():
    assert not is_looping(VERBOSE)
    assert not is_looping("The capital of Norway is Oslo. So, once again, the capital of Norway is Oslo.")
    assert not is_looping("")
    assert is_looping("the " * 12)
    assert is_looping("The capital is Oslo. The capital is Oslo. The capital is Oslo.")
    # Punctuation and case do not hide a loop.
    assert is_looping("I hope this helps! i hope THIS helps. I hope this, helps")
    assert not is_looping("the the the", n=4)


def test_lengths_definitions():
    answers = [Answer(" ".join(f"w{i}" for i in range(n)), tokens=2 * n, finish="eos") for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)]
    answers.append(Answer("", tokens=0, finish="eos"))
    answers.append(Answer("loop " * 40, tokens=128, finish="length"))
    got = lengths(answers)
    words = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 40]
    assert got.n == 12
    assert got.mean_words == pytest.approx(sum(words) / 12)
    assert got.median_words == statistics.median(words) == 5.5
    # Inclusive p90: linear interpolation at 0.9 * (n - 1) = 9.9 between sorted[9] = 9 and sorted[10] = 10.
    assert got.p90_words == pytest.approx(9.9)
    assert got.mean_tokens == pytest.approx((2 * 55 + 128) / 12)
    assert (got.empty, got.truncated, got.looping) == (1, 1, 1)
    assert lengths([]).n == 0
    one = lengths([Answer("a b c", tokens=4, finish="eos")])
    assert (one.median_words, one.p90_words, one.p90_tokens) == (3.0, 3.0, 4.0)


def test_paired_bootstrap_excludes_zero_for_a_clear_shift_and_contains_it_for_noise():
    rng = random.Random(7)
    base = [rng.uniform(30, 45) for _ in range(40)]
    shifted = [b * 0.5 + rng.uniform(-2, 2) for b in base]
    lo, hi = paired_bootstrap_ci(base, shifted)
    diff = statistics.fmean(shifted) - statistics.fmean(base)
    assert lo <= diff <= hi < 0
    noise = [b + rng.uniform(-3, 3) for b in base]
    lo, hi = paired_bootstrap_ci(base, noise)
    assert lo < 0 < hi
    # Seeded: the same numbers give the same interval, another seed a (slightly) different one.
    assert paired_bootstrap_ci(base, noise, seed=3) == paired_bootstrap_ci(base, noise, seed=3)
    assert paired_bootstrap_ci(base, noise, seed=3) != paired_bootstrap_ci(base, noise, seed=4)


def test_bootstrap_edges():
    assert bootstrap_mean_ci([]) == (0.0, 0.0)
    assert bootstrap_mean_ci([2.5]) == (2.5, 2.5)
    assert bootstrap_mean_ci([1.0] * 10) == (1.0, 1.0)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1.0], [1.0, 2.0])


def test_wilson_interval():
    lo, hi = proportion_ci(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35  # Wilson 95 % upper bound at 0/10 is 0.2775
    assert hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = proportion_ci(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.2775, abs=1e-3)
    lo, hi = proportion_ci(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert proportion_ci(0, 0) == (0.0, 1.0)
    assert proportion_ci(5, 10, level=0.99)[0] < proportion_ci(5, 10, level=0.9)[0]


def test_win_rate_counts_ties_half_and_leaves_out_no_verdicts():
    verdicts = [Verdict("a")] * 6 + [Verdict("b")] * 2 + [Verdict("tie")] * 2 + [Verdict(None, "timeout"), None]
    got = win_rate(verdicts)
    assert (got["n"], got["wins"], got["losses"], got["ties"], got["no_verdict"]) == (12, 6, 2, 2, 2)
    assert got["win_rate"] == pytest.approx(0.7)
    lo, hi = got["win_rate_ci"]
    assert lo <= 0.7 <= hi and lo > 0.3
    none = win_rate([Verdict(None), None])
    assert none["win_rate"] is None and none["win_rate_ci"] is None and none["no_verdict"] == 2


def test_length_controlled_equals_raw_when_lengths_are_equal():
    outcomes = [1.0] * 7 + [0.0] * 3
    assert length_controlled_win_rate(outcomes, [0.0] * 10) == pytest.approx(0.7, abs=0.005)
    ties = [1.0] * 4 + [0.5] * 4 + [0.0] * 2
    assert length_controlled_win_rate(ties, [5.0, -5.0] * 5) == pytest.approx(0.6, abs=0.01)


def test_length_controlled_is_lower_when_tuned_wins_only_by_being_longer():
    # Tuned answers are mostly longer and the judge prefers the longer answer, with noise: tuned wins 15 of 18
    # when 20 words longer, 1 of 6 when 20 words shorter (the mirror image), and half at equal length. The
    # logistic model fits these exactly, so at equal length the rate is 1/2 while the raw rate is 18/28.
    diffs = [20] * 18 + [-20] * 6 + [0] * 4
    outcomes = [1] * 15 + [0] * 3 + [1] + [0] * 5 + [1, 0, 0.5, 0.5]
    raw = win_rate([Verdict("a") if o == 1 else Verdict("b") if o == 0 else Verdict("tie") for o in outcomes])
    assert raw["win_rate"] == pytest.approx(18 / 28)
    lc = length_controlled_win_rate(outcomes, diffs)
    assert lc == pytest.approx(0.5, abs=0.01) and lc < raw["win_rate"] - 0.1
    # Perfectly separable (wins exactly when longer, mostly longer): the ridge keeps the fit finite and the
    # rate at equal length far below the raw 0.8.
    sep = length_controlled_win_rate([1.0] * 8 + [0.0] * 2, [10, 12, 14, 16, 18, 20, 22, 24, -10, -12])
    assert sep is not None and sep < 0.7
    # Every answer the same amount longer: length and intercept cannot be told apart; the fit stays finite.
    same = length_controlled_win_rate([1.0] * 9 + [0.0], [5.0] * 10)
    assert same is not None and 0.5 < same < 0.9


def test_length_controlled_needs_five_decided_verdicts():
    assert length_controlled_win_rate([1.0, 0.0, 1.0, 1.0], [1, 2, 3, 4]) is None
    with pytest.raises(ValueError):
        length_controlled_win_rate([1.0] * 5, [1.0] * 4)
