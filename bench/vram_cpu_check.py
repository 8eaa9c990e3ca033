#!/usr/bin/env python3
"""Check the VRAM estimate's tensor terms against the live tensor bytes of real TRL DPO steps, on CPU.

For each case: build a randomly initialised model from a config with the *real widths* of a common
architecture (hidden size, heads, kv-heads, intermediate size, vocabulary; depth cut to one or two
layers so it fits in a few GB of RAM), wrap it in ``trl.DPOTrainer`` with the ``DPOConfig`` fields
``dpo_tui/worker/train_setup.py`` sets (precision, checkpointing, optimizer, LoRA via a PEFT config),
and run two real optimizer steps on random-token preference pairs. Attention is what transformers
picks when none is named, as in the product (SDPA; eager for Gemma-2). A ``TorchDispatchMode`` counts the
bytes of every tensor storage from its creation to its release, so the peak is what the tensors
occupied (the quantity ``torch.cuda.max_memory_allocated`` reports on a GPU), with the phase it
happened in. The estimate is ``vram.estimate(..., device="cpu")``: no CUDA context, no allocator slack.

Usage:  nice -n 15 python bench/vram_cpu_check.py [--arch NAME,...] [--quick] [--json rows.json] [--out report.md]
        python bench/vram_cpu_check.py --device cuda   (the same grid on a GPU, torch.cuda.max_memory_allocated)
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import statistics
import sys
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dpo_tui.core import vram  # noqa: E402
from dpo_tui.core.model_config import info_from_config  # noqa: E402
from dpo_tui.core.model_info import LinearGroup  # noqa: E402

GiB = 1024**3
MiB = 1024**2

# Real widths (from each family's config.json); depth is the bench's choice (``layers`` below).
ARCHS: dict[str, dict[str, Any]] = {
    "Llama-3.2-1B": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
                         max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5),
    "Qwen2.5-0.5B": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                         max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "Mistral-7B": dict(model_type="mistral", hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                       num_key_value_heads=8, head_dim=128, vocab_size=32768, tie_word_embeddings=False,
                       max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-5, sliding_window=None),
    "Gemma-2-2B": dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216, num_attention_heads=8,
                       num_key_value_heads=4, head_dim=256, vocab_size=256000, tie_word_embeddings=True,
                       max_position_embeddings=8192, final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                       query_pre_attn_scalar=256, sliding_window=4096, rms_norm_eps=1e-6),
    "Phi-3-mini": dict(model_type="phi3", hidden_size=3072, intermediate_size=8192, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32064, tie_word_embeddings=False,
                       max_position_embeddings=4096, rope_theta=10000.0, rms_norm_eps=1e-5),
}


@dataclass
class Case:
    arch: str
    method: str  # lora | full
    precision: str  # fp32 | bf16
    ckpt: bool
    batch: int
    seq: int
    layers: int = 2
    quick: bool = False

    def label(self) -> str:
        return f"{self.method} {self.precision} {'ckpt' if self.ckpt else 'no-ckpt'} B{self.batch} S{self.seq} L{self.layers}"


def _grid() -> list[Case]:
    # A fractional grid: across the cases every factor (method, precision, checkpointing, batch,
    # length) takes both values, not every combination. Trimmed to fit ~15 minutes on two shared
    # cores: Qwen2.5-0.5B carries most of the grid; the wider models run one layer, short sequences
    # and fewer cases (Gemma-2's 256k vocabulary: LoRA only, full fine-tuning would need ~10 GB).
    q, ll, m, p, g = "Qwen2.5-0.5B", "Llama-3.2-1B", "Mistral-7B", "Phi-3-mini", "Gemma-2-2B"
    return [
        Case(q, "lora", "fp32", True, 1, 128, quick=True),
        Case(q, "lora", "fp32", False, 2, 256),
        Case(q, "lora", "bf16", True, 2, 128),
        Case(q, "full", "fp32", False, 2, 256, quick=True),
        Case(q, "full", "fp32", True, 1, 128),
        Case(q, "full", "bf16", False, 1, 128),
        Case(ll, "lora", "bf16", False, 1, 128),
        Case(ll, "lora", "fp32", True, 2, 64),
        Case(ll, "full", "fp32", True, 1, 128),
        Case(m, "lora", "bf16", True, 1, 64, layers=1),
        Case(m, "full", "bf16", False, 1, 64, layers=1),
        Case(p, "lora", "fp32", False, 1, 64, layers=1),
        Case(p, "full", "bf16", True, 1, 64, layers=1),
        Case(g, "lora", "bf16", False, 1, 64, layers=1),
        Case(g, "lora", "fp32", True, 2, 64, layers=1),
    ]


GRID = _grid()
# Cases that did not inform the formulas: run after the model was fitted to GRID, as a check on it.
HOLDOUT = [
    Case("Qwen2.5-0.5B", "lora", "bf16", False, 2, 256),
    Case("Llama-3.2-1B", "full", "bf16", True, 2, 64),
    Case("Phi-3-mini", "lora", "bf16", True, 2, 128, layers=1),
    Case("Mistral-7B", "lora", "fp32", False, 1, 128, layers=1),
]


# ---------------------------------------------------------------------------------------------
# the tracker


class LiveBytes:
    """Live tensor bytes under a TorchDispatchMode: a storage counts from the op that created it to its release."""

    def __init__(self) -> None:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.peak_phase = ""
        self.phase = "setup"
        self.phase_peaks: dict[str, int] = {}

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
                out = func(*args, **(kwargs or {}))
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor) and t.device.type != "meta":
                        tracker._add(t)
                return out

        self.mode = _Mode()
        self._torch = torch

    def _free(self, key: int) -> None:
        n = self.live.pop(key, 0)
        self.current -= n

    def _add(self, t: Any) -> None:
        st = t.untyped_storage()
        key = st.data_ptr()
        n = st.nbytes()
        if not n or key in self.live:
            return
        self.live[key] = n
        self.current += n
        weakref.finalize(st, self._free, key)
        phase = self.current_phase()
        if self.current > self.phase_peaks.get(phase, 0):
            self.phase_peaks[phase] = self.current
        if self.current > self.peak:
            self.peak = self.current
            self.peak_phase = phase

    def current_phase(self) -> str:
        node = self._torch._C._current_autograd_node()
        if node is not None:
            return "backward head" if "ChunkedLogProb" in node.name() else "backward layers"
        return self.phase


_ORIGINAL_HEAD: dict[str, Any] = {}


def _install_phase_markers(tracker: LiveBytes, trainer: Any, ref_model: Any) -> None:
    import torch
    from trl.kernels import chunked_logprob

    def pre_hook(module, args, kwargs):
        tracker.phase = "policy forward" if torch.is_grad_enabled() else "reference forward"

    trainer.model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    if ref_model is not None:
        ref_model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    fn = chunked_logprob.ChunkedLogProbFunction
    original = _ORIGINAL_HEAD.setdefault("forward", fn.forward)

    def head_forward(ctx, *args, **kwargs):
        if torch.is_grad_enabled() or tracker.phase == "policy forward":
            tracker.phase = "loss/logits"
        return original(ctx, *args, **kwargs)

    fn.forward = staticmethod(head_forward)
    acc = trainer.accelerator
    backward = acc.backward

    def marked_backward(loss, **kwargs):
        out = backward(loss, **kwargs)
        tracker.phase = "optimizer step"  # gradient clipping and the step
        return out

    acc.backward = marked_backward


# ---------------------------------------------------------------------------------------------
# one case


def _tokenizer(vocab_words: int = 512):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    vocab.update({f"t{i}": i + 3 for i in range(vocab_words)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def _dataset(case: Case, rows: int, seed: int = 0):
    import random

    from datasets import Dataset

    rng = random.Random(seed)
    prompt_len = case.seq // 4
    words = lambda n: " ".join(f"t{rng.randrange(512)}" for _ in range(n))  # noqa: E731
    # chosen fills max_length exactly (TRL adds EOS); rejected is shorter, so every batch carries padding
    data = [
        {"prompt": words(prompt_len), "chosen": words(case.seq - prompt_len - 1), "rejected": words(case.seq - prompt_len - 9)}
        for _ in range(rows)
    ]
    return Dataset.from_list(data)


def _model_config(case: Case):
    from transformers import AutoConfig

    cfg = dict(ARCHS[case.arch])
    model_type = cfg.pop("model_type")
    return AutoConfig.for_model(model_type, num_hidden_layers=case.layers, **cfg)


def _model_info(case: Case, model: Any):
    """The ModelInfo the console would read: config facts plus the linear layers as the weights list them."""
    import torch

    cfg = dict(ARCHS[case.arch], num_hidden_layers=case.layers)
    info = info_from_config(cfg, name=case.arch)
    groups: dict[str, list[int]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and not name.endswith("lm_head"):
            g = groups.setdefault(name.rsplit(".", 1)[-1], [0, 0, 0, 0])
            g[0] += 1
            g[1] += mod.in_features
            g[2] += mod.out_features
            g[3] += mod.weight.numel()
    info.linear_groups = {k: LinearGroup(*v) for k, v in groups.items()}
    info.param_count = sum(p.numel() for p in model.parameters())
    return info


def estimate_case(case: Case, device: str = "cpu") -> tuple[Any, dict[str, int]]:
    """The console's estimate for ``case`` (tensor terms only) and its per-moment totals.

    On ``cuda`` the same tensor terms with TRL's Triton kernel for the LM head (what
    ``torch.cuda.max_memory_allocated`` sees: no context, no allocator slack)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(_model_config(case))
    info = _model_info(case, model)
    run_cfg = SimpleNamespace(
        max_length=case.seq, method=case.method, per_device_batch_size=case.batch, lora_rank=16,
        lora_target_modules=["all-linear"], precision=case.precision, gradient_checkpointing=case.ckpt,
        optimizer="adamw_torch", gradient_accumulation=1, precompute_ref_log_probs=False, nproc=1, strategy="ddp",
    )
    wl = dataclasses.replace(vram.workload_for(run_cfg, case.seq), metric="allocated",
                             head_kernel="torch" if device == "cpu" else "triton",
                             optimizer_foreach=device != "cpu")
    br = vram.compute(vram.Arch.from_model(info), wl)
    if device == "cpu":  # the console's own entry point, to check it agrees with the terms
        est = vram.estimate(info, run_cfg, padded_length=case.seq, device="cpu", suggest=False)
        assert est.total_bytes == br.total, (est.total_bytes, br.total)
    return SimpleNamespace(total_bytes=br.total, components=br.components, peak_phase=br.phase), br.phases


