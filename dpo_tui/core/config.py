"""The one typed experiment config: everything a run needs, with its documentation beside each field.

``RunConfig`` is what operators edit (TOML), what the experiment screen shows (each field's
docstring is its help text), and what is written into a run folder (``config.json``) and handed
to the trainer. It validates what TRL accepts silently or rejects only after the model has loaded
(``docs/design/trl-facts.md``): β ≤ 0, rank 0, batch 0, an unknown loss type, keys TRL 1.x
removed, and so on. ``docs/config.md`` is generated from it (``scripts/gen_config_docs.py``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import paths
from .errors import Problem, UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The loss types TRL 1.16's DPOTrainer accepts (``DPOConfig.loss_type`` help and ``_compute_loss``).
# A worker test checks this list against the installed TRL.
TRL_LOSS_TYPES: tuple[str, ...] = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)

# Keys that TRL 1.x removed (each raises TypeError in DPOConfig), with what replaces them.
REMOVED_TRL_KEYS: dict[str, str] = {
    "max_prompt_length": "TRL 1.x has only `max_length` (prompt+completion); rows whose prompt alone reaches it are dropped",
    "max_completion_length": "TRL 1.x has only `max_length`, applied to each prompt+completion sequence",
    "rpo_alpha": "TRL 1.x expresses RPO as a list of loss types with weights; dpo-tui trains one `loss_type` per run, so an RPO-style NLL term is not available",
    "reference_free": "not supported in TRL 1.x; use a LoRA run (the reference is the adapter-disabled base)",
    "force_use_ref_model": "removed; with LoRA the reference is always the adapter-disabled base",
    "padding_value": "removed; the tokenizer's pad token (or EOS) is used",
    "label_pad_token_id": "removed; TRL masks padding itself",
    "generate_during_eval": "removed; use `probe_prompts` for generations during training",
    "use_logits_to_keep": "removed; TRL decides this itself",
}

# List settings whose items are free text (commas allowed): a repeatable CLI flag, not a comma list.
FREE_TEXT_LISTS = frozenset({"probe_prompts"})

BETA_PRESETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.3, 0.5)

# The built-in sample experiment: what `dpo-tui train` does with no model, dataset or config.
# Tuned on the bundled tiny-chat model so it finishes in a few minutes on 2 CPU cores and
# visibly shortens answers (README has the before/after numbers).
SAMPLE_PRESET: dict[str, object] = {
    "model": "sample",
    "dataset": "sample",
    "method": "lora",
    "beta": 0.1,
    "lora_rank": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "learning_rate": 5e-4,
    "max_steps": 30,
    "per_device_batch_size": 8,
    "max_length": 256,
    "gradient_checkpointing": False,
    "save_fraction": 0.2,
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{0,40}$")

SAMPLE_MODEL = "sample"
SAMPLE_DATASET = "sample"


def looks_like_hub_id(text: str) -> bool:
    """``org/name`` with hub-legal characters, and not an existing local path."""
    return bool(_HUB_ID.match(text)) and not Path(text).expanduser().exists()


def resolve_model(spec: str) -> str:
    """``sample`` → the bundled tiny model; a local path → absolute; a hub id stays as it is."""
    if spec == SAMPLE_MODEL:
        return str(paths.sample_model_dir())
    path = Path(spec).expanduser()
    if path.exists():
        return str(path.resolve())
    return spec


def resolve_dataset(spec: str) -> str:
    if spec == SAMPLE_DATASET:
        return str(paths.sample_dataset_path())
    path = Path(spec).expanduser()
    if path.exists():
        return str(path.resolve())
    return spec


class RunConfig(BaseModel):
    """Everything a DPO run needs, written into the run's ``config.json`` before launch.

    Immutable: a changed setting is a new config. ``model_copy(update=...)`` does not validate,
    so a change that comes from an operator is re-validated (``RunConfig.model_validate``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    # --- what to train -----------------------------------------------------------------
    model: str = SAMPLE_MODEL
    """Base model: a local folder, a Hugging Face hub id (``org/name``), or ``sample`` for the bundled tiny-chat."""
    model_revision: str | None = None
    """Hub revision (branch, tag or commit) when ``model`` is a hub id."""
    trust_remote_code: bool = False
    """Run Python code shipped with the model. Off unless you trust that model's authors."""
    dataset: str = SAMPLE_DATASET
    """Preference data: a .jsonl/.json/.csv/.parquet file, a folder, a hub dataset id, or ``sample``."""
    dataset_split: str = "train"
    """Split to train on when the dataset has several."""
    column_map: dict[str, str] = Field(default_factory=dict)
    """Explicit column mapping, e.g. ``{prompt = "question"}``, when detection is ambiguous."""
    name: str = ""
    """Optional short label added to the run id (letters, digits, ``.``, ``_``, ``-``)."""
    group: str = ""
    """Group label shared by related runs (a β ladder); the runs screen groups by it."""

    # --- the DPO objective --------------------------------------------------------------
    beta: float = 0.1
    """β: how far the policy may move from the reference. Higher = stays closer. Typical 0.01–0.5. Must be > 0."""
    loss_type: str = "sigmoid"
    """DPO loss variant (TRL ``loss_type``, one per run): sigmoid is the original DPO; ipo, hinge, robust, … are alternatives."""
    label_smoothing: float = 0.0
    """Assumed label noise (cDPO/robust), in [0, 0.5). exo_pair needs > 0."""

    # --- adapter ------------------------------------------------------------------------
    method: Literal["lora", "qlora", "full"] = "lora"
    """``lora`` trains a LoRA adapter; ``qlora`` loads the base in 4-bit (needs bitsandbytes and a GPU); ``full`` trains every weight."""
    lora_rank: int = 16
    """LoRA rank r (≥ 1). More rank = more capacity and memory."""
    lora_alpha: int = 32
    """LoRA alpha (scaling = alpha / r). Usually 2 × rank."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA path, in [0, 1)."""
    lora_target_modules: list[str] = Field(default_factory=lambda: ["all-linear"])
    """Modules that get adapters: ``all-linear`` or names such as ``q_proj, v_proj``. Never ``lm_head``."""
    init_adapter: str = ""
    """Start from a previous run's LoRA adapter: a run id or name, or an adapter folder. Its rank, alpha and targets replace the ones above; the reference stays the base model (docs/training.md)."""
    init_adapter_run: str = ""
    """The run ``init_adapter`` came from, filled in when the run is planned (empty for an adapter folder of no run)."""

    # --- optimisation -------------------------------------------------------------------
    learning_rate: float = 5e-6
    """Peak learning rate (> 0). LoRA DPO typically 5e-6–5e-5; full fine-tuning 5e-7–1e-6."""
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"] = "linear"
    """Learning-rate schedule after warm-up."""
    warmup_ratio: float = 0.0
    """Fraction of the steps spent warming up, in [0, 0.5]."""
    num_epochs: float = 1.0
    """Passes over the data (ignored when ``max_steps`` > 0)."""
    max_steps: int = -1
    """Optimizer steps to train; -1 means use ``num_epochs``."""
    per_device_batch_size: int = 4
    """Pairs per device per micro-step (DPO runs 2 × this many sequences: chosen and rejected)."""
    gradient_accumulation: int = 1
    """Micro-steps per optimizer step. Effective batch = batch × accumulation × processes."""
    max_length: int = 1024
    """Token limit for each prompt+completion. Longer completions are cut at the end; rows whose prompt alone reaches it are dropped."""
    optimizer: Literal["adamw_torch", "adamw_torch_fused", "adamw_8bit", "sgd", "adafactor"] = "adamw_torch"
    """Optimizer. ``adamw_8bit`` needs bitsandbytes."""
    weight_decay: float = 0.0
    """AdamW weight decay (≥ 0)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (> 0)."""
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Weights and compute dtype. ``auto`` = bf16 on GPUs that support it, else fp16 on GPUs, fp32 on CPU."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: much less memory, ~30 % slower."""
    precompute_ref_log_probs: bool = False
    """Full fine-tuning only: compute reference log-probs once up front instead of keeping a reference copy."""
    seed: int = 42
    """Seed for initialisation and data order. Same seed + same data = same order."""

    # --- cadence and outputs ------------------------------------------------------------
    logging_steps: int = 1
    """Log metrics every N optimizer steps (1 for a live monitor)."""
    save_fraction: float = 0.1
    """Save a checkpoint every this fraction of the run's steps (0.1 = ten checkpoints over the run)."""
    save_minutes: float = 15.0
    """Also save when this many minutes passed since the last checkpoint (0 = off)."""
    save_total_limit: int = 3
    """Keep only the newest N checkpoints (the newest complete one is never removed)."""
    eval_fraction: float = 0.0
    """Fraction of pairs held out for evaluation (0 = no eval), in [0, 0.5]."""
    eval_steps: int = 0
    """Evaluate every N steps (0 = at each checkpoint) when ``eval_fraction`` > 0."""
    probe_prompts: list[str] = Field(default_factory=list)
    """Prompts answered greedily at each checkpoint and logged as ``sample`` events."""
    probe_max_new_tokens: int = 48
    """Length limit of probe-prompt generations."""

    # --- where ----------------------------------------------------------------------------
    nproc: int = 1
    """Training processes (one per GPU; 2 CPU processes over gloo without GPUs)."""
    gpus: list[int] = Field(default_factory=list)
    """GPU indices to use (empty = the first ``nproc`` GPUs)."""
    strategy: Literal["ddp", "zero2", "zero3", "zero3-offload", "fsdp"] = "ddp"
    """Multi-process strategy: ddp replicates; ZeRO/FSDP shard states or weights when the model does not fit."""

    # ---------------------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _reject_removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in REMOVED_TRL_KEYS:
                    raise ValueError(f"`{key}` was removed in TRL 1.x: {REMOVED_TRL_KEYS[key]}")
        return data

    @field_validator("model")
    @classmethod
    def _model_exists(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        frozen = bool(info.context and info.context.get("frozen"))  # a run's config.json: the folder may be gone now
        if frozen or value == SAMPLE_MODEL or looks_like_hub_id(value) or Path(value).expanduser().exists():
            return value
        raise ValueError(f"no model folder at '{value}' and it is not a hub id like 'org/name'")

    @field_validator("dataset")
    @classmethod
    def _dataset_given(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a dataset path, hub id or 'sample' is required")
        return value

    @field_validator("name", "group")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use at most 40 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("beta")
    @classmethod
    def _beta(cls, value: float) -> float:
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError("must be > 0 (β ≤ 0 trains nothing or the opposite preference); typical 0.01–0.5")
        return value

    @field_validator("loss_type")
    @classmethod
    def _loss(cls, value: str) -> str:
        if value not in TRL_LOSS_TYPES:
            raise ValueError(f"unknown loss type; one of: {', '.join(TRL_LOSS_TYPES)}")
        return value

    @field_validator("label_smoothing")
    @classmethod
    def _smoothing(cls, value: float) -> float:
        if not 0.0 <= value < 0.5:
            raise ValueError("must be in [0, 0.5)")
        return value

    @field_validator("lora_rank", "lora_alpha", "per_device_batch_size", "gradient_accumulation", "logging_steps", "nproc", "save_total_limit", "probe_max_new_tokens")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be ≥ 1")
        return value

    @field_validator("max_length")
    @classmethod
    def _max_length(cls, value: int) -> int:
        if not 0 < value <= 1_048_576:
            raise ValueError("must be between 1 and 1048576 tokens")
        return value

    @field_validator("lora_dropout")
    @classmethod
    def _dropout(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError("must be in [0, 1)")
        return value

    @field_validator("lora_target_modules")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        value = [v.strip() for v in value if v.strip()]
        if not value:
            raise ValueError("name at least one module, or 'all-linear'")
        if any(v == "lm_head" or v.endswith(".lm_head") for v in value):
            raise ValueError("lm_head cannot carry a LoRA adapter in DPO (TRL raises); remove it")
        return value

    @field_validator("init_adapter", "init_adapter_run")
    @classmethod
    def _init_adapter(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        # `method` is declared before these fields, so it is validated already (absent when it was bad).
        if value and info.field_name == "init_adapter" and info.data.get("method", "lora") == "full":
            raise ValueError("needs method 'lora' or 'qlora': a full fine-tune has no adapter to start from")
        if value and info.field_name == "init_adapter_run" and not info.data.get("init_adapter"):
            raise ValueError("is filled in from init_adapter when the run is planned; set init_adapter instead")
        return value

    @field_validator("learning_rate", "max_grad_norm")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0 or value == float("inf"):
            raise ValueError("must be > 0")
        return value

    @field_validator("warmup_ratio")
    @classmethod
    def _warmup(cls, value: float) -> float:
        if not 0.0 <= value <= 0.5:
            raise ValueError("must be in [0, 0.5]")
        return value

    @field_validator("eval_fraction")
    @classmethod
    def _eval_fraction(cls, value: float) -> float:
        if not 0.0 <= value <= 0.5:
            raise ValueError("must be in [0, 0.5]")
        return value

    @field_validator("num_epochs")
    @classmethod
    def _epochs(cls, value: float) -> float:
        if not 0 < value <= 1000:
            raise ValueError("must be > 0")
        return value

    @field_validator("max_steps")
    @classmethod
    def _max_steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("must be ≥ 1, or -1 to train for num_epochs")
        return value

    @field_validator("save_fraction")
    @classmethod
    def _save_fraction(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError("must be in (0, 1]")
        return value

    @field_validator("save_minutes", "weight_decay", "eval_steps")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must be ≥ 0")
        return value

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: list[int]) -> list[int]:
        if any(g < 0 for g in value) or len(set(value)) != len(value):
            raise ValueError("GPU indices must be distinct and ≥ 0")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> RunConfig:
        if self.loss_type == "exo_pair" and self.label_smoothing <= 0:
            raise ValueError("loss_type 'exo_pair' needs label_smoothing > 0 (e.g. 1e-3)")
        if self.precompute_ref_log_probs and self.method != "full":
            raise ValueError("precompute_ref_log_probs applies to method 'full' only (LoRA needs no reference copy)")
        if self.gpus and self.nproc > 1 and len(self.gpus) != self.nproc:
            raise ValueError(f"nproc={self.nproc} but {len(self.gpus)} GPU ids given; give one GPU per process")
        return self

    # --- derived --------------------------------------------------------------------------
    def resolved_model(self) -> str:
        return resolve_model(self.model)

    def resolved_dataset(self) -> str:
        return resolve_dataset(self.dataset)

    def is_sample(self) -> bool:
        return self.model == SAMPLE_MODEL

    # --- I/O --------------------------------------------------------------------------------
    def to_toml(self) -> str:
        import tomli_w  # small; only needed when saving

        data = self.model_dump(mode="json")
        return tomli_w.dumps({k: v for k, v in data.items() if v is not None})

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    def diff(self, other: RunConfig) -> dict[str, tuple[Any, Any]]:
        a, b = self.model_dump(mode="json"), other.model_dump(mode="json")
        return {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}


def field_help(name: str) -> str:
    """A field's docstring as plain text for help screens (reST literals lose their backquotes)."""
    info = RunConfig.model_fields[name]
    return re.sub(r"``([^`]*)``", r"\1", (info.description or "").strip())


def problems_from_validation(exc: ValidationError, file: str | None = None) -> list[Problem]:
    """One :class:`Problem` per pydantic error, naming the field, the value and the allowed range."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or None
        msg = str(err.get("msg", "invalid value"))
        msg = msg.removeprefix("Value error, ")
        value = err.get("input")
        if err.get("type") == "extra_forbidden":
            msg = "unknown setting"
            hint = _suggest_field(loc or "")
            problems.append(Problem(msg, field=loc, file=file, hint=hint))
            continue
        shown = "" if isinstance(value, dict) or loc is None else f" = {value!r}"
        problems.append(Problem(f"{msg}", field=f"{loc}{shown}" if loc else None, file=file))
    return problems


def _suggest_field(name: str) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, list(RunConfig.model_fields), n=1)
    return f"did you mean `{close[0]}`?" if close else None


def build_config(data: dict[str, Any], file: str | None = None) -> RunConfig:
    """Validate a dict into a RunConfig or raise a :class:`UserError` listing every bad field."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError("Invalid run configuration:", problems_from_validation(exc, file)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a TOML or JSON config file, apply overrides, validate."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"Config file not found: {path}", hint="check the path, or run `dpo-tui train` without --config") from None
    except OSError as exc:
        raise UserError(f"Cannot read config file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise UserError(f"{path}:1: settings nested deeper than {sys.getrecursionlimit():,} levels (the parser's limit)",
                        hint="a run config is a flat table of settings; fix or regenerate the file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a table of settings at the top level")
    data.update(overrides or {})
    return build_config(data, file=str(path))
