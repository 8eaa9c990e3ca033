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
and exits 0. torch and friends are imported inside functions only (DESIGN.md §2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

REJECTED_SHORTER_BY = 16
PROMPT_FRACTION = 0.25


@dataclass
class ProbeSpec:
    method: str = "lora"
    batch: int = 1
    seq_len: int = 1024
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["all-linear"])
    precision: str = "bf16"
    grad_ckpt: bool = True
    optimizer: str = "adamw_torch"
    precompute_ref: bool = False
    beta: float = 0.1
    learning_rate: float = 1e-5
    steps: int = 2
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any], seq_len: int) -> ProbeSpec:
        precision = cfg.get("precision", "auto")
        return cls(
            method=cfg.get("method", "lora"),
            batch=int(cfg.get("per_device_batch_size", 1)),
            seq_len=int(seq_len),
            lora_rank=int(cfg.get("lora_rank", 16)),
            lora_alpha=int(cfg.get("lora_alpha", 32)),
            lora_dropout=float(cfg.get("lora_dropout", 0.05)),
            lora_targets=list(cfg.get("lora_target_modules", ["all-linear"])),
            precision="bf16" if precision == "auto" else precision,
            grad_ckpt=bool(cfg.get("gradient_checkpointing", True)),
            optimizer=cfg.get("optimizer", "adamw_torch"),
            precompute_ref=bool(cfg.get("precompute_ref_log_probs", False)),
            beta=float(cfg.get("beta", 0.1)),
            learning_rate=float(cfg.get("learning_rate", 1e-5)),
        )


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
# the synthetic batch


def make_batch(spec: ProbeSpec, vocab: int, device: Any, pad_id: int = 0) -> dict[str, Any]:
    """B chosen rows of ``seq_len`` tokens, B rejected rows a little shorter (right-padded), like TRL's collator."""
    import torch

    gen = torch.Generator().manual_seed(spec.seed)
    rows = 2 * spec.batch
    S = spec.seq_len
    input_ids = torch.randint(3, max(4, vocab - 1), (rows, S), generator=gen)
    attention = torch.ones(rows, S, dtype=torch.long)
    short = max(1, S - min(REJECTED_SHORTER_BY, S // 4))
    attention[spec.batch :, short:] = 0
    input_ids[attention == 0] = pad_id
    prompt = max(1, int(S * PROMPT_FRACTION))
    completion = attention.clone()
    completion[:, :prompt] = 0
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention.to(device),
        "completion_mask": completion.to(device),
    }


# ---------------------------------------------------------------------------------------------
# fused LM head (what TRL 1.16 patches into the model)


def _chunked_logprob_fn():
    """TRL's chunked log-prob kernel when TRL is installed (needs only torch + transformers), else None."""
    try:
        from trl.kernels import ChunkedLogProbFunction

        return ChunkedLogProbFunction
    except Exception:  # noqa: BLE001
        return None


def _fallback_logprobs(hidden: Any, weight: Any, targets: Any, chunk: int = 256) -> Any:
    """Log-probs of ``targets`` without keeping tokens × vocabulary logits (per-chunk recomputation)."""
    import torch
    from torch.utils.checkpoint import checkpoint

    def piece(h: Any, t: Any) -> Any:
        logits = (h @ weight.t()).float()
        return logits.gather(-1, t.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)

    outs = [checkpoint(piece, hidden[i : i + chunk], targets[i : i + chunk], use_reentrant=False) for i in range(0, hidden.shape[0], chunk)]
    return torch.cat(outs) if outs else hidden.new_zeros(0)


def fused_log_probs(hf_model: Any, input_ids: Any, attention_mask: Any, labels: Any, kernel: Any = None) -> Any:
    """Per-token log-probs of ``labels`` (shifted), computing the LM head in tiles only where labels ≠ -100."""
    out = hf_model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = out.last_hidden_state[:, :-1]
    labels = labels[:, 1:]
    mask = labels != -100
    head = hf_model.get_output_embeddings()
    selected = hidden[mask]
    targets = labels[mask]
    if kernel is not None:
        outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
        per = kernel.apply(selected, head.weight, head.bias, targets, 1.0, 32768, None, 1.0, outputs)
        logp = per[0]
    else:
        logp = _fallback_logprobs(selected, head.weight, targets)
    return logp.new_zeros(mask.shape).masked_scatter(mask, logp)


# ---------------------------------------------------------------------------------------------
# the manual DPO step


def _hf_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _make_optimizer(params: list[Any], spec: ProbeSpec) -> Any:
    import torch

    if spec.optimizer == "adamw_torch_fused":
        return torch.optim.AdamW(params, lr=spec.learning_rate, fused=True)
    if spec.optimizer == "adamw_8bit":
        import bitsandbytes as bnb  # noqa: F401 - raises ImportError with a clear name

        return bnb.optim.AdamW8bit(params, lr=spec.learning_rate)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.learning_rate)
    if spec.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=spec.learning_rate, scale_parameter=False, relative_step=False)
    return torch.optim.AdamW(params, lr=spec.learning_rate)  # adamw_torch: foreach on CUDA