def run_case(case: Case, device: str = "cpu") -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging
    from trl import DPOConfig, DPOTrainer

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    dtype = torch.bfloat16 if case.precision == "bf16" else torch.float32
    config = _model_config(case)
    tracker = LiveBytes()
    on_cuda = device == "cuda"
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base_alloc = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    with tracker.mode if not on_cuda else _null():
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
            ref = None
            if case.method == "full":
                ref = AutoModelForCausalLM.from_config(config, dtype=dtype)
        params = sum(p.numel() for p in model.parameters())
        peft_config = None
        if case.method == "lora":
            from peft import LoraConfig

            peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
        import tempfile

        with tempfile.TemporaryDirectory() as out_dir:
            args = DPOConfig(
                output_dir=out_dir, beta=0.1, learning_rate=1e-5, max_steps=2,
                per_device_train_batch_size=case.batch, gradient_accumulation_steps=1, max_length=case.seq,
                optim="adamw_torch", max_grad_norm=1.0, bf16=case.precision == "bf16", use_cpu=not on_cuda,
                gradient_checkpointing=case.ckpt, save_strategy="no", report_to="none", disable_tqdm=True,
                dataloader_num_workers=0, logging_steps=1, logging_nan_inf_filter=False, seed=0,
            )
            trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=_dataset(case, 2 * case.batch),
                                 processing_class=_tokenizer(), peft_config=peft_config)
            _install_phase_markers(tracker, trainer, ref)
            # the peak of building the models (random init temporaries) is not part of training
            tracker.peak, tracker.peak_phase, tracker.phase_peaks = tracker.current, "before training", {}
            if on_cuda:
                torch.cuda.reset_peak_memory_stats()
            tracker.phase = "policy forward"
            trainer.train()
        tracker.phase = "done"
    seconds = time.perf_counter() - t0
    est, phases = estimate_case(case, device)
    measured = (torch.cuda.max_memory_allocated() - base_alloc) if on_cuda else tracker.peak
    row = {
        "case": asdict(case), "device": device, "label": case.label(), "estimate": est.total_bytes, "components": est.components,
        "estimate_phase": est.peak_phase, "estimate_phases": phases, "measured": measured, "measured_phase": tracker.peak_phase if not on_cuda else "-",
        "phase_peaks": tracker.phase_peaks, "params": params, "seconds": round(seconds, 1),
        "error": est.total_bytes / measured - 1 if measured else None,
    }
    del trainer, model, ref
    gc.collect()
    if "forward" in _ORIGINAL_HEAD:
        from trl.kernels import chunked_logprob

        chunked_logprob.ChunkedLogProbFunction.forward = staticmethod(_ORIGINAL_HEAD["forward"])
    return row


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------------------------------------
# report


