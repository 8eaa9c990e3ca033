"""Build the bundled tiny chat model (``sample_data/tiny-chat/``) from scratch on CPU.

Why a home-made model: the console's built-in sample experiment has to run DPO end to end on any
laptop with no network, so the policy must be small enough for a DPO run of seconds to a minute on two
CPU cores, yet be a real Hugging Face causal LM (Llama architecture, byte-level BPE tokenizer, chat
template, safetensors) so that every code path the console uses on real models is exercised.

What the script does (all seeded, so a rerun on the same software stack gives the same bytes):

1. Question pool = every preference-pair question of ``scripts/build_sample_prefs.py`` plus the
   "extra" phrasings of the held-out subjects (so the model knows e.g. the capital of Kenya; the
   exact held-out prompts are never trained on).
2. Pretraining text = conversations where the assistant gives either the concise or the verbose
   answer. Direct phrasings ("What is ...?") get the verbose answer 30 % of the time, chatty ones
   ("Tell me ...", "Can you explain ...") 70 % of the time, so the *base* model answers some
   held-out prompts briefly and others at length (greedy mean ~25 words): the room that DPO on
   the concise-over-verbose pairs is meant to close. 70 % use the chat template, 30 % TRL's
   plain layout for standard-form data (see PLAIN_FRACTION).
3. A byte-level BPE tokenizer (``tokenizers``) is trained on that text and wrapped as a
   ``PreTrainedTokenizerFast`` with a ChatML-like template; ``<|end|>`` ends a turn and is the
   eos token, so generation stops at the end of an answer.
4. A ~0.8 M parameter ``LlamaForCausalLM`` is trained with a plain torch loop (loss on assistant
   tokens only), then saved as safetensors with a generation config.
5. Greedy answers to ``sample_data/prefs/heldout_prompts.txt`` are printed with their mean words.

Measured runtime: 2 min 38 s wall on 2 CPU cores (torch 2.13 CPU, transformers 5.24), of which
~150 s is training; it is in ``BUILD_SECONDS_NOTE`` and the model README too.

Usage: python scripts/build_sample_model.py [--out sample_data/tiny-chat] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_sample_prefs as prefs

SEED = 1234
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "sample_data" / "tiny-chat"
HELDOUT_FILE = ROOT / "sample_data" / "prefs" / "heldout_prompts.txt"
BUILD_SECONDS_NOTE = "about 2.5 minutes on 2 CPU cores (measured 2 min 38 s; longer on a busy machine)"

BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL_TOKENS = [BOS, EOS, PAD, *ROLE_TOKENS]
VOCAB_SIZE = 1536

# ChatML-like: "<|bos|><|user|>\n...<|end|>\n<|assistant|>\n...<|end|>\n".
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Only system, user and assistant roles are supported.') }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# Share of examples in TRL's *standard* (plain text) layout, "<|bos|>{prompt}{answer}<|end|>", which
# is what DPOTrainer builds from train.jsonl. Seeing both layouts in pretraining keeps DPO on the
# standard file in-distribution while the console still talks to the model through the chat template.
PLAIN_FRACTION = 0.3

SYSTEM_PROMPTS = ["You are a helpful assistant.", "You are a friendly assistant that answers questions."]

# Probability that the pretraining answer is the verbose one, by phrasing template index
# (0 = the direct phrasing of each kind, e.g. "What is the capital of X?").
VERBOSE_P_BY_TEMPLATE = {0: 0.3, 1: 0.7, 2: 0.7, 3: 0.7}

MODEL_CONFIG = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
}

STEPS = 500
BATCH_SIZE = 32
LR = 3e-3
WARMUP = 30


def conversations(rng: random.Random, questions: list[prefs.Question], epochs: int) -> list[list[dict]]:
    """Chat examples: each question once per epoch, concise or verbose by its template's odds."""
    convs: list[list[dict]] = []
    for _ in range(epochs):
        order = list(questions)
        rng.shuffle(order)
        for q in order:
            verbose = rng.random() < VERBOSE_P_BY_TEMPLATE[q.template]
            answer = prefs.verbose_answer(rng, q.answer) if verbose else q.answer
            if rng.random() < PLAIN_FRACTION:
                convs.append([{"role": "plain", "content": q.prompt}, {"role": "assistant", "content": answer}])
                continue
            msgs = []
            if rng.random() < 0.1:
                msgs.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
            msgs += [{"role": "user", "content": q.prompt}, {"role": "assistant", "content": answer}]
            convs.append(msgs)
    return convs


