"""The experiment form as data: which widget each RunConfig field gets, text ↔ value, problems per field,
and the equivalent ``dpo-tui train`` command line. Pure (no Textual), so it is unit-tested directly.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from ..core.config import FREE_TEXT_LISTS, RunConfig, field_help
from ..core.config_fields import field_kind
from ..core.errors import UserError
from ..core.mapping import parse_map

# Fields in form order, grouped. Every RunConfig field appears exactly once (a test checks it).
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What to train", ("model", "model_revision", "trust_remote_code", "dataset", "dataset_split", "column_map", "name", "group")),
    ("DPO objective", ("beta", "loss_type", "label_smoothing")),
    ("Adapter", ("method", "lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules", "init_adapter", "init_adapter_run")),
    (
        "Optimisation",
        (
            "learning_rate",
            "lr_scheduler",
            "warmup_ratio",
            "num_epochs",
            "max_steps",
            "per_device_batch_size",
            "gradient_accumulation",
            "max_length",
            "optimizer",
            "weight_decay",
            "max_grad_norm",
            "precision",
            "gradient_checkpointing",
            "precompute_ref_log_probs",
            "seed",
        ),
    ),
    (
        "Checkpoints and logs",
        ("logging_steps", "save_fraction", "save_minutes", "save_total_limit", "eval_fraction", "eval_steps", "probe_prompts", "probe_max_new_tokens"),
    ),
    ("Where", ("nproc", "gpus", "strategy")),
)

# Fields whose list items may contain commas use another separator.
LIST_SEPARATORS = {"probe_prompts": " | "}
CLI_ALIASES_SKIP = {"column_map"}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # "bool" | "choice" | "list" | "dict" | "text" (core.config_fields.Kind)
    choices: tuple[str, ...] = ()
    item_type: type = str
    optional: bool = False

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    @property
    def help(self) -> str:
        return field_help(self.name)


def field_spec(name: str) -> FieldSpec:
    kind = field_kind(name)
    return FieldSpec(name, kind.kind, kind.choices, item_type=kind.item_type, optional=kind.optional)


def all_specs() -> list[tuple[str, list[FieldSpec]]]:
    return [(title, [field_spec(n) for n in names]) for title, names in SECTIONS]


def to_text(spec: FieldSpec, value: Any) -> str:
    """How a value shows in its input box."""
    if value is None:
        return ""
    if spec.kind == "list":
        return LIST_SEPARATORS.get(spec.name, ", ").join(str(v) for v in value)
    if spec.kind == "dict":
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def from_text(spec: FieldSpec, text: str) -> Any:
    """Input text → the value handed to pydantic (which validates and converts numbers itself)."""
    text = text.strip()
    if spec.kind == "list":
        sep = LIST_SEPARATORS.get(spec.name, ",").strip()
        return [item.strip() for item in text.split(sep) if item.strip()]
    if spec.kind == "dict":
        try:
            return parse_map(text, source=spec.name)
        except UserError:
            return text  # not a mapping: problems_by_field names the bad item
    if spec.optional and text == "":
        return None
    return text


def problems_by_field(values: dict[str, Any]) -> tuple[RunConfig | None, dict[str, str]]:
    """Validate; return (config or None, {field: reason}). Cross-field problems are keyed by ``""``."""
    from ..core.config import build_config

    # A mapping typed with a bad item stays text (``from_text``): name the item, and validate the rest.
    bad_maps: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, str) and name in RunConfig.model_fields and field_spec(name).kind == "dict":
            try:
                parse_map(value, source=name)
            except UserError as exc:
                bad_maps[name] = exc.summary
    if bad_maps:
        values = {**values, **{name: {} for name in bad_maps}}
    try:
        config = build_config(values)
    except UserError as exc:
        found: dict[str, str] = dict(bad_maps)
        for problem in exc.problems:
            name = ""
            if problem.field:
                name = problem.field.split(" ", 1)[0].split(".", 1)[0]
            if name not in RunConfig.model_fields:
                name = ""
            message = problem.message + (f" ({problem.hint})" if problem.hint else "")
            found.setdefault(name, message)
        return None, found
    return (None, bad_maps) if bad_maps else (config, {})


def cli_defaults(model: str) -> dict[str, Any]:
    """What ``dpo-tui train`` starts from without a config file: the sample preset for the sample model."""
    from ..core.config import SAMPLE_PRESET

    base = RunConfig().model_dump(mode="json")
    if model == "sample":
        base.update(SAMPLE_PRESET)
    return base


def command_line(config: RunConfig) -> str:
    """The ``dpo-tui train`` command that creates the same run."""
    data = config.model_dump(mode="json")
    defaults = cli_defaults(config.model)
    parts = ["dpo-tui", "train"]
    for name in ("model", "dataset"):
        if data[name] != "sample":
            parts += [f"--{name}", data[name]]
    for name, value in data.items():
        if name in ("model", "dataset") or value == defaults.get(name):
            continue
        flag = "--" + name.replace("_", "-")
        if name == "column_map":
            for key, column in value.items():
                parts += ["--map", f"{key}={column}"]
        elif isinstance(value, bool):
            parts.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, list) and name in FREE_TEXT_LISTS:
            for item in value:  # free text may hold commas: one flag per item
                parts += [flag, str(item)]
        elif isinstance(value, list):
            parts += [flag, ",".join(str(v) for v in value)]
        elif value is None:
            continue
        else:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(shlex.quote(p) for p in parts)