def wrap_lora(model: Any, spec: ProbeSpec) -> Any:
    """Add a fresh LoRA adapter the way TRL 1.16 does (fp32 adapters; bf16 for a 4-bit base)."""
    import torch
    from peft import LoraConfig, get_peft_model

    targets: Any = spec.lora_targets
    if targets == ["all-linear"]:
        targets = "all-linear"
    config = LoraConfig(r=spec.lora_rank, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout, target_modules=targets, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    if getattr(model, "is_loaded_in_4bit", False) or spec.method == "qlora":
        for name, param in peft_model.named_parameters():
            if param.requires_grad and "lora_magnitude_vector" not in name:
                param.data = param.data.to(torch.bfloat16)
    return peft_model


def _disable_dropout(model: Any) -> None:
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def manual_steps(model: Any, spec: ProbeSpec, ref_model: Any = None, device: int | str = 0) -> dict[str, Any]:
    """Run ``spec.steps`` DPO steps the way TRL 1.16 computes them; returns peak memory figures.

    ``model`` is a transformers causal LM already on the GPU; for LoRA/QLoRA it is wrapped here (and
    unwrapped again afterwards, so a bench can reuse the base). For full fine-tuning without
    precomputed log-probs, ``ref_model`` must be a second copy.
    """
    import warnings

    is_peft = spec.method in ("lora", "qlora")
    policy = wrap_lora(model, spec) if is_peft else model
    hf = _hf_model(policy)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return _run_manual(policy, hf, spec, ref_model, device, is_peft)
    finally:
        # leave the base model as it came, also after an OOM (a bench reuses it)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if getattr(hf, "is_gradient_checkpointing", False):
                hf.gradient_checkpointing_disable()
            if spec.grad_ckpt and is_peft and hasattr(hf, "disable_input_require_grads"):
                with contextlib.suppress(Exception):
                    hf.disable_input_require_grads()
        if is_peft:
            policy.unload()
        else:
            hf.requires_grad_(False)
            for p in hf.parameters():
                p.grad = None


def _run_manual(policy: Any, hf: Any, spec: ProbeSpec, ref_model: Any, device: int | str, is_peft: bool) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    _disable_dropout(policy)
    if ref_model is not None:
        _disable_dropout(ref_model)
        ref_model.eval()
        ref_model.requires_grad_(False)
    if not is_peft:
        hf.requires_grad_(True)
    policy.train()
    ckpt_kwargs = {"use_reentrant": False}
    if spec.grad_ckpt:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
        if is_peft:
            hf.enable_input_require_grads()
    kernel = _chunked_logprob_fn()
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = _make_optimizer(trainable, spec)
    vocab = hf.get_output_embeddings().weight.shape[0]
    dev = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    cuda = dev.type == "cuda"
    batch = make_batch(spec, vocab, dev)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec.precision)
    autocast = (lambda: torch.autocast(dev.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    ref_logps_fixed = None
    if spec.precompute_ref:
        with torch.no_grad(), autocast():
            lp = fused_log_probs(hf, batch["input_ids"], batch["attention_mask"], labels, kernel).sum(-1)
        ref_logps_fixed = lp.chunk(2)
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    losses = []
    for _ in range(spec.steps):
        with autocast():
            logps = fused_log_probs(hf, batch["input_ids"], batch["attention_mask"], labels, kernel).sum(-1)
            chosen, rejected = logps.chunk(2)
            if ref_logps_fixed is not None:
                ref_chosen, ref_rejected = ref_logps_fixed
            else:
                with torch.no_grad():
                    was = hf.is_gradient_checkpointing
                    if was:
                        hf.gradient_checkpointing_disable()
                    try:
                        if is_peft:
                            with policy.disable_adapter():
                                ref = fused_log_probs(hf, batch["input_ids"], batch["attention_mask"], labels, kernel)
                        else:
                            ref = fused_log_probs(ref_model, batch["input_ids"], batch["attention_mask"], labels, kernel)
                    finally:
                        if was:
                            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
                    ref_chosen, ref_rejected = ref.sum(-1).chunk(2)
            margin = (chosen - ref_chosen) - (rejected - ref_rejected)
            loss = -F.logsigmoid(spec.beta * margin).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    if cuda:
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    result = {
        "peak_reserved": int(torch.cuda.max_memory_reserved(dev)) if cuda else None,
        "peak_allocated": int(torch.cuda.max_memory_allocated(dev)) if cuda else None,
        "seconds": round(seconds, 3),
        "path": "manual" + ("+trl-kernel" if kernel is not None else "+fallback-head"),
        "loss": losses[-1] if losses else None,
    }
    del optimizer, trainable, batch, labels
    return result


# ---------------------------------------------------------------------------------------------
# the TRL path


def trl_available() -> bool:
    try:
        import datasets  # noqa: F401
        from trl import DPOConfig, DPOTrainer  # noqa: F401
    except Exception:  # noqa: BLE001
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
        result = {"oom": True, "error": str(exc).splitlines()[0], "peak_reserved": int(torch.cuda.max_memory_reserved(device))}
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
