"""The reward-model judge on a real, tiny LlamaForSequenceClassification built here (a few hundred KB).

The model is wired so its score is known without training: attention is uniform (zero queries and keys),
values and outputs pass the input through and the MLP adds nothing, so the last token's state is its own
embedding plus the mean of every token's normalised embedding. Only the tokens of the good answer have a
component on dimension 0, and the score head reads dimension 0: an answer containing them scores above 0,
any other scores exactly 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from dpo_tui.core.errors import UserError
from dpo_tui.core.judge import judge_both_orders, parse_judge_spec
from dpo_tui.worker.judge_rm import RewardModelJudge
from dpo_tui.worker.judges import build_judge
from tests.support.cli import SAMPLE_MODEL

PROMPT = "What is the capital of Norway?"
GOOD, BAD, OTHER_BAD = "Oslo.", "Paris.", "Madrid."
HIDDEN = 16


def build_rm(folder: Path, num_labels: int = 1, max_positions: int = 64) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(SAMPLE_MODEL)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=HIDDEN // 2,
                         max_position_embeddings=max_positions, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, num_labels=num_labels)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    good_tokens = set(tokenizer(GOOD, add_special_tokens=False)["input_ids"])
    other = set(tokenizer(f"{PROMPT} {BAD} {OTHER_BAD} User: Assistant: <|user|>\n<|assistant|>\n<|end|>\n",
                          add_special_tokens=False)["input_ids"])
    marked = sorted(good_tokens - other)
    assert marked, "the good answer shares every token with the rest; pick other words"
    with torch.no_grad():
        layer = model.model.layers[0]
        layer.self_attn.q_proj.weight.zero_()
        layer.self_attn.k_proj.weight.zero_()
        layer.self_attn.v_proj.weight.copy_(torch.eye(HIDDEN))
        layer.self_attn.o_proj.weight.copy_(torch.eye(HIDDEN))
        layer.mlp.down_proj.weight.zero_()
        embed = model.model.embed_tokens.weight
        embed[:, 0] = 0.0
        embed[marked, 0] = 5.0
        head = torch.zeros(num_labels, HIDDEN)
        head[-1, 0] = 1.0
        if num_labels == 2:
            head[0, 0] = -1.0
        model.score.weight.copy_(head)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def rm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rm(tmp_path_factory.mktemp("rm"))


def test_the_good_answer_wins_in_either_order(rm_folder: Path) -> None:
    judge = build_judge(parse_judge_spec(f"rm={rm_folder}"), device="cpu")
    assert isinstance(judge, RewardModelJudge) and judge.name == f"rm:{rm_folder.name}"
    first = judge.compare(PROMPT, GOOD, BAD)
    flipped = judge.compare(PROMPT, BAD, GOOD)
    assert (first.winner, flipped.winner) == ("a", "b")
    good, bad = judge.score(PROMPT, GOOD), judge.score(PROMPT, BAD)
    assert good > 0.1 and bad == pytest.approx(0.0, abs=1e-6)
    assert first.reason == f"score {good:.2f} vs {bad:.2f}"
    assert judge.compare(PROMPT, BAD, OTHER_BAD).winner == "tie"


def test_both_orders_cost_one_forward_per_answer(rm_folder: Path) -> None:
    judge = RewardModelJudge(parse_judge_spec(f"rm={rm_folder}"), device="cpu")
    combined, _, _ = judge_both_orders(judge, PROMPT, GOOD, BAD)
    assert combined.winner == "a"
    assert judge.forwards == 2


def test_batched_scores_equal_single_scores(rm_folder: Path) -> None:
    pairs = [(PROMPT, GOOD), ("Name a city.", BAD), (PROMPT, "The capital is " + GOOD), ("Hi", OTHER_BAD), (PROMPT, BAD)]
    batched = RewardModelJudge(parse_judge_spec(f"rm={rm_folder}"), device="cpu", batch_size=3).score_many(pairs)
    single = RewardModelJudge(parse_judge_spec(f"rm={rm_folder}"), device="cpu", batch_size=1)
    assert batched == pytest.approx([single.score(*pair) for pair in pairs], abs=1e-5)


def test_a_long_prompt_is_cut_from_the_left_and_the_answer_kept(rm_folder: Path) -> None:
    judge = RewardModelJudge(parse_judge_spec(f"rm={rm_folder}"), device="cpu")
    assert judge.max_length == 64
    long_prompt = "Please think carefully about this. " * 40 + PROMPT
    ids = judge._ids(long_prompt, GOOD)
    assert len(ids) <= 64
    text = judge.tokenizer.decode(ids)
    assert "Oslo." in text and "capital of Norway?" in text
    assert judge.compare(long_prompt, BAD, GOOD).winner == "b"


def test_a_two_label_model_scores_good_minus_bad(tmp_path: Path) -> None:
    judge = RewardModelJudge(parse_judge_spec(f"rm={build_rm(tmp_path / 'rm2', num_labels=2)}"), device="cpu")
    assert judge.compare(PROMPT, GOOD, BAD).winner == "a"
    assert judge.score(PROMPT, GOOD) == pytest.approx(2 * RewardModelJudge(
        parse_judge_spec(f"rm={build_rm(tmp_path / 'rm1')}"), device="cpu").score(PROMPT, GOOD), rel=1e-4)


def test_a_causal_lm_folder_is_refused_at_build_time() -> None:
    with pytest.raises(UserError) as err:
        build_judge(f"rm={SAMPLE_MODEL}")
    text = str(err.value)
    assert "LlamaForCausalLM" in text and "not a sequence-classification model" in text
    assert str(SAMPLE_MODEL / "config.json") in text and "AutoModelForSequenceClassification" in text
