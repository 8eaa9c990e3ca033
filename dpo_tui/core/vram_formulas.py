"""The VRAM formulas: peak GPU memory of one training configuration, as pure arithmetic on the model's facts.

One cohesive model of memory, kept in one module: the static terms, the activations, the LM head and
the four peak moments are computed together because each moment sums terms from all of them. The
facts behind the numbers are in ``docs/design/vram.md``; :mod:`.vram` turns a RunConfig into a
:class:`Workload` and adds verdicts and suggestions. The terms are worked out for what this
project actually runs: TRL 1.16's ``DPOTrainer`` on transformers 5 with PEFT, SDPA attention and
bf16 autocast. What is counted (bytes, per GPU):

weights
    2 B/param (bf16/fp16) or 4 (fp32); QLoRA: bitsandbytes NF4 with double quantisation
    (≈ 0.516 B/param) for the linear layers inside the blocks, embeddings/``lm_head``/norms left in
    bf16 (TRL 1.16 does not upcast them).
reference
    nothing with LoRA/QLoRA (the adapter is switched off) or with precomputed reference log-probs;
    a second full copy for full fine-tuning otherwise.
trainable, gradients, optimizer
    LoRA parameters ``Σ r·(d_in + d_out)`` over the targeted linear layers, kept in fp32 by PEFT
    (bf16 for QLoRA: TRL casts them); gradients in the parameter dtype; AdamW keeps two states in
    the parameter dtype (8-bit AdamW ≈ 2 B/param). Full fine-tuning: gradients and states for every
    weight. ``adamw_torch`` (foreach) adds one state-sized temporary at the optimizer step.
activations
    per token and layer, what autograd saves in an HF decoder layer (measured with saved-tensor
    hooks, see ``docs/design/vram.md``): the two RMSNorm fp32 copies, q/k/v/output of SDPA (keys and values
    repeated to all heads when the batch is padded), the gated MLP's three ``i``-wide tensors, the
    inputs that LoRA/full fine-tuning must keep, and the padding mask bias that SDPA's
    memory-efficient kernel stores. With gradient checkpointing only each layer's input is stored,
    plus one layer recomputed during backward. DPO doubles the tokens: chosen and rejected run as one
    batch of 2·B sequences. The reference forward (no grad) adds one layer's transient.
logits
    TRL 1.16 computes log-probs with a fused, chunked LM head (4096 tokens × 32768 vocabulary tiles)
    and never materialises ``tokens × vocabulary``; on a GPU a Triton kernel folds each tile, on CPU
    torch ops do, with fp32 temporaries of the tile (``head_kernel``). Older TRL keeps ≈ k bytes per
    token·vocab entry (k = 4 for 0.15–0.28, 6 for 0.29–1.15, 8 before).
overheads
    CUDA context (not visible to PyTorch) and the caching allocator's slack (reserved − allocated).

On CPU (``estimate(..., device="cpu")``) the terms were checked against live tensor bytes of real
TRL DPO steps (``bench/vram_cpu_check.py``, ``docs/vram-accuracy.md``).

The peak is the largest of four moments (reference forward, backward through the head, backward
through a layer, optimizer step); the breakdown shows the components at that moment, so it sums to
the total. :func:`compute` is pure and fast (well under a millisecond): the UI estimates per keystroke.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .model_info import ModelInfo

GiB = 1024**3
MiB = 1024**2

# --- calibration knobs (see docs/design/vram.md) ----------------------------------------------
CUDA_CONTEXT_BYTES = 600 * MiB
"""CUDA context + cuBLAS/cuDNN handles outside PyTorch's allocator (CUDA 12/13, lazy module loading)."""
ALLOCATOR_DYNAMIC_FRACTION = 0.08
"""Caching-allocator slack (reserved − allocated) as a fraction of the memory that comes and goes each step."""
ALLOCATOR_STATIC_FRACTION = 0.01
"""The same for weights and optimizer states (allocated once, little fragmentation)."""
QLORA_BYTES_PER_PARAM = 0.516
"""NF4 with double quantisation: 4 bits + 8/64 + 32/(64·256) bits of constants per weight."""
FUSED_TOKEN_CHUNK = 4096
FUSED_VOCAB_CHUNK = 32768
TORCH_TILE_FWD_BYTES = 12
"""Extra bytes per tile entry when TRL folds a logits tile with torch ops (no Triton, e.g. on CPU): the
fp32 scaled logits, plus the larger of the masked copy for the top-1 test or ``z − max`` and its exp."""
TORCH_TILE_BWD_BYTES = 29
"""The same in the backward: scaled logits twice (y, z), log p, p, the gradient (fp32 each), the
target mask (1 byte) and two fp32 temporaries of the gradient expression."""

