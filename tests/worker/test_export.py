"""Export end to end on tiny real models: merged weights, GGUF (read back by gguf and transformers), Ollama, hub push.

Models are built from a config in the test (Llama, Qwen2, and GPT-2 as the unsupported architecture) with
a small byte-level BPE tokenizer and a ChatML-like chat template; adapters are real PEFT LoRA adapters
with non-zero weights, so the merge changes the model. One slow test exports the shared trained sample run.

Logit tolerances are relative to the largest logit of the merged model (measured values in docs/export.md):
merged vs base+adapter 1e-5, GGUF f16 1e-2, bf16 4e-2, q8_0 1e-1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dpo_tui.core.config import RunConfig
from dpo_tui.core.errors import UserError
from dpo_tui.core.events import EventWriter
from dpo_tui.core.export_plan import plan_export
from dpo_tui.core.runs import Run, create_run
from tests.support.cli import SAMPLE_MODEL, run_cli

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

TOLERANCE = {"merged": 1e-5, "f16": 1e-2, "bf16": 4e-2, "q8_0": 1e-1}

BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLES = ["<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
CORPUS = [
    "The capital of France is Paris.", "What is two plus two? It is four.", "Hello there, how are you today?",
    "Tell me a joke about cats and dogs.", "Numbers 12345 and symbols !?#", "Ünïcödé and emoji 🙂 too.",
] * 20
PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]


# --- builders ---------------------------------------------------------------------------------------
def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[BOS, EOS, PAD, *ROLES],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   extra_special_tokens=ROLES, model_max_length=256, chat_template=CHAT_TEMPLATE)


def build_base(folder: Path, kind: str) -> Path:
    """A tiny causal LM with the tokenizer above. Embeddings padded past the vocabulary, as real models do."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    tok = build_tokenizer()
    torch.manual_seed(0)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    common = {"vocab_size": len(tok) + 10, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
              "rms_norm_eps": 1e-5, "initializer_range": 0.2, **ids}
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=True, **common))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=False, **common))
        with torch.no_grad():  # make the q/k/v biases matter
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    elif kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok) + 10, n_embd=32, n_layer=1, n_head=2, n_positions=128, **ids))
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_adapter(base: Path, folder: Path, seed: int, rank: int = 4) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base))
    torch.manual_seed(seed)
    targets = ["c_attn"] if model.config.model_type == "gpt2" else "all-linear"
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False))
    peft_model.save_pretrained(str(folder))
    # A trained adapter records the training box's base path; the export must not use it.
    config_path = folder / "adapter_config.json"
    data = json.loads(config_path.read_text())
    data["base_model_name_or_path"] = "/some/other/box/model"
    config_path.write_text(json.dumps(data))


def make_run(root: Path, base: Path, *, state: str = "finished", final: bool = True, checkpoints: tuple[int, ...] = (),
             seed: int = 1) -> Run:
    root.mkdir(parents=True, exist_ok=True)
    run = create_run(root, RunConfig(model=str(base), dataset="sample", lora_rank=4, lora_alpha=8, beta=0.2, max_steps=6))
    if final:
        save_adapter(base, run.adapter_dir, seed)
        (run.adapter_dir / "COMPLETE").write_text("")
    for step in checkpoints:
        folder = run.checkpoints_dir / f"checkpoint-{step}"
        save_adapter(base, folder, seed + step)
        for name in ("optimizer.pt", "scheduler.pt"):
            (folder / name).write_bytes(b"state")
        (folder / "trainer_state.json").write_text("{}")
    with EventWriter(run.events_path) as writer:
        writer.emit("started", max_steps=6)
        for step in range(1, 7):
            writer.emit("log", step=step, metrics={"loss": 0.7 - 0.05 * step, "rewards/margins": 0.1 * step,
                                                   "rewards/accuracies": 0.5 + 0.05 * step})
        if state == "finished":
            writer.emit("finished", step=6)
    run.update_status(state=state, step=6, max_steps=6, kind="oom" if state == "failed" else None)
    return run


def peft_logits(base: Path, adapter: Path, ids: Any) -> Any:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(adapter)).eval()
    with torch.no_grad():
        return model(ids).logits


def logits_of(path: Path, ids: Any, gguf_file: str | None = None) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs).eval()
    with torch.no_grad():
        return model(ids).logits.float()


