"""build_report on a small hand-made evaluation: the numbers, the rows, and a round trip through the file."""

from __future__ import annotations

import json

import pytest

from dpo_tui.core.eval.build import build_report
from dpo_tui.core.eval.raw import Answer, PairScore, PromptResult
from dpo_tui.core.eval.report import EvalSettings, read_report, write_report
from dpo_tui.core.judge import Verdict

VERBOSE = "Great question! Let me explain this in detail. The answer is {x}. I hope this helps!"  # 16 words


def _a(text: str, finish: str = "eos") -> Answer:
    return Answer(text, tokens=len(text.split()) + 1, finish=finish)


def _prompts() -> list[PromptResult]:
    out = []
    for i in range(8):
        x = f"thing{i}"
        out.append(PromptResult(
            prompt=f"Question {i}?",
            base=_a(VERBOSE.format(x=x)),
            tuned=_a(f"The answer is {x}."),  # 4 words
            base_samples=[_a(VERBOSE.format(x=x)), _a(VERBOSE.format(x=x) + " Bye now.")],
            tuned_samples=[_a(f"It is {x}."), _a(f"The answer is {x}.")],
            verdict=Verdict("a", "4 vs 16 words") if i < 6 else Verdict("tie" if i == 6 else None, "timeout"),
        ))
    return out


def _facts() -> list[PromptResult]:
    return [
        PromptResult("Capital of Norway?", base=_a("It is Oslo."), tuned=_a("Oslo."), expected="oslo"),
        PromptResult("Symbol for tin?", base=_a("Sn."), tuned=_a("Snow."), expected=r"\bSn\b", match="regex"),
        PromptResult("Legs of a bee?", base=_a("Eight."), tuned=_a("Six."), expected="six"),
    ]


def _report(seed: int = 0, **over):
    kw = dict(
        eval_id="20250101-120000", run_id="run-1", checkpoint="final", base_model="tiny-chat",
        adapter_path="/runs/run-1/final", beta=0.1, created_at=1.7e9, elapsed_s=12.5, device="cpu",
        settings=EvalSettings(prompts_file="heldout_prompts.txt", prompts=8, facts_file="facts.jsonl",
                              pairs_file="pairs.jsonl", judge="shorter", samples=2),
        prompts=_prompts(), facts=_facts(), facts_source="facts.jsonl",
        pairs=[PairScore(0.5, -0.2), PairScore(0.1, 0.3), PairScore(1.0, 0.0), PairScore(0.4, 0.1)],
        pairs_source="pairs.jsonl", judge_name="shorter", seed=seed,
    )
    kw.update(over)
    return build_report(**kw)


def test_build_report_numbers():
    r = _report()
    b = r.behaviour
    assert (b.base.n, b.base.mean_words, b.tuned.mean_words) == (8, 16.0, 4.0)
    assert b.words.diff == -12.0 and b.words.rel == pytest.approx(-12 / 16)
    assert b.words.ci == (-12.0, -12.0) and b.words.ci_excludes_zero
    assert b.tokens.base == 17.0 and b.tokens.tuned == 5.0
    assert b.sampled_base is not None and b.sampled_base.n == 16 and b.sampled_tuned is not None
    assert b.sampled_words is not None
    assert b.sampled_words.base == pytest.approx(17.0) and b.sampled_words.tuned == pytest.approx(3.5)

    assert r.pairs is not None
    assert (r.pairs.n, r.pairs.accuracy, r.pairs.beta) == (4, 0.75, 0.1)
    assert r.pairs.mean_margin == pytest.approx((0.7 - 0.2 + 1.0 + 0.3) / 4)
    assert r.pairs.accuracy_ci[0] < 0.75 < r.pairs.accuracy_ci[1]

    j = r.judge
    assert j is not None and j.name == "shorter"
    assert (j.n, j.wins, j.losses, j.ties, j.no_verdict) == (8, 6, 0, 1, 1)
    assert j.win_rate == pytest.approx(6.5 / 7)
    assert j.length_controlled_win_rate is not None

    f = r.facts
    assert f is not None and (f.n, f.base_correct, f.tuned_correct) == (3, 2, 2)
    assert f.change.base == pytest.approx(2 / 3) and f.change.diff == pytest.approx(0.0)

    rows = r.prompts
    assert len(rows) == 11
    assert rows[0].verdict == "tuned" and rows[6].verdict == "tie" and rows[7].verdict is None
    assert rows[7].verdict_reason == "timeout"
    assert rows[0].base_words == 16 and rows[0].tuned_words == 4 and rows[0].expected is None
    assert [(x.expected, x.base_ok, x.tuned_ok) for x in rows[8:]] == [
        ("oslo", True, True), (r"\bSn\b", True, False), ("six", False, True)]


def test_build_report_round_trips_and_is_deterministic(tmp_path):
    r = _report(seed=5)
    path = write_report(tmp_path, r)
    assert path == tmp_path / "eval" / "20250101-120000.json"
    back = read_report(path)
    assert back == r
    assert back.summary()["words_ci_excludes_zero"] is True
    again = json.dumps(_report(seed=5).to_json(), sort_keys=True)
    assert again == json.dumps(r.to_json(), sort_keys=True)


def test_build_report_without_optional_sections():
    base_verdict_free = [PromptResult("Q?", base=_a("one two three"), tuned=_a("one"))]
    r = _report(prompts=base_verdict_free, facts=None, pairs=None, judge_name=None, facts_source=None,
                pairs_source=None)
    assert r.pairs is None and r.judge is None and r.facts is None
    assert r.behaviour.sampled_base is None and r.behaviour.sampled_words is None
    assert r.behaviour.words.ci == (-2.0, -2.0)
    assert len(r.prompts) == 1 and r.prompts[0].verdict is None
    # Empty lists measure nothing, like None.
    assert _report(facts=[], pairs=[]).facts is None
    with pytest.raises(ValueError, match="expected"):
        _report(facts=[PromptResult("Q?", base=_a("x"), tuned=_a("y"))])