OPTIMIZER_STATE_BYTES = {
    # bytes of optimizer state per trainable parameter, given the parameter's own byte width p
    "adamw_torch": lambda p: 2 * p,
    "adamw_torch_fused": lambda p: 2 * p,
    "adamw_8bit": lambda p: 2,
    "sgd": lambda p: 0,
    "adafactor": lambda p: 0.1,
}
OPTIMIZER_TEMP_STATES = {"adamw_torch": 1.0, "adamw_torch_fused": 0.0, "adamw_8bit": 0.0, "sgd": 0.0, "adafactor": 0.5}
"""Transient at the step, in units of one state tensor (foreach AdamW builds sqrt(v) for every parameter)."""

COMPONENTS = ("weights", "reference", "trainable", "gradients", "optimizer", "activations", "logits", "cuda_context", "allocator")
COMPONENT_LABELS = {
    "weights": "model weights",
    "reference": "reference model",
    "trainable": "LoRA parameters",
    "gradients": "gradients",
    "optimizer": "optimizer states",
    "activations": "activations",
    "logits": "LM head / logits",
    "cuda_context": "CUDA context",
    "allocator": "allocator overhead",
}

# LoRA target names → which tensor feeds them (targets that share an input share its saved copy
# when the adapter runs in the compute dtype).
_SOURCES = (
    ("attn_in", ("q_proj", "k_proj", "v_proj", "query", "key", "value", "c_attn", "qkv_proj", "wqkv", "query_key_value", "in_proj")),
    ("attn_out", ("o_proj", "out_proj", "dense", "wo", "attn.c_proj")),
    ("mlp_in", ("gate_proj", "up_proj", "w1", "w3", "fc1", "c_fc", "dense_h_to_4h", "gate_up_proj", "fc_in")),
    ("mlp_out", ("down_proj", "w2", "fc2", "dense_4h_to_h", "mlp.c_proj", "fc_out")),
)


def _source(name: str) -> str:
    low = name.lower()
    for source, names in _SOURCES:
        if low in names or any(low.endswith("." + n) for n in names):
            return source
    return low


