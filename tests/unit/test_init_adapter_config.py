"""``init_adapter`` without the ML stack: the config field, resolving a run or folder, every refusal, the VRAM estimate.

Run folders here are created by ``create_run`` (never launched) and given a small adapter folder, so
resolution sees exactly what a finished LoRA run leaves behind. The real trainer starting from a real
adapter is in tests/worker/test_init_adapter.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core.config import RunConfig, build_config
from dpo_tui.core.errors import UserError
from dpo_tui.core.init_adapter import resolve_init_adapter
from dpo_tui.core.runs import Run, create_run
from tests.support.cli import SAMPLE_MODEL, run_cli_inprocess

TARGETS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def write_adapter(folder: Path, base: str = str(SAMPLE_MODEL), rank: int = 4, alpha: int = 8, peft_type: str = "LORA",
                  weights: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": peft_type, "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0,
        "target_modules": TARGETS, "base_model_name_or_path": base, "task_type": "CAUSAL_LM",
    }))
    if weights:
        (folder / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return folder


def finished_run(root: Path, name: str = "r1") -> Run:
    run = create_run(root, RunConfig(name=name, lora_rank=4, lora_alpha=8))
    write_adapter(run.adapter_dir)
    (run.adapter_dir / "COMPLETE").write_text("ok\n")
    return run


def refusal(config: RunConfig, root: Path) -> str:
    with pytest.raises(UserError) as caught:
        resolve_init_adapter(config, root)
    text = caught.value.render()
    assert "init_adapter" in text, text
    return text


def test_no_init_adapter_leaves_the_config_alone(runs_root: Path) -> None:
    config = RunConfig()
    assert resolve_init_adapter(config, runs_root) == (config, [])
    assert config.init_adapter == "" and config.init_adapter_run == ""


@pytest.mark.parametrize("handle", ["id", "name", "prefix", "run folder", "adapter folder"])
def test_a_run_resolves_to_its_absolute_adapter_folder_and_id(runs_root: Path, handle: str) -> None:
    run = finished_run(runs_root)
    spec = {"id": run.id, "name": "r1", "prefix": run.id[:-3], "run folder": str(run.path),
            "adapter folder": str(run.adapter_dir)}[handle]
    config, warnings = resolve_init_adapter(RunConfig(init_adapter=spec, lora_rank=16, lora_alpha=32), runs_root)
    assert config.init_adapter == str(run.adapter_dir) and Path(config.init_adapter).is_absolute()
    assert config.init_adapter_run == run.id
    # The adapter fixes the LoRA shape; each configured value it overrides is named.
    assert (config.lora_rank, config.lora_alpha, config.lora_target_modules) == (4, 8, TARGETS)
    assert any("lora_rank 16 is ignored; the adapter's 4 is used" in w for w in warnings), warnings
    assert any("lora_alpha 32" in w for w in warnings) and any("lora_target_modules all-linear" in w for w in warnings)
    # Planning again changes nothing (the console may resolve a config the CLI already resolved).
    assert resolve_init_adapter(config, runs_root) == (config, [])
    # config.json carries both, so the run can be repeated from its folder alone.
    saved = json.loads(config.to_json())
    assert saved["init_adapter"] == str(run.adapter_dir) and saved["init_adapter_run"] == run.id


def test_a_checkpoint_and_a_plain_folder(runs_root: Path, tmp_path: Path) -> None:
    run = finished_run(runs_root)
    ckpt = write_adapter(run.checkpoints_dir / "checkpoint-6")
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "COMPLETE"):
        (ckpt / name).write_text("{}")
    config, _ = resolve_init_adapter(RunConfig(init_adapter=str(ckpt)), runs_root)
    assert (config.init_adapter, config.init_adapter_run) == (str(ckpt), run.id)
    (ckpt / "trainer_state.json").unlink()  # a checkpoint cut short by a crash
    assert "checkpoint-6 of run" in refusal(RunConfig(init_adapter=str(ckpt)), runs_root)
    plain = write_adapter(tmp_path / "elsewhere" / "my-adapter", rank=2, alpha=2)
    config, _ = resolve_init_adapter(RunConfig(init_adapter=str(plain), lora_rank=2, lora_alpha=2), runs_root)
    assert (config.init_adapter, config.init_adapter_run, config.lora_rank) == (str(plain), "", 2)


def test_missing_folder_or_run_is_refused(runs_root: Path, tmp_path: Path) -> None:
    assert "no adapter folder at" in refusal(RunConfig(init_adapter=str(tmp_path / "nope")), runs_root)
    text = refusal(RunConfig(init_adapter="no-such-run"), runs_root)
    assert "no adapter folder or run named 'no-such-run'" in text


def test_a_full_model_folder_is_refused(runs_root: Path) -> None:
    text = refusal(RunConfig(init_adapter=str(SAMPLE_MODEL)), runs_root)
    assert "is a full model, not a LoRA adapter" in text and "set model to it" in text


def test_an_adapter_of_another_base_names_both_bases(runs_root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-base"
    other.mkdir()
    cfg = json.loads((SAMPLE_MODEL / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "hidden_size": cfg["hidden_size"] * 2}))
    adapter = write_adapter(tmp_path / "foreign", base=str(other))
    text = refusal(RunConfig(init_adapter=str(adapter)), runs_root)
    assert f"trained on {other}" in text and "this run's base model is sample" in text
    assert f"hidden_size {cfg['hidden_size'] * 2} ≠ {cfg['hidden_size']}" in text


def test_full_fine_tuning_cannot_start_from_an_adapter(runs_root: Path) -> None:
    run = finished_run(runs_root)
    with pytest.raises(UserError) as caught:
        build_config({"method": "full", "init_adapter": run.id})
    problem = caught.value.problems[0]
    assert problem.field is not None and problem.field.startswith("init_adapter") and "lora" in problem.message
    # A config that skipped validation is refused at planning too.
    unchecked = RunConfig().model_copy(update={"method": "full", "init_adapter": run.id})
    assert "needs method 'lora' or 'qlora'" in refusal(unchecked, runs_root)
    with pytest.raises(UserError) as caught:
        build_config({"init_adapter_run": run.id})
    assert caught.value.problems[0].field.startswith("init_adapter_run")


def test_other_unusable_adapters_are_refused(runs_root: Path, tmp_path: Path) -> None:
    file = tmp_path / "adapter.safetensors"
    file.write_text("x")
    assert "is a file, not an adapter folder" in refusal(RunConfig(init_adapter=str(file)), runs_root)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "adapter_config.json: file not found" in refusal(RunConfig(init_adapter=str(empty)), runs_root)
    prefix = write_adapter(tmp_path / "prefix", peft_type="PREFIX_TUNING")
    assert "PREFIX_TUNING adapter" in refusal(RunConfig(init_adapter=str(prefix)), runs_root)
    bare = write_adapter(tmp_path / "bare", weights=False)
    assert "no adapter weights" in refusal(RunConfig(init_adapter=str(bare)), runs_root)


def test_a_run_without_a_finished_adapter_points_at_its_checkpoint(runs_root: Path) -> None:
    run = create_run(runs_root, RunConfig(name="half"))
    text = refusal(RunConfig(init_adapter="half"), runs_root)
    assert f"run {run.id} has no finished adapter" in text
    full = create_run(runs_root, RunConfig(name="whole", method="full"))
    (full.model_dir).mkdir()
    (full.model_dir / "COMPLETE").write_text("ok\n")
    assert "trained a full model, not a LoRA adapter" in refusal(RunConfig(init_adapter="whole"), runs_root)


def test_the_vram_estimate_reads_the_rank_from_the_adapter(runs_root: Path) -> None:
    from dpo_tui.core.models import inspect_model
    from dpo_tui.core.vram import estimate, workload_for

    run = finished_run(runs_root)
    config, _ = resolve_init_adapter(RunConfig(init_adapter=run.id, lora_rank=64, lora_alpha=128), runs_root)
    assert workload_for(config).lora_rank == 4 and workload_for(config).lora_targets == tuple(TARGETS)
    info = inspect_model(str(SAMPLE_MODEL))
    same_shape = RunConfig(lora_rank=4, lora_alpha=8, lora_target_modules=TARGETS)
    assert estimate(info, config, suggest=False).total_bytes == estimate(info, same_shape, suggest=False).total_bytes
    assert estimate(info, config, suggest=False).total_bytes < estimate(info, RunConfig(lora_rank=64), suggest=False).total_bytes


def test_train_refuses_before_creating_a_run(runs_root: Path, tmp_path: Path) -> None:
    proc = run_cli_inprocess("train", "--runs-dir", str(runs_root), "--init-adapter", str(tmp_path / "gone"))
    assert proc.returncode == 2, proc.stderr
    assert "init_adapter" in proc.stderr and "no adapter folder at" in proc.stderr and "Traceback" not in proc.stderr
    assert list(runs_root.iterdir()) == []