def rel_err(a: Any, b: Any) -> float:
    return float((a - b).abs().max() / b.abs().max())


def prompt_ids(tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


# --- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-bases")
    return {kind: build_base(root / kind, kind) for kind in ("llama", "qwen2", "gpt2")}


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory: pytest.TempPathFactory, bases: dict[str, Path]) -> Run:
    return make_run(tmp_path_factory.mktemp("export-runs"), bases["llama"], checkpoints=(3,))


def export(run: Run, **kwargs: Any) -> dict[str, Any]:
    from dpo_tui.worker.export import run_export

    events: list[dict[str, Any]] = []
    outputs = run_export(plan_export(run, **kwargs), events.append)
    outputs["events"] = events
    return outputs


# --- the main path ----------------------------------------------------------------------------------
def test_cli_exports_merged_gguf_and_ollama(tmp_path: Path, llama_run: Run, bases: dict[str, Path]) -> None:
    out = tmp_path / "out"
    proc = run_cli("export", llama_run.id, "--runs-dir", str(llama_run.path.parent), "--merged", str(out / "merged"),
                   "--gguf", str(out / "model.gguf"), "--ollama", str(out / "ollama"), "--ollama-name", "tiny-dpo", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"ollama create tiny-dpo -f {out / 'ollama' / 'Modelfile'}" in proc.stdout
    assert "merged: " in proc.stdout and "gguf: " in proc.stdout
    assert "Traceback" not in proc.stderr

    merged = out / "merged"
    names = {p.name for p in merged.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md"} <= names
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary left behind"
    card = (merged / "README.md").read_text()
    for fact in ("β (beta) | 0.2", "loss type | sigmoid", "LoRA rank | 4", "steps | 6", "rewards/margins | 0.6",
                 str(bases["llama"])):
        assert fact in card

    # Merged model == base + adapter (the adapter's recorded base path points elsewhere and is ignored).
    ids = prompt_ids(merged)
    reference = peft_logits(bases["llama"], llama_run.adapter_dir, ids)
    merged_logits = logits_of(merged, ids)
    assert rel_err(merged_logits, reference) < TOLERANCE["merged"]
    base_logits = logits_of(bases["llama"], ids)
    assert rel_err(base_logits, reference) > 1e-2, "the adapter must change the model for this test to mean anything"

    # GGUF: readable by gguf, loadable by transformers, same logits within f16 tolerance, same tokenizer.
    reader = gguf.GGUFReader(str(out / "model.gguf"))
    fields = reader.fields

    def field(key: str) -> Any:
        return fields[key].contents()

    assert field("general.architecture") == "llama"
    assert field("tokenizer.ggml.model") == "gpt2"
    assert field("tokenizer.ggml.pre") == "gpt-2"
    assert field("tokenizer.chat_template") == CHAT_TEMPLATE
    assert field("llama.block_count") == 2 and field("llama.attention.head_count_kv") == 2
    tokens = field("tokenizer.ggml.tokens")
    assert tokens[field("tokenizer.ggml.eos_token_id")] == EOS
    assert tokens[-1].startswith("[PAD")
    assert "output.weight" not in {t.name for t in reader.tensors}  # tied embeddings

    gguf_logits = logits_of(out, ids, gguf_file="model.gguf")
    assert rel_err(gguf_logits, merged_logits) < TOLERANCE["f16"]
    assert torch.equal(gguf_logits.argmax(-1), merged_logits.argmax(-1))

    from transformers import AutoTokenizer

    gguf_tok = AutoTokenizer.from_pretrained(str(out), gguf_file="model.gguf")
    orig_tok = AutoTokenizer.from_pretrained(str(merged))
    text = orig_tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True) + "Ünïcödé 🙂 12345!"
    assert gguf_tok(text, add_special_tokens=False)["input_ids"] == orig_tok(text, add_special_tokens=False)["input_ids"]
    assert gguf_tok.eos_token == EOS

    modelfile = (out / "ollama" / "Modelfile").read_text()
    assert f"FROM {out / 'model.gguf'}" in modelfile
    assert 'PARAMETER stop "<|end|>"' in modelfile
    assert 'TEMPLATE """' in modelfile and '{{ "<|user|>\\n" }}{{ .Content }}' in modelfile


@pytest.mark.parametrize("gguf_type", ["bf16", "q8_0"])
def test_gguf_types_match_the_merged_model(tmp_path: Path, llama_run: Run, gguf_type: str) -> None:
    outputs = export(llama_run, merged=tmp_path / "m", gguf=tmp_path / "m" / f"model-{gguf_type}.gguf", gguf_type=gguf_type)
    assert outputs["gguf_type"] == gguf_type
    reader = gguf.GGUFReader(outputs["gguf"])
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == gguf_type.upper()
    assert types["blk.0.attn_norm.weight"] == "F32"
    ids = prompt_ids(tmp_path / "m")
    merged = logits_of(tmp_path / "m", ids)
    quant = logits_of(tmp_path / "m", ids, gguf_file=f"model-{gguf_type}.gguf")
    assert rel_err(quant, merged) < TOLERANCE[gguf_type]
    # Progress events: one per tensor, ending at the total.
    last = [e for e in outputs["events"] if e["type"] == "progress"][-1]
    assert last["done"] == last["total"] == len(reader.tensors)


def test_qwen2_with_biases_and_untied_head(tmp_path: Path, bases: dict[str, Path]) -> None:
    run = make_run(tmp_path / "runs", bases["qwen2"])
    outputs = export(run, merged=tmp_path / "m", gguf=tmp_path / "q.gguf")
    reader = gguf.GGUFReader(outputs["gguf"])
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias", "output.weight"} <= names
    assert reader.fields["general.architecture"].contents() == "qwen2"
    ids = prompt_ids(tmp_path / "m")
    merged = logits_of(tmp_path / "m", ids)
    assert rel_err(merged, peft_logits(bases["qwen2"], run.adapter_dir, ids)) < TOLERANCE["merged"]
    assert rel_err(logits_of(tmp_path, ids, gguf_file="q.gguf"), merged) < TOLERANCE["f16"]


def test_unsupported_architecture_gives_a_clear_error(tmp_path: Path, bases: dict[str, Path]) -> None:
    run = make_run(tmp_path / "runs", bases["gpt2"])
    with pytest.raises(UserError) as err:
        plan_export(run, gguf=tmp_path / "g.gguf")
    assert "architecture 'gpt2'" in str(err.value) and "supported: Llama, Mistral and Qwen2" in str(err.value)
    # The worker checks again on the loaded model (a hub base whose config was not on disk at planning time).
    from transformers import AutoModelForCausalLM

    from dpo_tui.worker.export import Progress, write_gguf

    model = AutoModelForCausalLM.from_pretrained(str(bases["gpt2"]))
    with pytest.raises(UserError, match="architecture 'gpt2'"):
        write_gguf(model, None, tmp_path / "g.gguf", "f16", Progress())
    assert not (tmp_path / "g.gguf").exists()
    # The merged export of the same run works.
    outputs = export(run, merged=tmp_path / "merged")
    assert (Path(outputs["merged"]) / "model.safetensors").exists()


def test_checkpoint_export_of_a_failed_run(tmp_path: Path, bases: dict[str, Path]) -> None:
    run = make_run(tmp_path / "runs", bases["llama"], state="failed", final=False, checkpoints=(2,))
    with pytest.raises(UserError, match="failed"):
        plan_export(run, merged=tmp_path / "m")
    outputs = export(run, checkpoint=2, merged=tmp_path / "m")
    card = (Path(outputs["merged"]) / "README.md").read_text()
    assert "checkpoint-2" in card and "steps | 2" in card
    ids = prompt_ids(tmp_path / "m")
    reference = peft_logits(bases["llama"], run.checkpoints_dir / "checkpoint-2", ids)
    assert rel_err(logits_of(tmp_path / "m", ids), reference) < TOLERANCE["merged"]


def test_full_finetune_exports_its_model_folder(tmp_path: Path, bases: dict[str, Path]) -> None:
    import shutil

    root = tmp_path / "runs"
    root.mkdir()
    run = create_run(root, RunConfig(model=str(bases["llama"]), dataset="sample", method="full", max_steps=2))
    shutil.copytree(bases["llama"], run.model_dir)
    for name in ("COMPLETE", "optimizer.pt", "training_args.bin"):
        (run.model_dir / name).write_bytes(b"")
    run.update_status(state="finished")
    outputs = export(run, merged=tmp_path / "m", gguf=tmp_path / "m.gguf")
    names = {p.name for p in Path(outputs["merged"]).iterdir()}
    assert "model.safetensors" in names and "README.md" in names
    assert not names & {"COMPLETE", "optimizer.pt", "training_args.bin"}
    assert "fully fine-tuned" in (Path(outputs["merged"]) / "README.md").read_text()
    ids = prompt_ids(tmp_path / "m")
    assert rel_err(logits_of(tmp_path, ids, gguf_file="m.gguf"), logits_of(bases["llama"], ids)) < TOLERANCE["f16"]


def test_mistral_is_written_as_llama(tmp_path: Path) -> None:
    from transformers import MistralConfig, MistralForCausalLM

    from dpo_tui.worker.export import Progress, write_gguf

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2)).eval()
    write_gguf(model, tok, tmp_path / "mistral.gguf", "f16", Progress())
    assert gguf.GGUFReader(str(tmp_path / "mistral.gguf")).fields["general.architecture"].contents() == "llama"
    ids = tok("Hello there, how are you today?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        reference = model(ids).logits
    assert rel_err(logits_of(tmp_path, ids, gguf_file="mistral.gguf"), reference) < TOLERANCE["f16"]


def test_rope_scaling_metadata(tmp_path: Path) -> None:
    import numpy as np
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from dpo_tui.worker.export.gguf_writer import _add_rope_scaling, _rope_settings

    class Writer:
        def __init__(self) -> None:
            self.calls: list[tuple[str, Any]] = []

        def __getattr__(self, name: str) -> Any:
            return lambda value: self.calls.append((name, value))

    llama3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    config = LlamaConfig(hidden_size=256, num_attention_heads=4, max_position_embeddings=131072, rope_parameters=llama3)
    factors = _add_rope_scaling(Writer(), gguf, _rope_settings(config), 64, np)
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    plain = 1.0 / (500000.0 ** (np.arange(0, 64, 2) / 64))
    assert np.allclose(plain / factors, scaled.numpy(), rtol=1e-5)

    writer = Writer()
    yarn = LlamaConfig(max_position_embeddings=32768,
                       rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 8192})
    assert _add_rope_scaling(writer, gguf, _rope_settings(yarn), 64, np) is None
    assert ("add_rope_scaling_orig_ctx_len", 8192) in writer.calls and ("add_rope_scaling_factor", 4.0) in writer.calls
    dynamic = LlamaConfig(rope_parameters={"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0})
    with pytest.raises(UserError, match="rope scaling 'dynamic' is not supported"):
        _add_rope_scaling(Writer(), gguf, _rope_settings(dynamic), 64, np)


def test_sentencepiece_style_tokenizer(tmp_path: Path) -> None:
    """Llama-2 / Mistral-style vocabularies (BPE with byte fallback and ▁) are written as llama.cpp's 'llama' model."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    from dpo_tui.worker.export import Progress, write_gguf

    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    trained.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    model_json = json.loads(trained.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"<0x{b:02X}>": 3 + b for b in range(256)}
    for token in sorted(model_json["vocab"], key=model_json["vocab"].get):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    LlamaTokenizer(vocab=vocab, merges=merges).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=4, initializer_range=0.2)).eval()
    model.save_pretrained(tmp_path)
    write_gguf(model, tok, tmp_path / "spm.gguf", "f16", Progress())

    reader = gguf.GGUFReader(str(tmp_path / "spm.gguf"))
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert types[3] == gguf.TokenType.BYTE and types[0] == gguf.TokenType.UNKNOWN
    gguf_tok = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="spm.gguf")
    for text in ("Hello there, how are you today?", "  two  spaces", "Ünïcödé 🙂 and ⚙ bytes"):
        assert gguf_tok(text)["input_ids"] == tok(text)["input_ids"]
    ids = tok("The capital of France", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        reference = model(ids).logits
    assert rel_err(logits_of(tmp_path, ids, gguf_file="spm.gguf"), reference) < TOLERANCE["f16"]


# --- destinations and failures ----------------------------------------------------------------------
def test_force_replaces_an_existing_destination(tmp_path: Path, llama_run: Run) -> None:
    dest = tmp_path / "m"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(UserError, match="already exists"):
        plan_export(llama_run, merged=dest)
    export(llama_run, merged=dest, force=True)
    assert not (dest / "old.txt").exists() and (dest / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_failure_midway_removes_every_partial_output(tmp_path: Path, llama_run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """The merged folder is complete when the GGUF fails (permission denied): neither may appear."""
    import dpo_tui.worker.export as worker

    def denied(*args: Any, **kwargs: Any) -> int:
        target = args[2]
        target.write_bytes(b"partial")
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(worker, "write_gguf", denied)
    out = tmp_path / "new" / "nested"
    with pytest.raises(UserError) as err:
        export(llama_run, merged=out / "m", gguf=out / "m.gguf")
    text = str(err.value)
    assert "cannot write the GGUF file" in text and "permission denied" in text and "partial output was removed" in text
    assert not (tmp_path / "new").exists(), "created parent folders and temporaries are removed too"


def test_interrupt_removes_partial_output(tmp_path: Path, llama_run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import dpo_tui.worker.export as worker

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(worker, "modelfile_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(llama_run, ollama=tmp_path / "o")
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str):
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_is_refused_up_front(tmp_path: Path, llama_run: Run) -> None:
    with tiny_tmpfs(tmp_path / "small", "256k") as small:
        with pytest.raises(UserError) as err:
            export(llama_run, merged=small / "m", gguf=small / "m.gguf")
        assert "Not enough disk space" in str(err.value) and "nothing was written" in str(err.value)
        assert list(small.iterdir()) == []


def test_disk_full_while_writing_fails_cleanly(tmp_path: Path, llama_run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ENOSPC from a 128 KB tmpfs in the middle of writing (the up-front check is bypassed)."""
    import dpo_tui.worker.export as worker

    monkeypatch.setattr(worker, "check_free_space", lambda needs: None)
    with tiny_tmpfs(tmp_path / "small", "128k") as small:
        for kwargs in ({"merged": small / "m"}, {"gguf": small / "m.gguf"}):
            with pytest.raises(UserError) as err:
                export(llama_run, **kwargs)
            assert "the disk is full" in str(err.value) and "partial output was removed" in str(err.value)
            assert list(small.iterdir()) == []


# --- push to hub (a fake endpoint on 127.0.0.1; the real hub is never contacted) -----------------
class FakeHub:
    """Just enough of the hub API for create_repo + upload_folder, recording every request."""

    def __init__(self, fail_create: int | None = None) -> None:
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization header)
        self.files: dict[str, bytes] = {}
        self.created: list[dict[str, Any]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                hub.requests.append(("GET", self.path, self.headers.get("Authorization")))
                self._reply(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path, self.headers.get("Authorization")))
                if self.path == "/api/repos/create":
                    if fail_create:
                        return self._reply(fail_create, {"error": "Invalid credentials"})
                    req = json.loads(body)
                    hub.created.append(req)
                    repo = f"{req.get('organization') or 'fake-user'}/{req['name']}"  # no org: the token's user
                    return self._reply(200, {"url": f"http://{self.headers['Host']}/{repo}", "name": repo, "id": repo})
                if self.path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                if "/preupload/" in self.path:
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                       for f in files]})
                if "/commit/" in self.path:
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item.get("key") == "file":
                            hub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    repo = self.path.split("/api/models/", 1)[1].split("/commit/", 1)[0]
                    oid = "a" * 40
                    return self._reply(200, {"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{oid}",
                                             "commitOid": oid, "success": True})
                self._reply(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch):
    hub = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield hub
    hub.close()


