"""Every common architecture end to end, through the product's own commands, at narrow widths.

One test per family (``tests/support/archs.py``: Llama-3, Qwen2.5, Mistral, Gemma-2, Phi-3, each with its
head/kv-head ratio, vocabulary size, tied or untied head, biases, fused projections, soft-capping or sliding
window, special tokens and chat template): the model picker's facts, ``data check --model`` token statistics
with the family's template, ``train`` 3 steps with LoRA (``all-linear`` picks the block's linear layers, fused
ones included, never the LM head) and with full fine-tuning in bf16, ``chat`` side by side, and ``export``:
merged weights equal base+adapter, and a GGUF where the writer knows the architecture, else a refusal
before any work. The same path at real widths is ``bench/arch_matrix.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dpo_tui.core.models import inspect_model
from dpo_tui.core.runs import Run
from tests.support.archs import FAMILIES, Family, build_model, numel
from tests.support.cli import REPO, run_cli_inprocess, start_run, wait_for_state
from tests.support.export_check import (
    TOLERANCE,
    adapter_run,
    default_rope_logits,
    fake_llama_cpp,
    logits_of,
    peft_logits,
    prompt_ids,
    rel_err,
    rope_factors_error,
)

torch = pytest.importorskip("torch")

CONVERSATIONAL = REPO / "sample_data" / "prefs" / "train_conversational.jsonl"
QUESTION = "What is the capital of France?"
OFFLINE = {"HF_HUB_OFFLINE": "1"}
TRAIN_ARGS = ("--max-steps", "3", "--max-length", "64", "--batch-size", "1",
              "--probe-prompts", "0", "--lora-rank", "4", "--lora-alpha", "8", "--learning-rate", "0.05")


@pytest.fixture(scope="session")
def arch_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("archs")


def model_of(root: Path, family: Family) -> Path:
    """The family's narrow model, built once per session."""
    folder = root / family.name
    if not (folder / "config.json").exists():
        build_model(family, folder)
    return folder


def check_picker_facts(family: Family, folder: Path) -> None:
    from transformers import AutoModelForCausalLM

    info = inspect_model(str(folder))
    assert info.ok, info.error
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    assert info.param_count == numel(model), "tied weights are counted once"
    assert info.model_type == family.model_type
    assert info.tied_embeddings is family.tied
    assert info.context_length == family.real["max_position_embeddings"]
    assert info.has_chat_template and info.has_tokenizer
    assert info.dtype == "float32"
    assert info.num_heads // info.num_kv_heads == family.real["num_attention_heads"] // family.real["num_key_value_heads"]
    assert set(info.linear_groups) == set(family.lora_targets)
    if family.model_type == "gemma2":
        assert model.config.final_logit_softcapping and model.config.attn_logit_softcapping
    if family.model_type in ("mistral", "gemma2", "phi3"):
        assert model.config.sliding_window


def check_token_stats(family: Family, folder: Path) -> None:
    from transformers import AutoTokenizer

    proc = run_cli_inprocess("data", "check", str(CONVERSATIONAL), "--model", str(folder), "--json", env=OFFLINE)
    assert proc.returncode == 0, proc.stderr
    tokens = json.loads(proc.stdout)["stats"]["tokens"]
    tok = AutoTokenizer.from_pretrained(str(folder))
    rows = [json.loads(line) for line in CONVERSATIONAL.read_text().splitlines()]
    lengths = [len(tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False))
               for r in rows]
    assert tokens["rows"] == len(rows)
    assert (tokens["prompt"]["min"], tokens["prompt"]["max"]) == (min(lengths), max(lengths)), "prompt tokens include the template"


def check_adapter_targets(family: Family, run: Run) -> None:
    adapter = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    targets = adapter["target_modules"]
    picked = {t.rsplit(".", 1)[-1] for t in ([targets] if isinstance(targets, str) else targets)}
    assert picked == set(family.lora_targets), picked
    assert "lm_head" not in picked


def check_full_bf16(run: Run) -> None:
    from safetensors import safe_open

    folder = run.path / "model"
    assert (folder / "COMPLETE").exists()
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
    assert dtypes == {"BF16"}, dtypes


def check_chat(family: Family, run: Run) -> None:
    proc = run_cli_inprocess("chat", "--runs-dir", str(run.path.parent), "--run", run.id, "--prompt", QUESTION, "--greedy",
                             "--max-new-tokens", "4", "--device", "cpu", "--json", env=OFFLINE)
    assert proc.returncode == 0, proc.stderr
    (answer,) = json.loads(proc.stdout)
    assert answer["base_tokens"] > 0 and answer["tuned_tokens"] > 0
    if not family.system_role:
        proc = run_cli_inprocess("chat", "--runs-dir", str(run.path.parent), "--run", run.id, "--prompt", QUESTION,
                                 "--system", "Be brief.", "--greedy", "--max-new-tokens", "2", "--device", "cpu", env=OFFLINE)
        assert "System role not supported" in proc.stderr and "Traceback" not in proc.stderr
        assert "has no system role" in proc.stderr and "a bug in the caller" not in proc.stderr, proc.stderr


