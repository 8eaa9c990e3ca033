"""The model card (README.md) of an exported model, and the run facts it is written from.

Pure: the facts come from the run folder (``config.json``, ``events.jsonl``, ``status.json``), so the
card is the same whether the merged folder, the adapter or a full fine-tune is exported, and the GGUF's
description is its one-line form (:func:`one_line_card`).
"""

from __future__ import annotations

from typing import Any

from . import events as ev
from .config import looks_like_hub_id
from .export_plan import ExportPlan
from .runs import Run

# Training metrics the card reports (their last logged value up to the exported step), in this order.
CARD_METRICS = ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")


def run_facts(plan: ExportPlan) -> dict[str, Any]:
    """What the model card says: config, steps, final metrics (from events.jsonl, up to the exported step)."""
    run = Run(plan.run_path)
    config = run.config()
    try:
        events = ev.read_events(run.events_path)
    except OSError:
        events = []
    limit = plan.step
    metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    summary: dict[str, float] = {}
    steps = 0
    # File order: a resumed attempt's values come after (and replace) the ones it superseded.
    for event in events:
        step = event.get("step")
        if not isinstance(step, int) or (limit is not None and step > limit):
            continue
        raw = event.get("metrics")
        values: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if event.get("type") == ev.LOG and event.get("summary"):
            summary.update({k: float(v) for k, v in values.items() if isinstance(v, (int, float))})
        elif event.get("type") == ev.LOG:
            steps = step
            metrics.update({k: float(v) for k, v in values.items() if k in CARD_METRICS and isinstance(v, (int, float))})
        elif event.get("type") == ev.EVAL:
            eval_metrics.update({k: float(v) for k, v in values.items() if isinstance(v, (int, float))
                                 and k.startswith("eval_") and k.split("_", 1)[1].split("/")[0] in ("loss", "rewards")})
    # The trainer's summary averages the whole run, so it only describes the final weights.
    if limit is None and "train_loss" in summary:
        metrics["mean training loss"] = summary["train_loss"]
    ordered = {k: metrics[k] for k in (*CARD_METRICS, "mean training loss") if k in metrics}
    return {"config": config.model_dump(mode="json"), "steps": limit if limit is not None else (steps or run.raw_status().step),
            "metrics": ordered, "eval_metrics": eval_metrics, "run_id": plan.run_id, "source_label": plan.source_label}


def base_label(plan: ExportPlan) -> str:
    """How the card names the base model."""
    if plan.base_model_spec == "sample":
        return "the dpo-tui bundled sample model (tiny-chat)"
    return plan.base_model_spec


def one_line_card(facts: dict[str, Any]) -> str:
    """The card in one sentence (the GGUF's ``general.description``)."""
    c = facts["config"]
    return (f"DPO fine-tune ({c['loss_type']}, beta {c['beta']}) of {c['model']} on {c['dataset']}, "
            f"{facts['steps']} steps, exported by dpo-tui from run {facts['run_id']}")


def model_card(plan: ExportPlan, facts: dict[str, Any], kind: str) -> str:
    """README.md for the merged folder (``kind`` = merged), the adapter (adapter) or a full fine-tune (model)."""
    c = facts["config"]
    front = ["---"]
    if looks_like_hub_id(c["model"]):
        front.append(f"base_model: {c['model']}")
    front.append(f"library_name: {'peft' if kind == 'adapter' else 'transformers'}")
    if looks_like_hub_id(c["dataset"]):
        front += ["datasets:", f"- {c['dataset']}"]
    front += ["tags:", "- dpo", "- trl", "- dpo-tui"]
    if c["method"] != "full":
        front.append("- lora")
    front.append("---")
    what = {"merged": "Merged weights (the LoRA adapter merged into the base model)",
            "adapter": "The LoRA adapter", "model": "The fully fine-tuned model"}[kind]
    rows = [
        ("base model", base_label(plan)),
        ("dataset", c["dataset"] if c["dataset"] != "sample" else "the dpo-tui bundled sample preferences"),
        ("method", c["method"]),
        ("β (beta)", c["beta"]),
        ("loss type", c["loss_type"]),
    ]
    if c["method"] != "full":
        rows += [("LoRA rank", c["lora_rank"]), ("LoRA alpha", c["lora_alpha"]),
                 ("LoRA targets", ", ".join(c["lora_target_modules"]))]
    rows += [
        ("learning rate", c["learning_rate"]),
        ("steps", facts["steps"]),
        ("batch size × accumulation", f"{c['per_device_batch_size']} × {c['gradient_accumulation']}"),
        ("max length", c["max_length"]),
        ("weights", facts["source_label"]),
        ("run", facts["run_id"]),
    ]
    lines = front + [
        "",
        f"# {facts['run_id']}",
        "",
        f"{what}: a DPO fine-tune of {base_label(plan)}, trained and exported with dpo-tui "
        "(TRL DPOTrainer + PEFT).",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
    ]
    if facts["metrics"] or facts["eval_metrics"]:
        lines += ["## Final metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in facts["metrics"].items()]
        lines += [f"| {k} | {v:.4g} |" for k, v in facts["eval_metrics"].items()]
        lines.append("")
    if kind == "adapter":
        lines += ["## Use", "", "```python", "from peft import AutoPeftModelForCausalLM",
                  "model = AutoPeftModelForCausalLM.from_pretrained(\"<this repo or folder>\")", "```", ""]
    else:
        lines += ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  "model = AutoModelForCausalLM.from_pretrained(\"<this repo or folder>\")",
                  "tokenizer = AutoTokenizer.from_pretrained(\"<this repo or folder>\")", "```", ""]
    return "\n".join(lines)