def _print_row(row: dict[str, Any]) -> None:
    comps = " ".join(f"{k[:4]}={v / MiB:.0f}" for k, v in row["components"].items() if v)
    meas = " ".join(f"{k}={v / MiB:.0f}" for k, v in row.get("phase_peaks", {}).items())
    ests = " ".join(f"{k}={v / MiB:.0f}" for k, v in row.get("estimate_phases", {}).items())
    print(f"{row['case']['arch']:13s} {row['label']:34s} est {row['estimate'] / MiB:7.0f}  meas {row['measured'] / MiB:7.0f} MiB  "
          f"{row['error'] * 100:+6.1f}%  [{row['measured_phase']} | est {row['estimate_phase']}]  {row.get('seconds', '')}s  [{comps}]"
          f"\n    measured by phase: {meas}\n    estimated by moment: {ests}", flush=True)


def _p90(values: list[float]) -> float:
    """The 90th percentile, linearly interpolated (numpy's default)."""
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else (values[0] if values else math.nan)


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    errs = [r["error"] for r in rows if r.get("error") is not None]
    if not errs:
        return {}
    abs_errs = [abs(e) for e in errs]
    return {"cases": len(errs), "median_abs": statistics.median(abs_errs), "p90_abs": _p90(abs_errs),
            "worst_under": min(errs), "worst_over": max(errs)}


