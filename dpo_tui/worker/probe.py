"""Measure the real peak GPU memory of a DPO configuration: two training steps on the longest padded batch.

Run as ``python -m dpo_tui.worker.probe --spec SPEC.json`` (``dpo-tui estimate … --probe`` does this)
or import :func:`measure` (``bench/vram_validate.py`` does, with randomly initialised models).

What runs:

- **TRL path** (``trl`` and ``datasets`` importable, a tokenizer, a model folder): the real
  ``DPOTrainer`` with ``max_steps=2``; its data collator is replaced by one that always returns the
  synthetic batch below, so every step sees the longest padded batch.
- **manual path** (no TRL, no tokenizer, or an in-memory model): the same computation TRL 1.16's
  ``DPOTrainer`` performs, step by step: policy forward on the 2·B concatenated sequences through a
  fused, chunked LM head (TRL's own kernel when importable), the reference forward under
  ``no_grad`` with the adapter disabled (or the reference copy) and checkpointing off, sigmoid DPO
  loss, backward, gradient clipping, the optimizer step, ``zero_grad(set_to_none=True)``. Bf16
  autocast as accelerate applies it; adapters in fp32 as PEFT makes them (bf16 for QLoRA, as TRL
  casts them).

The batch: B chosen rows of exactly ``seq_len`` tokens and B rejected rows 16 tokens shorter (so
there is padding and an attention mask, as in real DPO batches); the first quarter is the prompt.

Measured = ``torch.cuda.max_memory_reserved()`` over both steps + the CUDA context (what NVML sees
for this process beyond PyTorch's pool). Without a GPU the probe prints ``no GPU: probe skipped``
and exits 0. torch and friends are imported inside functions only (docs/design/import-worlds.md).

The spec, the synthetic batch and the manual step are in :mod:`.probe_steps`; their names are
re-exported here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from typing import Any

from ..core.errors import first_line
from .probe_steps import (
    PROMPT_FRACTION,
    REJECTED_SHORTER_BY,
    ProbeSpec,
    chunked_logprob_fn,
    fused_log_probs,
    make_batch,
    manual_steps,
    wrap_lora,
)

__all__ = [
    "PROMPT_FRACTION", "REJECTED_SHORTER_BY", "ProbeSpec", "chunked_logprob_fn", "cuda_context_bytes", "fused_log_probs",
    "gib", "load_for_manual", "main", "make_batch", "manual_steps", "measure_path", "random_model", "trl_available",
    "trl_steps", "warm_up_cuda", "wrap_lora",
]

# The name bench/vram_validate.py calls.
_chunked_logprob_fn = chunked_logprob_fn

# ---------------------------------------------------------------------------------------------
# memory bookkeeping


def cuda_context_bytes(device: int = 0) -> int:
    """Memory this process holds on the GPU outside PyTorch's pool (context, cuBLAS, NCCL)."""
    import torch

    torch.cuda.synchronize(device)
    reserved = torch.cuda.memory_reserved(device)
    used = _nvml_process_bytes(device)
    if used is None:
        free, total = torch.cuda.mem_get_info(device)
        used = total - free  # includes other processes: fine on a dedicated box, an overestimate otherwise
    return max(0, int(used) - int(reserved))


def _nvml_process_bytes(device: int) -> int | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        index = int(visible.split(",")[device]) if visible and visible.split(",")[device].strip().isdigit() else device
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid() and isinstance(proc.usedGpuMemory, int):
                return int(proc.usedGpuMemory)
    except Exception:  # noqa: BLE001 - containers often hide per-process figures
        return None
    return None


def warm_up_cuda(device: int = 0) -> int:
    """Create the context and cuBLAS handles (as training would), then return the context size."""
    import torch

    torch.cuda.set_device(device)
    a = torch.randn(256, 256, device=f"cuda:{device}", dtype=torch.bfloat16)
    (a @ a).sum().item()
    del a
    torch.cuda.empty_cache()
    return cuda_context_bytes(device)


# ---------------------------------------------------------------------------------------------
# the TRL path


def trl_available() -> bool:
    try:
        import datasets  # noqa: F401
        from trl import DPOConfig, DPOTrainer  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken TRL install means the torch path, never a crash
        return False
    return True


def trl_steps(model_path: str, spec: ProbeSpec, device: int = 0) -> dict[str, Any]:
    """Two steps of the real ``DPOTrainer`` on the synthetic longest batch."""
    import tempfile

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[spec.precision]
    # The probe only measures memory: it never runs code shipped with a model folder.
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=False)
    load_kwargs: dict[str, Any] = {"dtype": dtype, "device_map": {"": device}, "trust_remote_code": False}
    if spec.method == "qlora":
        from transformers import BitsAndBytesConfig

        load_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16
        )
    model = AutoModelForCausalLM.from_pretrained(model_path, **load_kwargs)
    peft_config = None
    if spec.method in ("lora", "qlora"):
        from peft import LoraConfig

        targets: Any = "all-linear" if spec.lora_targets == ["all-linear"] else spec.lora_targets
        peft_config = LoraConfig(r=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout, target_modules=targets, task_type="CAUSAL_LM")
    rows = [{"prompt": "Say hi.", "chosen": " Hi.", "rejected": " No."}] * (2 * spec.batch * spec.steps)
    vocab = model.get_output_embeddings().weight.shape[0]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    batch = make_batch(spec, vocab, "cpu", pad_id=pad_id)
    with tempfile.TemporaryDirectory(prefix="dpo-tui-probe-") as out:
        args = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=spec.batch,
            max_steps=spec.steps,
            max_length=spec.seq_len,
            learning_rate=spec.learning_rate,
            beta=spec.beta,
            gradient_checkpointing=spec.grad_ckpt,
            bf16=spec.precision == "bf16",
            fp16=spec.precision == "fp16",
            optim=spec.optimizer,
            precompute_ref_log_probs=spec.precompute_ref,
            model_init_kwargs={"dtype": dtype},
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=spec.seed,
        )
        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=peft_config)
        ref_keys = spec.precompute_ref

        def collate(_examples: list[dict[str, Any]]) -> dict[str, Any]:
            out_batch = {k: v.clone() for k, v in batch.items()}
            if ref_keys:
                out_batch["ref_chosen_logps"] = torch.zeros(spec.batch)
                out_batch["ref_rejected_logps"] = torch.zeros(spec.batch)
            return out_batch

        trainer.data_collator = collate
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        trainer.train()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return {
        "peak_reserved": int(torch.cuda.max_memory_reserved(device)),
        "peak_allocated": int(torch.cuda.max_memory_allocated(device)),
        "seconds": round(seconds, 3),
        "path": "trl",
        "loss": None,
    }