def test_push_adapter_to_a_fake_hub(tmp_path: Path, llama_run: Run, fake_hub: FakeHub) -> None:
    outputs = export(llama_run, push_to_hub="me/tiny-dpo", private=True)
    assert outputs["hub_url"] == f"{fake_hub.url}/me/tiny-dpo"
    assert fake_hub.created == [{"name": "tiny-dpo", "organization": "me", "visibility": "private", "type": "model"}]
    assert set(fake_hub.files) == {"README.md", "adapter_config.json", "adapter_model.safetensors"}
    assert "library_name: peft" in fake_hub.files["README.md"].decode()
    assert fake_hub.files["adapter_model.safetensors"] == (llama_run.adapter_dir / "adapter_model.safetensors").read_bytes()
    writes = [auth for method, path, auth in fake_hub.requests if path.startswith("/api/repos") or "/commit/" in path]
    assert len(writes) == 2 and set(writes) == {"Bearer hf_test_token"}


def test_push_merged_folder_to_a_fake_hub(tmp_path: Path, llama_run: Run, fake_hub: FakeHub) -> None:
    outputs = export(llama_run, merged=tmp_path / "m", push_to_hub="tiny-dpo-merged")
    assert outputs["hub_url"] == f"{fake_hub.url}/fake-user/tiny-dpo-merged"
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(fake_hub.files)
    assert fake_hub.files["model.safetensors"] == (tmp_path / "m" / "model.safetensors").read_bytes()