def check_export(family: Family, base: Path, run: Run, out: Path) -> None:
    common = ("export", run.id, "--runs-dir", str(run.path.parent))
    if not family.gguf:
        proc = run_cli_inprocess(*common, "--merged", str(out / "merged"), "--gguf", str(out / "model.gguf"), env=OFFLINE)
        assert proc.returncode == 2, proc.stderr
        assert f"Cannot write a GGUF for architecture '{family.model_type}'" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not out.exists(), "refused before any work"
    args = ["--merged", str(out / "merged")] + (["--gguf", str(out / "model.gguf")] if family.gguf else [])
    proc = run_cli_inprocess(*common, *args, env=OFFLINE)
    assert proc.returncode == 0, proc.stderr
    ids = prompt_ids(out / "merged", [{"role": "user", "content": QUESTION}])
    reference = peft_logits(base, run.adapter_dir, ids)
    merged = logits_of(out / "merged", ids)
    assert rel_err(merged, reference) < TOLERANCE["merged"]
    assert rel_err(logits_of(base, ids), reference) > 1e-3, "the trained adapter must change the model"
    if family.gguf:
        from_gguf = logits_of(out, ids, gguf_file="model.gguf")
        if "rope_scaling" in family.real:
            assert rope_factors_error(out / "model.gguf", out / "merged") < 1e-6
            merged = default_rope_logits(out / "merged", ids)
        assert rel_err(from_gguf, merged) < TOLERANCE["f16"]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_architecture_end_to_end(name: str, arch_root: Path, tmp_path: Path) -> None:
    family = FAMILIES[name]
    base = model_of(arch_root, family)
    runs = tmp_path / "runs"
    # Three steps of batch 1 read three pairs; a short file keeps TRL's tokenizing pass short.
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(CONVERSATIONAL.read_text().splitlines(keepends=True)[:12]))
    # Both runs train while the checks that need no run go on.
    lora = start_run(runs, "--model", str(base), "--method", "lora", "--name", f"{name}-lora", "--dataset", str(data), *TRAIN_ARGS, env=OFFLINE)
    full = start_run(runs, "--model", str(base), "--method", "full", "--precision", "bf16", "--name", f"{name}-full",
                     "--dataset", str(data), *TRAIN_ARGS, env=OFFLINE)
    clock = Clock()
    check_picker_facts(family, base)
    clock("picker facts")
    check_token_stats(family, base)
    clock("data check")
    for path in (lora, full):
        assert wait_for_state(path, {"finished", "failed", "crashed"}, timeout=240)["state"] == "finished"
    clock("train lora + full")
    check_adapter_targets(family, Run(lora))
    check_full_bf16(Run(full))
    check_chat(family, Run(lora))
    clock("chat")
    check_export(family, base, Run(lora), tmp_path / "export")
    clock("export")


class Clock:
    """Prints each phase's wall time (shown with ``pytest -s``), so a slow family says where its time goes."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def __call__(self, what: str) -> None:
        now = time.monotonic()
        print(f"{what}: {now - self.last:.1f}s")
        self.last = now


@pytest.mark.parametrize("with_merged", [False, True])
def test_gguf_through_llama_cpp_tools(with_merged: bool, arch_root: Path, tmp_path: Path) -> None:
    """The converter reads a complete merged folder and llama-quantize makes the k-quant, with no temporaries
    left; Phi-3, which the built-in writer refuses, goes through. Stand-in tools: no llama.cpp here."""
    family = FAMILIES["phi3"]
    run = adapter_run(tmp_path / "runs", model_of(arch_root, family))
    tools = fake_llama_cpp(tmp_path / "llama.cpp")
    out = tmp_path / "out"
    merged = ["--merged", str(out / "merged")] if with_merged else []
    proc = run_cli_inprocess("export", run.id, "--runs-dir", str(run.path.parent), *merged, "--gguf", str(out / "m.gguf"),
                             "--gguf-type", "q4_k_m", "--llama-cpp", str(tools), env=OFFLINE)
    assert proc.returncode == 0, proc.stderr
    assert "GGUF (q4_k_m, llama.cpp)" in proc.stderr and "quantizing to Q4_K_M with llama-quantize" in proc.stderr
    written, quantized = (out / "m.gguf").read_text().splitlines()
    assert quantized == "quantized Q4_K_M"
    call = json.loads(written)
    assert call["model_type"] == "phi3"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(call["files"])
    assert call["argv"][call["argv"].index("--outtype") + 1] == "f16"
    assert sorted(p.name for p in out.iterdir()) == sorted(["m.gguf", *(["merged"] if with_merged else [])])


def test_llama_cpp_failure_is_an_operator_error(arch_root: Path, tmp_path: Path) -> None:
    run = adapter_run(tmp_path / "runs", model_of(arch_root, FAMILIES["gemma2"]))
    tools = fake_llama_cpp(tmp_path / "llama.cpp")
    (tools / "convert_hf_to_gguf.py").write_text(
        "import sys\nprint('NotImplementedError: Architecture Gemma2ForCausalLM not supported!', file=sys.stderr)\nsys.exit(1)\n")
    out = tmp_path / "out"
    proc = run_cli_inprocess("export", run.id, "--runs-dir", str(run.path.parent), "--gguf", str(out / "m.gguf"),
                             "--llama-cpp", str(tools), env=OFFLINE)
    assert proc.returncode == 2, proc.stderr
    assert "llama.cpp's convert_hf_to_gguf.py failed: NotImplementedError: Architecture Gemma2ForCausalLM not supported!" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not list(out.iterdir()), "nothing left behind"
