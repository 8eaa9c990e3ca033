"""What a probe runs on the GPU: the spec, the synthetic longest batch, and the manual DPO step.

The manual path is the same computation TRL 1.16's ``DPOTrainer`` performs, step by step (see
:mod:`.probe`); it serves models without a tokenizer or TRL, bare configs with random weights, and
``bench/vram_validate.py``. torch, transformers and PEFT are imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
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


def chunked_logprob_fn() -> Any:
    """TRL's chunked log-prob kernel when TRL is installed (needs only torch + transformers), else None."""
    try:
        from trl.kernels import ChunkedLogProbFunction

        return ChunkedLogProbFunction
    except Exception:  # noqa: BLE001 - any import failure means the torch fallback
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
        import bitsandbytes as bnb

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
    kernel = chunked_logprob_fn()
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