# ---------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class Arch:
    """The model facts the formulas use (from :class:`~dpo_tui.core.models.ModelInfo`)."""

    params: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    groups: Mapping[str, tuple[int, int, int, int]]
    """linear layers in the blocks: name → (count, Σ in, Σ out, Σ numel)."""
    gated: bool = True
    experts_per_token: int = 1
    prequantized_bytes: int | None = None

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def linear_params(self) -> int:
        return sum(g[3] for g in self.groups.values())

    @classmethod
    def from_model(cls, m: ModelInfo) -> Arch:
        missing = [n for n in ("num_layers", "hidden_size", "vocab_size", "param_count") if not getattr(m, n)]
        if missing:
            raise ValueError(f"model facts missing: {', '.join(missing)}")
        h = int(m.hidden_size or 0)
        heads = int(m.num_heads or max(1, h // 128))
        head_dim = int(m.head_dim or h // heads)
        groups = {k: (g.count, g.in_features, g.out_features, g.numel) for k, g in (m.linear_groups or {}).items()}
        if not groups:
            from .model_config import config_linear_groups

            groups = {k: (g.count, g.in_features, g.out_features, g.numel) for k, g in config_linear_groups(m).items()}
        pre = None
        if m.quantization and m.weight_bytes:
            pre = int(m.weight_bytes)
        return cls(
            params=int(m.param_count or 0),
            layers=int(m.num_layers or 0),
            hidden=h,
            intermediate=int(m.intermediate_size or 4 * h),
            heads=heads,
            kv_heads=int(m.num_kv_heads or heads),
            head_dim=head_dim,
            vocab=int(m.vocab_size or 0),
            tied=bool(m.tied_embeddings),
            groups=groups,
            gated=bool(m.mlp_gated),
            experts_per_token=int(m.experts_per_token or 1) if m.num_experts else 1,
            prequantized_bytes=pre,
        )


@dataclass(frozen=True)
class Workload:
    """One training configuration, in the formulas' terms. ``objective='sft'`` serves the calibration tests."""

    method: str = "lora"
    batch: int = 1
    seq_len: int = 1024
    objective: str = "dpo"
    lora_rank: int = 16
    lora_targets: tuple[str, ...] = ("all-linear",)
    precision: str = "bf16"
    adapter_dtype: str | None = None
    """``fp32`` | ``bf16``; None = what PEFT/TRL 1.16 do (fp32 for LoRA, bf16 for QLoRA)."""
    autocast: bool = True
    peft_input_cast: bool = True
    """PEFT casts each adapter's input to the adapter dtype (recent PEFT does, also under autocast;
    PEFT ~0.7–0.13 skipped the cast under autocast). With fp32 adapters this gives every adapter a
    private bf16 copy of its input."""
    grad_ckpt: bool = True
    optimizer: str = "adamw_torch"
    accumulation: int = 1
    """Gradient accumulation: above 1, gradients stay allocated through the forward passes."""
    precompute_ref: bool = False
    logits: str | float = "fused"
    """``fused`` (TRL ≥ 1.16) or k, the bytes held per token·vocabulary entry."""
    completion_fraction: float = 1.0
    """Share of the tokens that are scored (completions); 1.0 = every position (conservative)."""
    padded: bool = True
    """Batches carry padding, so SDPA gets a mask (keys/values repeated, mask bias saved)."""
    nproc: int = 1
    strategy: str = "ddp"
    context_bytes: int = CUDA_CONTEXT_BYTES
    qlora_bytes_per_param: float = QLORA_BYTES_PER_PARAM
    optimizer_foreach: bool = True
    """torch's AdamW runs its multi-tensor (foreach) step on CUDA tensors; on CPU it loops over the
    parameters one at a time, holding two temporaries the size of the largest one."""
    head_kernel: str = "triton"
    """How TRL's fused LM head folds each logits tile: ``triton`` (a GPU kernel working in registers:
    only the tile itself is memory) or ``torch`` (the fallback on CPU: fp32 temporaries of the tile,
    :data:`TORCH_TILE_FWD_BYTES` / :data:`TORCH_TILE_BWD_BYTES` per tile entry)."""
    metric: str = "reserved"
    """What the number should match: ``reserved`` (PyTorch's reserved pool + CUDA context, what
    nvidia-smi shows) or ``allocated`` (``torch.cuda.max_memory_allocated``: no context, no slack)."""

    @property
    def sequences(self) -> int:
        return self.batch * (2 if self.objective == "dpo" else 1)

    @property
    def tokens(self) -> int:
        return self.sequences * self.seq_len


@dataclass
class Breakdown:
    components: dict[str, int]
    phase: str
    phases: dict[str, int]
    lora_params: int
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.components.values())


# ---------------------------------------------------------------------------------------------
# the formulas


def resolve_targets(arch: Arch, targets: Sequence[str]) -> tuple[dict[str, tuple[int, int, int, int]], list[str]]:
    """The linear groups a LoRA target list selects (``all-linear`` = every linear layer in the blocks)."""
    chosen: dict[str, tuple[int, int, int, int]] = {}
    unknown: list[str] = []
    for raw in targets:
        t = raw.strip()
        if not t:
            continue
        if t == "all-linear":
            chosen.update(arch.groups)
            continue
        last = t.split(".")[-1]
        hits = {k: v for k, v in arch.groups.items() if k in (t, last) or k.endswith("." + last)}
        if hits:
            chosen.update(hits)
        else:
            unknown.append(t)
    return chosen, unknown


def lora_param_count(arch: Arch, rank: int, targets: Sequence[str]) -> int:
    chosen, _ = resolve_targets(arch, targets)
    return sum(rank * (g[1] + g[2]) for g in chosen.values())


def _bytes_of(dtype: str) -> int:
    return 4 if dtype in ("fp32", "float32") else 2


def layer_activation_bytes(arch: Arch, wl: Workload, chosen: Mapping[str, tuple[int, int, int, int]]) -> tuple[float, float, float]:
    """(saved, backward transient, no-grad forward transient) bytes per token for one decoder layer."""
    c = _bytes_of(wl.precision)
    h, q, i, L = arch.hidden, arch.q_dim, arch.intermediate, max(1, arch.layers)
    kv_saved = q if wl.padded else arch.kv_dim  # transformers repeats K/V to every head when a mask is passed
    k = arch.experts_per_token

    norms = 2 * 4 * h  # HF RMSNorm keeps an fp32 copy of its input (twice per layer)
    attn = c * (2 * q + 2 * kv_saved) + 4 * arch.heads  # q, k, v, output + fp32 log-sum-exp
    if wl.padded:
        attn += c * (math.ceil(wl.seq_len / 16) * 16)  # mask bias saved by the memory-efficient kernel
    mlp = (3 if arch.gated else 2) * c * i * k
    saved: float = norms + attn + mlp

    source_width = {"attn_in": h, "attn_out": q, "mlp_in": h, "mlp_out": i * k}
    adapter = wl.adapter_dtype or ("bf16" if wl.method == "qlora" else "fp32")
    if wl.method == "full":
        saved += 2 * c * h  # RMSNorm weights need their normalised input
        saved += c * sum(source_width.values())  # every linear keeps its input for the weight gradient
    else:
        if wl.method == "qlora":
            saved += c * sum(source_width.values())  # bitsandbytes' 4-bit matmul keeps its input
        # PEFT casts x to the adapter dtype; under autocast lora_A casts it back: one private copy per adapter.
        own_copy = wl.autocast and wl.peft_input_cast and _bytes_of(adapter) != c
        sources_seen: set[str] = set()
        for name, (count, sum_in, _sum_out, _n) in chosen.items():
            per_layer = count / L
            d_in = sum_in / count if count else 0
            saved += c * wl.lora_rank * per_layer  # lora_A output, kept for lora_B
            if own_copy:
                saved += c * d_in * per_layer
            elif wl.method == "qlora":
                continue  # input already kept by the 4-bit matmul
            else:
                src = _source(name)
                if src not in sources_seen:
                    sources_seen.add(src)
                    saved += c * source_width.get(src, d_in)
    attn_bwd = c * (q + 2 * kv_saved) + 4 * arch.heads
    mlp_bwd = 2 * c * i * k
    backward = max(attn_bwd, mlp_bwd) + 2 * c * h
    no_grad = max(c * (3 * q + 2 * kv_saved), 3 * c * i * k) + 2 * c * h
    return saved, backward, no_grad


def compute(arch: Arch, wl: Workload) -> Breakdown:
    """The peak and its breakdown for one configuration."""
    notes: list[str] = []
    L, h, V = arch.layers, arch.hidden, arch.vocab
    c = _bytes_of(wl.precision)
    w = _bytes_of(wl.precision)
    n = max(1, wl.nproc)
    # One process shards nothing, but ZeRO-3 offload still moves the optimizer off the GPU.
    strategy = wl.strategy if n > 1 or wl.strategy == "zero3-offload" else "ddp"
    N = wl.tokens
    Nc = max(1, int(N * wl.completion_fraction))
    dpo = wl.objective == "dpo"

    # --- static: weights, reference, trainable state ----------------------------------------
    if arch.prequantized_bytes and wl.method != "full":
        weights = float(arch.prequantized_bytes)
        notes.append("pre-quantized checkpoint: weights as stored")
    elif wl.method == "qlora":
        p_lin = arch.linear_params
        weights = wl.qlora_bytes_per_param * p_lin + 2 * (arch.params - p_lin)
    else:
        weights = float(w * arch.params)
    reference = weights if (dpo and wl.method == "full" and not wl.precompute_ref) else 0.0

    chosen, unknown = resolve_targets(arch, wl.lora_targets)
    if wl.method != "full" and unknown:
        notes.append(f"no module named {', '.join(unknown)} in this model (ignored)")
    if wl.method == "full":
        n_train = arch.params
        p_bytes = w
        trainable = 0.0
    else:
        n_train = sum(wl.lora_rank * (g[1] + g[2]) for g in chosen.values())
        adapter = wl.adapter_dtype or ("bf16" if wl.method == "qlora" else "fp32")
        p_bytes = _bytes_of(adapter)
        trainable = float(n_train * p_bytes)
    grads = float(n_train * p_bytes)
    opt_fn = OPTIMIZER_STATE_BYTES.get(wl.optimizer, OPTIMIZER_STATE_BYTES["adamw_torch"])
    optimizer = float(n_train * opt_fn(p_bytes))
    opt_temp = float(n_train * p_bytes * OPTIMIZER_TEMP_STATES.get(wl.optimizer, 1.0))
    if not wl.optimizer_foreach and wl.optimizer in ("adamw_torch", "adamw_torch_fused"):
        # single-tensor AdamW: sqrt(v) and sqrt(v)/bias_correction for one parameter at a time
        if wl.method == "full":
            largest = max([V * h] + [g[3] / g[0] for g in arch.groups.values() if g[0]])
        else:
            largest = max([wl.lora_rank * max(g[1], g[2]) / g[0] for g in chosen.values() if g[0]] or [0])
        opt_temp = 2.0 * largest * p_bytes
    bucket = 0.0

    # --- several processes -------------------------------------------------------------------
    gathered = 0.0
    if n > 1 or strategy == "zero3-offload":
        if strategy == "ddp":
            bucket = grads  # DDP's gradient buckets duplicate the trainable gradients
        elif strategy == "zero2":
            optimizer /= n
            opt_temp /= n
            grads /= n
        elif strategy in ("zero3", "fsdp", "zero3-offload"):
            per_layer = weights / max(1, L)
            weights /= n
            reference /= n
            trainable /= n
            grads /= n
            optimizer = 0.0 if strategy == "zero3-offload" else optimizer / n
            opt_temp = 0.0 if strategy == "zero3-offload" else opt_temp / n
            if strategy == "zero3-offload":
                # offload_param_device=cpu as well: parameters live in RAM and only the layer being
                # computed is on the GPU (``gathered``).
                weights = reference = trainable = 0.0
            gathered = 2 * per_layer  # the layer being computed, gathered in full (plus prefetch)

    # --- activations --------------------------------------------------------------------------
    saved, bwd, no_grad = layer_activation_bytes(arch, wl, chosen)
    act_c = c
    if wl.grad_ckpt:
        store: float = L * act_c * h * N  # each layer's input
        layer_work = saved * N  # the layer recomputed in backward
    else:
        store = L * saved * N
        layer_work = 0.0
    mask = float(wl.sequences * wl.seq_len * wl.seq_len) if wl.padded else 0.0  # the shared bool mask
    store += mask
    grad_flow = c * h * N
    # autocast caches a bf16 copy of every fp32 trainable weight it casts, for the whole forward
    autocast_cache = 0.0
    if wl.autocast and c == 2 and wl.method != "full" and p_bytes == 4:
        autocast_cache = 2.0 * n_train
    dequant = 0.0
    if wl.method == "qlora":
        biggest = max((g[3] / g[0] for g in arch.groups.values() if g[0]), default=0.0)
        dequant = 2 * 2 * biggest  # dequantised weight (and its transpose in backward)

    # --- LM head ------------------------------------------------------------------------------
    head_trainable = wl.method == "full"
    norm_saved = 4 * h * N + (c * h * N if head_trainable else 0)
    if wl.logits == "fused":
        entries = min(Nc, FUSED_TOKEN_CHUNK) * min(V, FUSED_VOCAB_CHUNK)
        torch_fold = wl.head_kernel == "torch"
        tile_fwd = (c + (TORCH_TILE_FWD_BYTES if torch_fold else 0)) * entries
        tile_bwd = (c + (TORCH_TILE_BWD_BYTES if torch_fold else 0)) * entries
        if torch_fold and c == 2:
            # Without an fp32-output matmul, the gradient GEMMs upcast their 16-bit inputs: the tile and
            # one vocabulary chunk of the head's weight, in fp32 (after the fold's temporaries are gone).
            upcast = 4 * entries + 4 * min(V, FUSED_VOCAB_CHUNK) * h
            tile_bwd = c * entries + max(TORCH_TILE_BWD_BYTES * entries, upcast)
        head_saved: float = norm_saved + c * h * Nc + 24 * N
        # the forward's tile buffer is gone by the backward (the kernel allocates its own): only the
        # per-token statistics carry over
        head_fwd: float = 32 * Nc
        head_bwd: float = tile_bwd + 4 * h * Nc + c * h * Nc + c * h * N
        if head_trainable:
            # fp32 gradient accumulator; its cast to the weight dtype (none for fp32 weights) comes
            # after the tile loop, when the tile's temporaries are gone
            head_bwd += 4 * V * h + max(0.0, (w * V * h if w != 4 else 0) - tile_bwd)
        ref_head: float = c * h * Nc + tile_fwd + 32 * Nc
    else:
        # Materialised logits (older TRL, plain SFT losses): k bytes per token·vocabulary entry. Counted
        # as alive through the whole backward (docs/design/vram.md): trainers keep logit-sized tensors
        # referenced for metrics, and the allocator rarely gets those large blocks back in time for the
        # layers' own buffers.
        k = float(wl.logits)
        logits = k * N * V
        head_saved = norm_saved + logits * 0.5
        head_fwd = 0.0
        head_bwd = logits * 0.5
        ref_head = 0.0
    layer_logits = 0.0 if wl.logits == "fused" else head_saved + head_bwd

    phases: dict[str, dict[str, float]] = {}
    static = {"weights": weights, "reference": reference, "trainable": trainable, "optimizer": optimizer}
    # Between steps the Trainer frees gradients (zero_grad(set_to_none)); they persist only across
    # accumulation micro-steps. LoRA's are counted always (small, and PEFT/Trainer versions differ).
    fwd_grads = grads if (wl.method != "full" or wl.accumulation > 1) else 0.0
    if dpo and not wl.precompute_ref:
        phases["reference forward"] = {
            **static,
            "gradients": fwd_grads,
            "activations": store + no_grad * N + gathered + dequant + autocast_cache,
            "logits": head_saved + ref_head,
        }
    phases["LM-head backward"] = {
        **static,
        "gradients": fwd_grads,
        "activations": store + gathered + dequant + autocast_cache,
        "logits": head_saved + head_fwd + head_bwd,
    }
    layer_acts = store + layer_work + bwd * N + grad_flow + gathered + dequant + autocast_cache
    # Tied embeddings trained in full: the input embedding's dense gradient arrives last and is summed
    # with the LM head's into a new tensor, so two more vocabulary-sized gradients exist for a moment,
    # when the activations are already released.
    tied_sum = 2.0 * V * h * w if (arch.tied and wl.method == "full") else 0.0
    phases["layer backward"] = {
        **static,
        "gradients": grads + bucket + max(0.0, tied_sum - layer_acts),
        "activations": layer_acts,
        "logits": layer_logits,
    }
    phases["optimizer step"] = {
        **static,
        "optimizer": optimizer + opt_temp,
        "gradients": grads + bucket,
        "activations": 0.0,
        "logits": 0.0,
    }
    static_total = weights + reference + trainable + optimizer
    totals = {name: sum(parts.values()) for name, parts in phases.items()}
    peak = max(totals, key=lambda name: totals[name])
    parts = phases[peak]
    dynamic = totals[peak] - static_total
    allocator = ALLOCATOR_DYNAMIC_FRACTION * dynamic + ALLOCATOR_STATIC_FRACTION * static_total
    reserved = wl.metric == "reserved"
    components = {name: int(round(parts.get(name, 0.0))) for name in COMPONENTS if name not in ("cuda_context", "allocator")}
    components["cuda_context"] = int(wl.context_bytes) if reserved else 0
    allocator = allocator if reserved else 0.0
    components["allocator"] = int(round(allocator))
    ordered = {name: components[name] for name in COMPONENTS}
    return Breakdown(ordered, peak, {k: int(v) for k, v in totals.items()}, int(n_train), notes)
