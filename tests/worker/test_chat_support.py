"""Chat test assets (models and adapters made in seconds) and unit tests of the pure chat protocol.

``build_assets(root)`` runs in a subprocess (so UI test processes never import torch) and writes:

- ``base``: the bundled tiny-chat model when it is built, else a random-init twin of its architecture
  (same tokenizer style and chat template), so the protocol tests run before ``make sample``;
- ``adapter-a``, ``adapter-b``: LoRA adapters (r=8, all linear layers, non-zero B) for ``base``;
- ``adapter-c``: r=4 on q_proj/v_proj only (mixed ranks and targets in one batch);
- ``other``, ``adapter-other``: a smaller model and an adapter trained on it (a different base);
- ``no-template``: ``base`` without a chat template.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dpo_tui.core import chat_protocol as P

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ChatAssets:
    root: Path
    base: Path
    adapter_a: Path
    adapter_b: Path
    adapter_c: Path
    adapter_zero: Path
    other: Path
    adapter_other: Path
    no_template: Path
    real_sample: bool


def assets_at(root: Path) -> ChatAssets:
    info = json.loads((root / "assets.json").read_text())
    return ChatAssets(
        root=root,
        base=Path(info["base"]),
        adapter_a=root / "adapter-a",
        adapter_b=root / "adapter-b",
        adapter_c=root / "adapter-c",
        adapter_zero=root / "adapter-zero",
        other=root / "other",
        adapter_other=root / "adapter-other",
        no_template=root / "no-template",
        real_sample=info["real_sample"],
    )


def build_assets(root: Path) -> ChatAssets:
    """Make the assets under ``root`` (in a subprocess: torch stays out of the caller)."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "assets.json").exists():
        subprocess.run([sys.executable, __file__, str(root)], check=True, cwd=REPO, capture_output=True, timeout=600)
    return assets_at(root)


def _build(root: Path) -> None:  # pragma: no cover - runs in the subprocess
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sys.path.insert(0, str(REPO))
    from dpo_tui.core.paths import sample_model_dir

    sample = sample_model_dir()
    real = (sample / "config.json").is_file() and (sample / "tokenizer.json").is_file()
    if real:
        base = sample
    else:
        sys.path.insert(0, str(REPO / "scripts"))
        import random

        import build_sample_model as bsm
        import build_sample_prefs as prefs
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        questions = prefs.build_questions()[0][:200]
        tok = bsm.train_tokenizer([bsm.render(m) for m in bsm.conversations(random.Random(0), questions, 1)])
        config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id, **bsm.MODEL_CONFIG)
        base = root / "base"
        LlamaForCausalLM(config).save_pretrained(base)
        tok.save_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(base)

    def adapter(model_dir: Path, out: Path, seed: int, rank: int = 8, targets: str | list[str] = "all-linear",
                scale: float = 4.0) -> None:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False))
        with torch.no_grad():  # scale 4: big enough to change greedy answers; 0: the base's answers exactly
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.mul_(scale)
        peft_model.save_pretrained(out)

    adapter(base, root / "adapter-a", 1)
    adapter(base, root / "adapter-b", 2)
    adapter(base, root / "adapter-c", 4, rank=4, targets=["q_proj", "v_proj"])
    # For snapshots: random adapters make greedy garbage whose exact tokens flip with float noise.
    adapter(base, root / "adapter-zero", 5, scale=0.0)
    cfg = AutoModelForCausalLM.from_pretrained(base).config
    cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = 64, 128, 2
    from transformers import LlamaForCausalLM

    torch.manual_seed(3)
    LlamaForCausalLM(cfg).save_pretrained(root / "other")
    tokenizer.save_pretrained(root / "other")
    adapter(root / "other", root / "adapter-other", 3)
    nt = root / "no-template"
    shutil.copytree(base, nt)
    (nt / "chat_template.jinja").unlink(missing_ok=True)
    tc = json.loads((nt / "tokenizer_config.json").read_text())
    tc.pop("chat_template", None)
    (nt / "tokenizer_config.json").write_text(json.dumps(tc))
    (root / "assets.json").write_text(json.dumps({"base": str(base), "real_sample": real}))


# --- unit tests of the pure protocol ----------------------------------------------------------------------
def test_encode_decode_round_trip_and_garbage():
    line = P.encode(P.event(P.TOKEN, "g1", side=0, text="héllo\n", n=3))
    assert line.endswith("\n") and line.count("\n") == 1
    assert P.decode(line) == {"type": "token", "id": "g1", "side": 0, "text": "héllo\n", "n": 3}
    assert P.decode(b'{"type":"bye"}\n') == {"type": "bye"}
    for junk in ("", "   ", "Loading weights: 100%", "[1,2]", "{not json"):
        assert P.decode(junk) is None
    nan_line = P.encode({"type": "scores", "items": [{"reward": float("nan")}]})
    assert json.loads(nan_line)["items"][0]["reward"] is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, None),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": 0}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": 1.5}, "seed"),
        ({"stop": [""]}, "stop"),
        ({"stop": "x"}, "stop"),
        ({"greedy": True, "temperature": 0.01}, None),
    ],
)
def test_generation_settings_problems(fields, problem):
    found = P.GenerationSettings.from_dict(fields).problems()
    if problem is None:
        assert found == []
    else:
        assert any(problem in f for f in found)


def test_settings_from_dict_ignores_unknown_keys():
    s = P.GenerationSettings.from_dict({"greedy": True, "bogus": 1})
    assert s.greedy and s.to_dict()["max_new_tokens"] == 128


@pytest.mark.parametrize(
    ("messages", "ok"),
    [
        ([{"role": "user", "content": "hi"}], True),
        ([{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}], True),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], False),
        ([], False),
        ([{"role": "robot", "content": "hi"}], False),
        ([{"role": "user"}], False),
        ("hi", False),
    ],
)
def test_validate_messages(messages, ok):
    assert (P.validate_messages(messages) is None) is ok


def test_judgement_rows_standard_and_conversational(tmp_path):
    single = P.judgement_row([{"role": "user", "content": "Q?"}], "short", "long")
    assert single == {"prompt": "Q?\n", "chosen": "short", "rejected": "long"}
    assert not P.is_conversational(single)
    history = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]
    multi = P.judgement_row(history, "c", "r")
    assert P.is_conversational(multi)
    assert multi["prompt"][-1] == {"role": "user", "content": "Q2"}
    assert multi["chosen"] == [{"role": "assistant", "content": "c"}]
    with_system = P.judgement_row([{"role": "user", "content": "Q"}], "c", "r", system_prompt="Be brief.")
    assert with_system["prompt"][0] == {"role": "system", "content": "Be brief."}
    path = P.judgements_path(tmp_path, "sample")
    assert path == tmp_path / "judgements" / "tiny-chat.jsonl"
    assert P.judgements_path(tmp_path, "org/My Model", conversational=True).name == "my-model-conversational.jsonl"
    P.append_judgement(path, single)
    P.append_judgement(path, single)
    lines = path.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [single, single]


def test_adapter_name_sanitises_run_ids():
    from dpo_tui.core.chat_client import adapter_name

    assert adapter_name("20261126-2130-tiny-chat-b0.1") == "20261126-2130-tiny-chat-b0_1"
    assert adapter_name("x/y@checkpoint-3") == "x_y_checkpoint-3"
    assert adapter_name("") == "adapter"


if __name__ == "__main__":  # pragma: no cover
    _build(Path(sys.argv[1]))
