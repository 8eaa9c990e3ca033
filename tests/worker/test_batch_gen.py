"""In-process batched generation (evaluation and pair making): a batch gives what each row gives alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.core import chat_protocol as P
from dpo_tui.core.runs import Run

PROMPTS = ["What is the capital of Norway?", "Tell me how to boil an egg.", "What is the chemical symbol for gold?"]


def _msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def generator(trained_run: Run, sample_model: Path):
    from dpo_tui.worker.batch_gen import BatchGenerator

    gen = BatchGenerator(str(sample_model), device="cpu", dtype="float32")
    adapter = trained_run.final_weights_dir()
    assert adapter is not None
    gen.load_adapter("tuned", str(adapter))
    yield gen
    gen.close()


def test_a_mixed_batch_answers_as_each_model_alone(generator) -> None:
    from dpo_tui.worker.batch_gen import GenItem

    greedy = P.GenerationSettings(greedy=True, max_new_tokens=40)
    items = [GenItem(_msgs(p), adapter=a, key=(p, a)) for p in PROMPTS for a in (P.BASE, "tuned")]
    batched = generator.generate(items, greedy, batch_size=len(items))
    alone = generator.generate(items, greedy, mode="sequential")
    assert [r.item.key for r in batched] == [it.key for it in items]
    assert [r.text for r in batched] == [r.text for r in alone]
    assert all(r.finish_reason in ("eos", "length") for r in batched)
    base_words = sum(len(r.text.split()) for r in batched if r.item.adapter == P.BASE)
    tuned_words = sum(len(r.text.split()) for r in batched if r.item.adapter == "tuned")
    assert tuned_words < base_words, "the trained sample adapter answers shorter than its base"


def test_a_rows_seed_makes_its_sample_whatever_the_batch(generator) -> None:
    from dpo_tui.worker.batch_gen import GenItem

    sampled = P.GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=30)
    items = [GenItem(_msgs(PROMPTS[0]), seed=s) for s in range(6)]
    together = generator.generate(items, sampled, batch_size=6)
    in_twos = generator.generate(list(reversed(items)), sampled, batch_size=2)
    assert [r.text for r in together] == [r.text for r in reversed(in_twos)]
    assert len({r.text for r in together}) > 1, "different seeds give different samples"


def test_answer_logps_is_the_engines_implicit_reward(generator) -> None:
    policy, base = generator.answer_logps(_msgs(PROMPTS[0]), "The capital of Norway is Oslo.", "tuned")
    assert policy < 0 and base < 0 and policy != base
    reply = generator.engine.score({"items": [{"adapter": "tuned", "messages": _msgs(PROMPTS[0]),
                                               "answer": "The capital of Norway is Oslo.", "beta": 0.1}]})
    assert reply["items"][0]["reward"] == pytest.approx(0.1 * (policy - base))


def test_a_set_stop_event_ends_generation_between_batches(generator) -> None:
    from dpo_tui.worker.batch_gen import GenItem

    generator.stop.set()
    try:
        out = generator.generate([GenItem(_msgs(p)) for p in PROMPTS], P.GenerationSettings(greedy=True, max_new_tokens=8), batch_size=1)
    finally:
        generator.stop.clear()
    assert out == []


def test_decoding_once_at_the_end_gives_the_streamed_text(generator) -> None:
    """Batch jobs skip the per-token decode; the answer text must be what a streaming chat shows."""
    from dpo_tui.worker.batch_gen import GenItem

    settings = P.GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=30)
    items = [GenItem(_msgs(p), adapter=a, seed=7) for p in PROMPTS for a in (P.BASE, "tuned")]
    quiet = generator.generate(items, settings, batch_size=len(items))
    collector = generator._collector
    collector.sides.clear()
    sides = [{"adapter": it.adapter, "messages": it.messages, "seed": it.seed} for it in items]
    generator.engine.generate({"id": "streamed", "sides": sides, "settings": settings.to_dict(), "stream": True})
    streamed = [collector.sides[i]["text"] for i in range(len(items))]
    assert [r.text for r in quiet] == streamed
    assert {r.finish_reason for r in quiet} <= {"eos", "length"}