def test_push_rejected_token_says_so_and_keeps_local_export(tmp_path: Path, llama_run: Run,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub(fail_create=401)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_bad")
    try:
        with pytest.raises(UserError) as err:
            export(llama_run, merged=tmp_path / "m", push_to_hub="me/x")
    finally:
        hub.close()
    text = err.value.render()
    assert "Push to the hub repo me/x failed" in text and "write access" in text and "is complete" in text
    assert (tmp_path / "m" / "model.safetensors").exists()


def test_push_without_network_fails_clearly(tmp_path: Path, llama_run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    with pytest.raises(UserError) as err:
        export(llama_run, push_to_hub="me/x")
    assert "Push to the hub repo me/x failed" in err.value.render() and "network" in err.value.render()


# --- the worker as a child process (how the console runs it) ----------------------------------------
def test_worker_process_streams_json_progress(tmp_path: Path, llama_run: Run) -> None:
    from dpo_tui.core.export_plan import worker_command

    plan = plan_export(llama_run, ollama=tmp_path / "o")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.to_json())
    proc = subprocess.run(worker_command(plan_file), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "stage" and kinds[-1] == "done" and "progress" in kinds
    done = events[-1]["outputs"]
    assert done["modelfile"] == str(tmp_path / "o" / "Modelfile")
    assert "FROM ./model.gguf" in (tmp_path / "o" / "Modelfile").read_text()
    # Running the same plan again (its destination appeared since it was checked) fails cleanly.
    from dpo_tui.worker.export import main

    assert main(["--plan", str(plan_file)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "plan.json"]


def test_cli_refuses_a_running_run_without_traceback(tmp_path: Path, bases: dict[str, Path]) -> None:
    run = make_run(tmp_path / "runs", bases["llama"], state="running", final=False)
    run.update_status(pid=os.getpid(), pid_start=__import__("psutil").Process().create_time(),
                      host=__import__("socket").gethostname())
    proc = run_cli("export", run.id, "--runs-dir", str(tmp_path / "runs"), "--merged", str(tmp_path / "m"))
    assert proc.returncode == 2
    assert "still running" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()
    proc = run_cli("export", run.id, "--runs-dir", str(tmp_path / "runs"), "--merged", str(tmp_path / "m"), "--json")
    assert proc.returncode == 2
    event = json.loads(proc.stdout.splitlines()[-1])
    assert event["type"] == "error" and "still running" in event["summary"] and "dpo-tui attach" in event["hint"]


# --- the real sample run ------------------------------------------------------------------------------
@pytest.mark.slow
def test_export_the_trained_sample_run(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if not (SAMPLE_MODEL / "config.json").exists():
        pytest.skip("sample_data/tiny-chat is not built")
    run: Run = request.getfixturevalue("trained_run")
    out = tmp_path / "sample"
    outputs = export(run, merged=out / "merged", gguf=out / "model.gguf", ollama=out / "ollama")
    ids = prompt_ids(out / "merged")
    merged = logits_of(out / "merged", ids)
    assert rel_err(merged, peft_logits(SAMPLE_MODEL, run.adapter_dir, ids)) < TOLERANCE["merged"]
    assert rel_err(logits_of(out, ids, gguf_file="model.gguf"), merged) < TOLERANCE["f16"]
    modelfile = Path(outputs["modelfile"]).read_text()
    assert "TEMPLATE" in modelfile and "PARAMETER stop" in modelfile


def test_exported_files_follow_the_umask(tmp_path: Path, llama_run: Run) -> None:
    """Weights written by safetensors arrive 0600; exported files must read like the rest of the run folder."""
    import stat

    from dpo_tui.core.fsutil import current_umask

    mask = current_umask()
    outputs = export(llama_run, merged=tmp_path / "merged", gguf=tmp_path / "model.gguf")
    weights = tmp_path / "merged" / "model.safetensors"
    assert weights.exists(), outputs
    for path in [weights, tmp_path / "model.gguf", *(tmp_path / "merged").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
    assert stat.S_IMODE((tmp_path / "merged").stat().st_mode) == 0o777 & ~mask
