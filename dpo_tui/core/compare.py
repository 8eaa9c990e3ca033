"""Comparing runs: final and best metrics, a config diff of only what differs, and legend labels.

Pure functions over run folders; the ``compare`` command and the compare screen share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import events as ev
from .runs import Run

# Which way is better, for the metrics where that is clear (TRL's names).
BETTER: dict[str, str] = {
    "loss": "min",
    "rewards/margins": "max",
    "rewards/accuracies": "max",
    "rewards/chosen": "max",
    "rewards/rejected": "min",
    "logps/chosen": "max",
    "logps/rejected": "min",
    "eval_loss": "min",
    "eval_rewards/margins": "max",
    "eval_rewards/accuracies": "max",
}

# Fields that differ between any two runs by construction; never the "what differs" of a comparison.
IDENTITY_FIELDS = frozenset({"name", "group"})

SHORT_NAMES = {
    "beta": "β",
    "lora_rank": "r",
    "lora_alpha": "α",
    "learning_rate": "lr",
    "loss_type": "loss",
    "per_device_batch_size": "batch",
    "gradient_accumulation": "accum",
    "max_length": "len",
}


@dataclass
class RunMetrics:
    run: Run
    config: dict[str, Any]
    history: ev.RunHistory

    def final(self) -> dict[str, float]:
        out = {}
        for name, points in self.history.series.items():
            values = [v for _, v in points if v is not None]
            if values and not name.startswith("train_"):
                out[name] = values[-1]
        for name, points in self.history.eval_series.items():
            values = [v for _, v in points if v is not None]
            if values:
                out[name] = values[-1]
        return out

    def best(self) -> dict[str, float]:
        out = {}
        series = {**self.history.series, **self.history.eval_series}
        for name, direction in BETTER.items():
            values = [v for _, v in series.get(name, []) if v is not None]
            if values:
                out[name] = min(values) if direction == "min" else max(values)
        return out


def load_metrics(run: Run) -> RunMetrics:
    history = ev.RunHistory()
    history.apply(ev.read_events(run.events_path))
    return RunMetrics(run, run.config().model_dump(mode="json"), history)


def config_diff(configs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Fields whose values are not all equal, with the value per run."""
    if not configs:
        return {}
    keys = sorted(set().union(*configs))
    return {k: [c.get(k) for c in configs] for k in keys if len({repr(c.get(k)) for c in configs}) > 1}


def legend_labels(configs: list[dict[str, Any]], ids: list[str]) -> list[str]:
    """``β=0.05`` versus ``β=0.5``: a short label per run from what differs (the id when nothing does)."""
    diff = {k: v for k, v in config_diff(configs).items() if k not in IDENTITY_FIELDS}
    if not diff:
        return ids
    labels = []
    for i in range(len(configs)):
        parts = []
        for key, values in list(diff.items())[:3]:
            value = values[i]
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            parts.append(f"{SHORT_NAMES.get(key, key)}={shown}")
        labels.append(" ".join(parts))
    return labels


def compare(runs: list[Run]) -> dict[str, Any]:
    """The ``dpo-tui compare --json`` document."""
    metrics = [load_metrics(r) for r in runs]
    configs = [m.config for m in metrics]
    labels = legend_labels(configs, [r.id for r in runs])
    return {
        "runs": [
            {"id": m.run.id, "label": label, "state": m.run.status().state, "config": m.config, "final": m.final(), "best": m.best()}
            for m, label in zip(metrics, labels, strict=True)
        ],
        "diff": config_diff(configs),
    }