def render(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        "| architecture | case | estimate MiB | measured MiB | error | peak phase (measured) | peak phase (estimate) |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        err = r.get("error")
        lines.append(
            f"| {r['case']['arch']} | {r['label']} | {r['estimate'] / MiB:.0f} | {r['measured'] / MiB:.0f} | "
            f"{err * 100:+.1f}% | {r['measured_phase']} | {r['estimate_phase']} |"
        )
    s = summary(rows)
    if s:
        lines += ["", f"Cases: {s['cases']}. Median |error| {s['median_abs'] * 100:.1f}%, P90 {s['p90_abs'] * 100:.1f}%, "
                      f"worst under-count {s['worst_under'] * 100:+.1f}%, worst over-count {s['worst_over'] * 100:+.1f}%."]
    return header + "\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", help="comma-separated subset of: " + ", ".join(ARCHS))
    parser.add_argument("--quick", action="store_true", help="only the cases marked quick")
    parser.add_argument("--holdout", action="store_true", help="the held-out cases instead of the grid")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--json", help="write the rows as JSON")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--from-json", help="re-estimate the measured rows of an earlier --json run (no training)")
    args = parser.parse_args(argv)
    import torch

    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
        for row in rows:
            est, phases = estimate_case(Case(**row["case"]), row.get("device", "cpu"))
            row.update(estimate=est.total_bytes, components=est.components, estimate_phase=est.peak_phase,
                       estimate_phases=phases, error=est.total_bytes / row["measured"] - 1)
            _print_row(row)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        report = render(rows, "re-estimated from " + args.from_json)
        print()
        print(report)
        if args.out:
            Path(args.out).write_text(report)
        return 0

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: --device cuda refused", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    cases = [c for c in (HOLDOUT if args.holdout else GRID) if c.quick or not args.quick]
    if args.arch:
        wanted = {a.strip() for a in args.arch.split(",")}
        cases = [c for c in cases if c.arch in wanted]
    import peft
    import transformers
    import trl

    header = (f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
              f"peft {peft.__version__}; device {args.device}")
    print("#", header, flush=True)
    rows = []
    t0 = time.perf_counter()
    for case in cases:
        row = run_case(case, args.device)
        rows.append(row)
        _print_row(row)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    report = render(rows, f"{header}; wall time {time.perf_counter() - t0:.0f} s")
    print()
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
