"""Planning an evaluation (no model): runs, adapters, bases, defaults, files and settings are checked first."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from dpo_tui.core.config import RunConfig
from dpo_tui.core.errors import UserError
from dpo_tui.core.eval import jobs
from dpo_tui.core.eval.jobs import EVAL_SPLIT, EvalPlan, plan_eval, read_eval_job
from dpo_tui.core.job_folder import PLAN_FILE, ProgressWriter, write_status
from dpo_tui.core.runs import Run, create_run, host_name, process_start_time


def _base(tmp_path: Path, name: str = "base") -> Path:
    base = tmp_path / name
    base.mkdir(exist_ok=True)
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return base


def _adapter(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"base_model.model.x.lora_A.weight": np.zeros((2, 2), dtype=np.float32)}, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": 2}))


def _checkpoint(run: Run, step: int) -> None:
    folder = run.checkpoints_dir / f"checkpoint-{step}"
    _adapter(folder)
    for name in ("optimizer.pt", "scheduler.pt"):
        (folder / name).write_bytes(b"x")
    (folder / "trainer_state.json").write_text("{}")


def make_run(tmp_path: Path, *, base: str = "base", final: bool = True, state: str = "finished",
             checkpoints: tuple[int, ...] = (), **config) -> Run:
    root = tmp_path / "runs"
    root.mkdir(exist_ok=True)
    run = create_run(root, RunConfig(model=str(_base(tmp_path, base)), **config))
    if final:
        _adapter(run.adapter_dir)
        (run.adapter_dir / "COMPLETE").write_text("")
    for step in checkpoints:
        _checkpoint(run, step)
    fields: dict = {"state": state}
    if state == "running":
        fields.update(pid=os.getpid(), pid_start=process_start_time(os.getpid()), host=host_name())
    run.update_status(**fields)
    return run


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("What is the capital of Norway?\nName a primary colour.\n")
    return path


def test_plan_of_a_finished_run(tmp_path: Path, prompts: Path) -> None:
    run = make_run(tmp_path, beta=0.25)
    plan = plan_eval(tmp_path / "runs", [run.id], prompts=str(prompts), judge="shorter", samples=2, max_new_tokens=16)
    assert [t.run_id for t in plan.targets] == [run.id]
    target = plan.targets[0]
    assert target.adapter_path == str(run.adapter_dir) and target.checkpoint == "final"
    assert target.beta == 0.25 and target.name == "t0"
    assert plan.base_model == str((tmp_path / "base").resolve())
    assert plan.prompts_file == str(prompts.resolve())
    assert plan.judge == "shorter" and plan.samples == 2 and plan.max_new_tokens == 16
    assert plan.pairs_file is None and not plan.pairs_from_eval_split
    assert EvalPlan.model_validate_json(plan.model_dump_json()) == plan


def test_the_same_run_twice_is_one_target(tmp_path: Path, prompts: Path) -> None:
    run = make_run(tmp_path)
    plan = plan_eval(tmp_path / "runs", [run.id, str(run.path)], prompts=str(prompts))
    assert len(plan.targets) == 1


def test_checkpoints_best_and_named(tmp_path: Path, prompts: Path) -> None:
    run = make_run(tmp_path, final=False, state="running", checkpoints=(10, 20))
    with pytest.raises(UserError, match="no final adapter yet") as err:
        plan_eval(tmp_path / "runs", [run.id], prompts=str(prompts))
    assert "checkpoint-20" in err.value.render()
    named = plan_eval(tmp_path / "runs", [run.id], prompts=str(prompts), checkpoint="checkpoint-10")
    assert named.targets[0].checkpoint == "checkpoint-10"
    best = plan_eval(tmp_path / "runs", [run.id], prompts=str(prompts), checkpoint="best")
    assert best.targets[0].checkpoint.startswith("checkpoint-")
    with pytest.raises(UserError, match="no complete checkpoint-99"):
        plan_eval(tmp_path / "runs", [run.id], prompts=str(prompts), checkpoint="checkpoint-99")


def test_refusals(tmp_path: Path, prompts: Path) -> None:
    root = tmp_path / "runs"
    training = make_run(tmp_path, final=False, state="running")
    with pytest.raises(UserError, match="still training and saved no checkpoint"):
        plan_eval(root, [training.id], prompts=str(prompts))
    full = make_run(tmp_path, method="full")
    with pytest.raises(UserError, match="fine-tuned every weight"):
        plan_eval(root, [full.id], prompts=str(prompts))
    a = make_run(tmp_path)
    b = make_run(tmp_path, base="other-base")
    with pytest.raises(UserError, match="different base models") as err:
        plan_eval(root, [a.id, b.id], prompts=str(prompts))
    assert "other-base" in err.value.render()
    with pytest.raises(UserError, match="no held-out prompts"):
        _no_split(tmp_path)
    with pytest.raises(UserError, match="--samples"):
        plan_eval(root, [a.id], prompts=str(prompts), samples=-1)
    with pytest.raises(UserError, match="Bad --judge"):
        plan_eval(root, [a.id], prompts=str(prompts), judge="loudest")
    with pytest.raises(UserError, match="at least one run"):
        plan_eval(root, [], prompts=str(prompts))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\nnot json\n')
    with pytest.raises(UserError) as err:
        plan_eval(root, [a.id], prompts=str(bad))
    assert f"{bad}:2" in err.value.render()


def _no_split(tmp_path: Path) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "a", "rejected": "b b"}) + "\n" for i in range(8)))
    run = make_run(tmp_path, dataset=str(data))
    plan_eval(tmp_path / "runs", [run.id])


def test_defaults_sample_files_and_eval_split(tmp_path: Path) -> None:
    sample = make_run(tmp_path)  # the default dataset is the bundled sample
    plan = plan_eval(tmp_path / "runs", [sample.id])
    assert plan.prompts_file.endswith("heldout_prompts.txt")
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "a", "rejected": "b b"}) + "\n" for i in range(8)))
    split = make_run(tmp_path, dataset=str(data), eval_fraction=0.25)
    plan = plan_eval(tmp_path / "runs", [split.id])
    assert plan.prompts_file == EVAL_SPLIT and plan.pairs_from_eval_split


def test_job_view_reads_status_and_progress(tmp_path: Path) -> None:
    job = tmp_path / "runs" / jobs.JOBS_DIR / "20260101-000000"
    job.mkdir(parents=True)
    (job / PLAN_FILE).write_text("{}")
    write_status(job, state="failed", run_ids=["r1"], error="Out of memory (lower --batch-size)")
    writer = ProgressWriter(job)
    writer.emit({"type": "stage", "stage": "prompts"})
    writer.emit({"type": "progress", "stage": "prompts", "done": 3, "total": 8})
    writer.close()
    with open(job / "progress.jsonl", "a") as fh:
        fh.write('{"type": "progress", "do')  # a torn last line is ignored
    view = read_eval_job(job)
    assert (view.state, view.stage, view.done, view.total) == ("failed", "prompts", 3, 8)
    assert view.run_ids == ["r1"] and "batch-size" in view.error
    assert jobs.eval_job_dirs(tmp_path / "runs") == [job]
    assert jobs.find_eval_job(tmp_path / "runs", "2026") == job
    with pytest.raises(UserError, match="No evaluation job"):
        jobs.find_eval_job(tmp_path / "runs", "1999")


def _report(run: Run, words_tuned: float) -> None:
    from dpo_tui.core.eval.report import Behaviour, Change, EvalReport, EvalSettings, Lengths, write_report

    change = Change(base=40.0, tuned=words_tuned, diff=words_tuned - 40.0, rel=(words_tuned - 40.0) / 40.0, ci=(-30.0, -10.0))
    write_report(run.path, EvalReport(
        id="20260101-000000", run_id=run.id, base_model="base", adapter_path=str(run.adapter_dir), created_at=1.0,
        settings=EvalSettings(prompts_file="p.txt", prompts=6),
        behaviour=Behaviour(base=Lengths(n=6, mean_words=40.0), tuned=Lengths(n=6, mean_words=words_tuned), words=change, tokens=change)))


def test_runs_json_compare_and_table_show_the_newest_report(tmp_path: Path) -> None:
    from dpo_tui.cli.eval_cmd import report_table
    from dpo_tui.core.eval.report import latest_report
    from tests.support.cli import run_cli_inprocess

    evaluated, plain = make_run(tmp_path), make_run(tmp_path, beta=0.5)
    root = str(tmp_path / "runs")
    out = run_cli_inprocess("compare", evaluated.id, plain.id, "--runs-dir", root)
    assert out.returncode == 0 and "evaluation (newest)" not in out.stdout, out.stderr
    _report(evaluated, 20.0)
    listed = {r["id"]: r for r in json.loads(run_cli_inprocess("runs", "--json", "--runs-dir", root).stdout)}
    assert listed[evaluated.id]["eval"]["words_tuned"] == 20.0 and listed[plain.id]["eval"] is None
    out = run_cli_inprocess("compare", evaluated.id, plain.id, "--runs-dir", root)
    assert out.returncode == 0, out.stderr
    assert "evaluation (newest)" in out.stdout and "40 → 20" in out.stdout and "-50 %" in out.stdout, out.stdout
    doc = json.loads(run_cli_inprocess("compare", evaluated.id, plain.id, "--runs-dir", root, "--json").stdout)
    assert doc["eval"][plain.id] is None and doc["eval"][evaluated.id]["words_change"] == -0.5
    report = latest_report(evaluated.path)
    assert report is not None
    table = "\n".join(report_table(report))
    assert "words mean" in table and "-20 (-50 %) CI [-30, -10]" in table, table
