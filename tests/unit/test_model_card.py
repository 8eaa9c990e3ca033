"""The exported model's card and the run facts behind it (pure core: a run folder, no torch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.core.config import RunConfig
from dpo_tui.core.events import EventWriter
from dpo_tui.core.export_plan import ExportPlan
from dpo_tui.core.model_card import CARD_METRICS, base_label, model_card, one_line_card, run_facts
from dpo_tui.core.runs import Run, create_run


def make_run(tmp_path: Path, **config) -> Run:
    root = tmp_path / "runs"
    root.mkdir(exist_ok=True)
    run = create_run(root, RunConfig(**config))
    with EventWriter(run.events_path) as writer:
        writer.emit("started", max_steps=6)
        for step in range(1, 7):
            writer.emit("log", step=step, metrics={"loss": 1.0 - 0.1 * step, "rewards/margins": 0.1 * step,
                                                   "learning_rate": 1e-5, "grad_norm": 2.0})
            if step % 3 == 0:
                writer.emit("eval", step=step, metrics={"eval_loss": 0.9 - 0.1 * step, "eval_rewards/margins": 0.2 * step,
                                                        "eval_runtime": 1.5, "eval_logps/chosen": -3.0})
        writer.emit("log", step=6, summary=True, metrics={"train_loss": 0.65, "train_runtime": 12.0})
        writer.emit("finished", step=6)
    run.update_status(state="finished", step=6, max_steps=6)
    return run


def make_plan(run: Run, step: int | None = None, **fields) -> ExportPlan:
    config = run.config()
    values = {"run_path": str(run.path), "run_id": run.id, "method": config.method, "source": str(run.adapter_dir),
              "source_label": f"checkpoint-{step}" if step else "final adapter", "step": step,
              "base_model": config.model, "base_model_spec": config.model, "base_revision": None,
              "trust_remote_code": False}
    return ExportPlan(**{**values, **fields})


@pytest.mark.parametrize(("step", "steps", "metrics", "eval_metrics"), [
    (None, 6, {"loss": pytest.approx(0.4), "rewards/margins": pytest.approx(0.6), "mean training loss": 0.65},
     {"eval_loss": pytest.approx(0.3), "eval_rewards/margins": pytest.approx(1.2)}),
    (4, 4, {"loss": pytest.approx(0.6), "rewards/margins": pytest.approx(0.4)},
     {"eval_loss": pytest.approx(0.6), "eval_rewards/margins": pytest.approx(0.6)}),
    (2, 2, {"loss": pytest.approx(0.8), "rewards/margins": pytest.approx(0.2)}, {}),
], ids=["final", "checkpoint-4", "checkpoint-2"])
def test_run_facts_stop_at_the_exported_step(tmp_path: Path, step, steps, metrics, eval_metrics) -> None:
    run = make_run(tmp_path, model="org/base", dataset="org/prefs")
    facts = run_facts(make_plan(run, step))
    assert facts["steps"] == steps
    assert facts["metrics"] == metrics
    assert list(facts["metrics"]) == [k for k in (*CARD_METRICS, "mean training loss") if k in metrics]
    assert facts["eval_metrics"] == eval_metrics
    assert facts["run_id"] == run.id and facts["config"]["model"] == "org/base"


def test_run_facts_without_events(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run.events_path.unlink()
    facts = run_facts(make_plan(run))
    assert facts["metrics"] == {} and facts["eval_metrics"] == {} and facts["steps"] == 6  # from status.json


@pytest.mark.parametrize(("spec", "label"), [
    ("sample", "the dpo-tui bundled sample model (tiny-chat)"),
    ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
    ("/models/local", "/models/local"),
])
def test_base_label(tmp_path: Path, spec: str, label: str) -> None:
    assert base_label(make_plan(make_run(tmp_path), base_model_spec=spec)) == label


def test_one_line_card(tmp_path: Path) -> None:
    run = make_run(tmp_path, model="org/base", dataset="org/prefs", beta=0.2, loss_type="ipo")
    assert one_line_card(run_facts(make_plan(run))) == (
        f"DPO fine-tune (ipo, beta 0.2) of org/base on org/prefs, 6 steps, exported by dpo-tui from run {run.id}")


@pytest.mark.parametrize(("kind", "method", "library", "lora", "use"), [
    ("merged", "lora", "transformers", True, "AutoModelForCausalLM"),
    ("adapter", "lora", "peft", True, "AutoPeftModelForCausalLM"),
    ("model", "full", "transformers", False, "AutoModelForCausalLM"),
])
def test_model_card_kinds(tmp_path: Path, kind: str, method: str, library: str, lora: bool, use: str) -> None:
    run = make_run(tmp_path, model="org/base", dataset="org/prefs", method=method)
    plan = make_plan(run)
    card = model_card(plan, run_facts(plan), kind)
    front = card.split("---")[1]
    assert "base_model: org/base" in front and "datasets:\n- org/prefs" in front
    assert f"library_name: {library}" in front
    assert ("- lora" in front) == lora and ("| LoRA rank | 16 |" in card) == lora
    assert f"from {'peft' if library == 'peft' else 'transformers'} import {use}" in card
    assert f"# {run.id}" in card and "| β (beta) | 0.1 |" in card and "| steps | 6 |" in card
    assert "## Final metrics" in card and "| loss | 0.4 |" in card and "| eval_loss | 0.3 |" in card


def test_model_card_of_local_sample_names_no_hub_repo(tmp_path: Path) -> None:
    run = make_run(tmp_path)  # the bundled sample model and dataset
    run.events_path.unlink()
    plan = make_plan(run, base_model_spec="sample")
    card = model_card(plan, run_facts(plan), "merged")
    assert "base_model:" not in card and "datasets:" not in card and "## Final metrics" not in card
    assert "the dpo-tui bundled sample model (tiny-chat)" in card
    assert "| dataset | the dpo-tui bundled sample preferences |" in card