def load_for_manual(model_path: str, spec: ProbeSpec, device: int = 0) -> tuple[Any, Any]:
    """The model (and, for full fine-tuning, its reference copy) as TRL would load them."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[spec.precision]
    kwargs: dict[str, Any] = {"dtype": dtype, "device_map": {"": device}, "attn_implementation": "sdpa", "trust_remote_code": False}
    if spec.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16
        )
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    ref = None
    if spec.method == "full" and not spec.precompute_ref:
        ref = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    return model, ref


def random_model(config_path: str, spec: ProbeSpec, device: int = 0) -> tuple[Any, Any]:
    """A randomly initialised model from a bare ``config.json`` (same memory as the real weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with open(config_path, encoding="utf-8") as fh:
        cfg = json.load(fh)
    model_type = cfg.pop("model_type")
    for key in ("architectures", "torch_dtype", "dtype", "quantization_config", "auto_map", "transformers_version"):
        cfg.pop(key, None)
    config = AutoConfig.for_model(model_type, **cfg)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[spec.precision]

    def build() -> Any:
        with torch.device(f"cuda:{device}"):
            m = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
        return m.requires_grad_(False)

    model = build()
    ref = build() if spec.method == "full" and not spec.precompute_ref else None
    return model, ref


def measure_path(model_path: str, spec: ProbeSpec, device: int = 0, use_trl: str = "auto") -> dict[str, Any]:
    """Probe a model folder, hub id or bare config.json (random weights): TRL path when possible; OOM is a result."""
    import torch

    context = warm_up_cuda(device)
    bare_config = model_path.endswith(".json") and os.path.isfile(model_path)
    has_tokenizer = any(os.path.exists(os.path.join(model_path, f)) for f in ("tokenizer.json", "tokenizer.model", "vocab.json"))
    want_trl = use_trl == "yes" or (use_trl == "auto" and trl_available() and (has_tokenizer or not os.path.isdir(model_path)))
    want_trl = want_trl and not bare_config
    try:
        if bare_config:
            if spec.method == "qlora":
                raise ValueError("a bare config.json has no weights to quantise: probe QLoRA on a model folder")
            model, ref = random_model(model_path, spec, device)
            result = manual_steps(model, spec, ref_model=ref, device=device)
        elif want_trl:
            result = trl_steps(model_path, spec, device)
        else:
            model, ref = load_for_manual(model_path, spec, device)
            result = manual_steps(model, spec, ref_model=ref, device=device)
    except torch.OutOfMemoryError as exc:
        result = {"oom": True, "error": first_line(exc), "peak_reserved": int(torch.cuda.max_memory_reserved(device))}
    except (ValueError, ImportError, OSError) as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["context"] = context
    if result.get("peak_reserved") is not None and not result.get("oom"):
        result["measured"] = result["peak_reserved"] + context
    result["device"] = torch.cuda.get_device_name(device)
    result["spec"] = asdict(spec)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpo_tui.worker.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON file (or inline JSON): {model, config, padded_length, gpu}")
    parser.add_argument("--trl", choices=("auto", "yes", "no"), default="auto", help="use the real DPOTrainer (default: when installed)")
    args = parser.parse_args(argv)
    if args.spec.lstrip().startswith("{"):
        text = args.spec
    else:
        with open(args.spec, encoding="utf-8") as fh:
            text = fh.read()
    payload = json.loads(text)
    try:
        import torch
    except ImportError:
        print("no GPU: probe skipped (torch is not installed)")
        return 0
    if not torch.cuda.is_available():
        print("no GPU: probe skipped")
        return 0
    config = payload.get("config", {})
    seq_len = int(payload.get("padded_length") or config.get("max_length", 1024))
    seq_len = min(seq_len, int(config.get("max_length", seq_len)))
    spec = ProbeSpec.from_config(config, seq_len)
    gpu = int(payload.get("gpu", 0))
    result = measure_path(payload["model"], spec, device=gpu, use_trl=args.trl)
    sys.stdout.write(json.dumps({"probe": result}, default=str) + "\n")
    return 0 if not result.get("oom") else 3


def gib(n: float | None) -> str:
    return "?" if n is None or (isinstance(n, float) and math.isnan(n)) else f"{n / 1024**3:.2f} GiB"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