def render(msgs: list[dict], add_generation_prompt: bool = False) -> str:
    """Plain-Python twin of CHAT_TEMPLATE (used before the HF tokenizer exists)."""
    if msgs[0]["role"] == "plain":
        return BOS + msgs[0]["content"] + msgs[1]["content"] + EOS
    text = BOS + "".join(f"<|{m['role']}|>\n{m['content']}{EOS}\n" for m in msgs)
    return text + ("<|assistant|>\n" if add_generation_prompt else "")


def train_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE on the pretraining text, wrapped with special tokens and the chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=ROLE_TOKENS,
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=MODEL_CONFIG["max_position_embeddings"],
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
        chat_template=CHAT_TEMPLATE,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    """Save so that both transformers 5 and 4.56+ load it (the project supports both).

    transformers 5 writes ``tokenizer_class: TokenizersBackend`` and an ``extra_special_tokens``
    list, which 4.x cannot read, and puts the chat template in a separate .jinja file; rewrite to
    the spellings both understand and keep the template inside tokenizer_config.json.
    """
    tokenizer.save_pretrained(out, save_jinja_files=False)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["additional_special_tokens"] = cfg.pop("extra_special_tokens", ROLE_TOKENS)
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "additional_special_tokens": ROLE_TOKENS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def encode_example(tokenizer: PreTrainedTokenizerFast, msgs: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids and labels; labels are -100 except on the final assistant turn (incl. its <|end|>)."""
    if msgs[0]["role"] == "plain":
        prefix = BOS + msgs[0]["content"]
        full = prefix + msgs[1]["content"] + EOS
    else:
        prefix = tokenizer.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(msgs, tokenize=False)
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert ids[: len(prefix_ids)] == prefix_ids, "chat template prefix does not tokenize as a prefix"
    labels = [-100] * len(prefix_ids) + ids[len(prefix_ids) :]
    return ids, labels


def batches(examples: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int):
    """Fixed-order right-padded batches (examples are already shuffled per epoch)."""
    for i in range(0, len(examples) - batch_size + 1, batch_size):
        chunk = examples[i : i + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((batch_size, width), pad_id, dtype=torch.long)
        labels = torch.full((batch_size, width), -100, dtype=torch.long)
        attn = torch.zeros((batch_size, width), dtype=torch.long)
        for row, (ids, lab) in enumerate(chunk):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(lab)] = torch.tensor(lab)
            attn[row, : len(ids)] = 1
        yield input_ids, attn, labels


def greedy_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 60) -> list[str]:
    """Greedy answers (one prompt at a time: no padding effects, and the model is tiny)."""
    out = []
    model.eval()
    with torch.no_grad():
        for p in prompts:
            enc = tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
            out.append(tokenizer.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    return out


def write_readme(out: Path, n_params: int, vocab: int, steps: int, mean_words: float, n_heldout: int) -> None:
    """Model card: what the model is, how it was made, what to expect from it."""
    cfg = MODEL_CONFIG
    text = f"""# tiny-chat: the bundled sample model

A {n_params / 1e6:.2f} M parameter Llama-architecture chat model trained from scratch on CPU by
`scripts/build_sample_model.py` (seed {SEED}) for the console's built-in sample experiment. It is
not a useful assistant: it knows only the questions of `sample_data/prefs` (capitals, chemical
symbols, animal legs, dates, how-tos, definitions, comparisons).

- Architecture: `LlamaForCausalLM`, hidden {cfg["hidden_size"]}, {cfg["num_hidden_layers"]} layers,
  {cfg["num_attention_heads"]} heads ({cfg["num_key_value_heads"]} KV heads), MLP {cfg["intermediate_size"]},
  tied embeddings, context {cfg["max_position_embeddings"]}; float32 safetensors.
- Tokenizer: byte-level BPE, {vocab} tokens, trained on the pretraining text. Special tokens
  `{BOS}` (bos), `{EOS}` (eos, ends every turn), `{PAD}` (pad), `<|system|>`, `<|user|>`,
  `<|assistant|>`.
- Chat template (ChatML-like): `{BOS}<|user|>\\n...{EOS}\\n<|assistant|>\\n...{EOS}\\n`; system,
  user and assistant roles; `add_generation_prompt` appends `<|assistant|>\\n`.
- Training: {steps} AdamW steps, batch {BATCH_SIZE}, lr {LR}, loss on assistant tokens only.
  Each question is answered concisely or verbosely ("Great question! ..."): direct phrasings
  ("What is ...?") are verbose {VERBOSE_P_BY_TEMPLATE[0]:.0%} of the time, chatty ones ("Tell me ...",
  "Can you explain ...") {VERBOSE_P_BY_TEMPLATE[1]:.0%}. {PLAIN_FRACTION:.0%} of the examples use TRL's
  plain-text layout (`{BOS}{{prompt}}{{answer}}{EOS}`) so DPO on the standard-form `train.jsonl`
  stays in-distribution. The held-out subjects are trained on with other phrasings only.
- Base behaviour: greedy answers to the {n_heldout} held-out prompts average {mean_words:.1f} words
  (roughly half concise, half verbose). `scripts/check_sample_dpo.py` runs the sample DPO
  experiment and checks that this drops by at least 30 %.
- Build time: {BUILD_SECONDS_NOTE}.

Rebuild with `make sample` (or `python scripts/build_sample_prefs.py && python
scripts/build_sample_model.py`); the same software versions give the same bytes.
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--steps", type=int, default=STEPS, help="optimizer steps")
    args = parser.parse_args()

    t0 = time.perf_counter()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(SEED)

    pair_qs, extra_qs, _held = prefs.build_questions()
    questions = pair_qs + extra_qs + extra_qs  # held-out subjects have fewer phrasings: show them twice
    epochs = -(-args.steps * BATCH_SIZE // len(questions))
    convs = conversations(rng, questions, epochs)

    # Tokenizer: trained on the rendered conversations (plus every padding phrase once).
    corpus = [render(m) for m in convs[: 4 * len(questions)]]
    corpus += prefs.PREAMBLES + prefs.HEDGES + prefs.REPEATS + prefs.CLOSINGS
    tokenizer = train_tokenizer(corpus)
    examples = [encode_example(tokenizer, m) for m in convs]
    n_tokens = sum(len(ids) for ids, _ in examples)
    print(f"{len(questions)} questions, {len(examples)} conversations, {n_tokens} tokens, vocab {len(tokenizer)}")

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **MODEL_CONFIG,
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.3f} M parameters")

    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP) * max(0.05, 1 - s / args.steps)
    )
    model.train()
    step = 0
    for input_ids, attn, labels in batches(examples, BATCH_SIZE, tokenizer.pad_token_id):
        loss = model(input_ids=input_ids, attention_mask=attn, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % 50 == 0 or step == 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  ({time.perf_counter() - t0:.0f}s)", flush=True)
        if step >= args.steps:
            break

    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    model.generation_config.max_new_tokens = 60

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "chat_template.jinja").unlink(missing_ok=True)  # the template lives in tokenizer_config.json
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)

    heldout = HELDOUT_FILE.read_text(encoding="utf-8").splitlines()
    answers = greedy_answers(model, tokenizer, heldout)
    words = [len(a.split()) for a in answers]
    for p, a in zip(heldout, answers, strict=True):
        print(f"Q: {p}\nA: {a}")
    mean_words = sum(words) / len(words)
    elapsed = time.perf_counter() - t0
    print(f"base mean words over {len(heldout)} held-out prompts: {mean_words:.1f}")
    print(f"built in {elapsed:.0f}s; folder size {folder_bytes(out) / 1e6:.2f} MB")
    write_readme(out, n_params, len(tokenizer), step, mean_words, len(heldout))


if __name__ == "__main__":
    main()
