"""Five model families built in the test: a transformers config with random weights, a tokenizer trained here with
the ``tokenizers`` library, and a chat template with that family's structure, special tokens and turn markers.

Each :class:`Family` knows its real widths (the smallest member: Llama-3.2-1B, Qwen2.5-0.5B, Mistral-7B,
Gemma-2-2B, Phi-3-mini) and a narrow version that keeps what makes the family different (head/kv-head ratio,
vocabulary size, tied or untied head, q/k/v biases, fused projections, soft-capping, sliding window). The
tokenizer's learnt vocabulary is small; the model's embedding is the family's full vocabulary, the way real
checkpoints pad theirs. Nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cli import SAMPLE_PREFS

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{%- endif %}{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}"
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif %}"
    "{%- if message['role'] == 'user' %}{%- if loop.first and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\n\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}{%- endif %}{%- endfor %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)


@dataclass(frozen=True)
class Family:
    """One architecture family: its config at real and narrow widths, its tokens and template, what to expect."""

    name: str
    model_type: str
    config_class: str
    model_class: str
    real: dict[str, Any]
    narrow: dict[str, Any]
    template: str
    bos: str | None
    eos: str
    pad: str
    specials: tuple[str, ...]
    """Turn markers and other special tokens of the family (besides bos/eos/pad)."""
    turn_end: str
    """The token that ends an assistant turn (what a chat stops on)."""
    system_role: bool
    lora_targets: frozenset[str]
    """What ``all-linear`` must pick: every linear layer in the blocks, the LM head excluded."""
    gguf: bool
    """Whether ``dpo_tui/worker/export/gguf_writer.py`` writes this architecture."""

    @property
    def tied(self) -> bool:
        return bool(self.real.get("tie_word_embeddings"))

    def config_kwargs(self, scale: str) -> dict[str, Any]:
        return dict(self.real) if scale == "real" else {**self.real, **self.narrow}


_ATTN_MLP = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="llama3", model_type="llama", config_class="LlamaConfig", model_class="LlamaForCausalLM",
            real={"hidden_size": 2048, "intermediate_size": 8192, "num_attention_heads": 32, "num_key_value_heads": 8,
                  "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": True, "max_position_embeddings": 131072,
                  "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
                  "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192}},
            narrow={"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16},
            template=LLAMA3_TEMPLATE, bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
            specials=("<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"), turn_end="<|eot_id|>",
            system_role=True, lora_targets=_ATTN_MLP, gguf=True,
        ),
        Family(
            name="qwen2.5", model_type="qwen2", config_class="Qwen2Config", model_class="Qwen2ForCausalLM",
            real={"hidden_size": 896, "intermediate_size": 4864, "num_attention_heads": 14, "num_key_value_heads": 2,
                  "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 32768,
                  "rope_theta": 1000000.0, "rms_norm_eps": 1e-6},
            narrow={"hidden_size": 112, "intermediate_size": 224, "num_attention_heads": 7, "num_key_value_heads": 1},
            template=CHATML_TEMPLATE, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
            specials=("<|im_start|>",), turn_end="<|im_end|>",
            system_role=True, lora_targets=_ATTN_MLP, gguf=True,
        ),
        Family(
            name="mistral", model_type="mistral", config_class="MistralConfig", model_class="MistralForCausalLM",
            real={"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8,
                  "vocab_size": 32768, "tie_word_embeddings": False, "max_position_embeddings": 32768,
                  "rope_theta": 1000000.0, "rms_norm_eps": 1e-5, "sliding_window": 4096},
            narrow={"hidden_size": 64, "intermediate_size": 224, "num_attention_heads": 4, "num_key_value_heads": 1,
                    "head_dim": 16, "sliding_window": 16},
            template=MISTRAL_TEMPLATE, bos="<s>", eos="</s>", pad="<pad>",
            specials=("[INST]", "[/INST]", "<unk>"), turn_end="</s>",
            system_role=True, lora_targets=_ATTN_MLP, gguf=True,
        ),
        Family(
            name="gemma2", model_type="gemma2", config_class="Gemma2Config", model_class="Gemma2ForCausalLM",
            real={"hidden_size": 2304, "intermediate_size": 9216, "num_attention_heads": 8, "num_key_value_heads": 4,
                  "head_dim": 256, "vocab_size": 256000, "tie_word_embeddings": True, "max_position_embeddings": 8192,
                  "rms_norm_eps": 1e-6, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
                  "query_pre_attn_scalar": 256, "sliding_window": 4096, "hidden_activation": "gelu_pytorch_tanh"},
            narrow={"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 16},
            template=GEMMA_TEMPLATE, bos="<bos>", eos="<eos>", pad="<pad>",
            specials=("<start_of_turn>", "<end_of_turn>"), turn_end="<end_of_turn>",
            system_role=False, lora_targets=_ATTN_MLP, gguf=False,
        ),
        Family(
            name="phi3", model_type="phi3", config_class="Phi3Config", model_class="Phi3ForCausalLM",
            real={"hidden_size": 3072, "intermediate_size": 8192, "num_attention_heads": 32, "num_key_value_heads": 32,
                  "vocab_size": 32064, "tie_word_embeddings": False, "max_position_embeddings": 4096,
                  "original_max_position_embeddings": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
                  "sliding_window": 2047},
            narrow={"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 4,
                    "sliding_window": 31},
            template=PHI3_TEMPLATE, bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>",
            specials=("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<unk>"), turn_end="<|end|>",
            system_role=True, lora_targets=frozenset({"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}), gguf=False,
        ),
    )
}


def corpus() -> list[str]:
    """Text for the tokenizer: the sample preference pairs, so their token counts look like a real tokenizer's."""
    lines: list[str] = []
    for raw in SAMPLE_PREFS.read_text(encoding="utf-8").splitlines():
        row = json.loads(raw)
        lines.extend(str(row[k]) for k in ("prompt", "chosen", "rejected"))
    return lines


def build_tokenizer(family: Family, vocab: int = 600) -> Any:
    """A byte-level BPE trained on the sample pairs, with the family's special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = [t for t in dict.fromkeys([family.bos, family.eos, family.pad, *family.specials]) if t]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    extra = [t for t in special if t not in (family.bos, family.eos, family.pad)]
    kwargs: dict[str, Any] = {"bos_token": family.bos} if family.bos else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=family.eos, pad_token=family.pad,
                                   extra_special_tokens=extra, model_max_length=family.config_kwargs("real")["max_position_embeddings"],
                                   chat_template=family.template, **kwargs)


def build_config(family: Family, tokenizer: Any, scale: str = "narrow", layers: int = 2) -> Any:
    import transformers

    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    cls = getattr(transformers, family.config_class)
    return cls(num_hidden_layers=layers, initializer_range=0.2 if scale == "narrow" else 0.02, **ids,
               **family.config_kwargs(scale))


def build_model(family: Family, folder: Path, scale: str = "narrow", seed: int = 0, dtype: Any = None) -> Path:
    """Save a random-weight model of ``family`` with its tokenizer and template in ``folder``."""
    import torch
    import transformers

    tokenizer = build_tokenizer(family)
    config = build_config(family, tokenizer, scale)
    torch.manual_seed(seed)
    model = getattr(transformers, family.model_class)(config)
    if family.model_type == "qwen2":
        with torch.no_grad():  # random q/k/v biases, so a writer that dropped them would change the logits
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def numel(model: Any) -> int:
    """Parameters with tied weights counted once (``parameters()`` already yields a shared tensor once)."""
    return sum(p.numel() for p in model.parameters())
