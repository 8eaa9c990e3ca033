"""Export planning (pure core): which weights, which destinations, and every refusal an operator can hit.

No model is loaded here: runs are fake folders with tiny safetensors files, so these tests are fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from dpo_tui.core.config import RunConfig
from dpo_tui.core.errors import UserError
from dpo_tui.core.export_plan import ExportPlan, default_ollama_name, plan_export, worker_command
from dpo_tui.core.runs import Run, create_run, host_name, process_start_time


def _base(tmp_path: Path, model_type: str = "llama") -> Path:
    base = tmp_path / f"base-{model_type}"
    base.mkdir(exist_ok=True)
    (base / "config.json").write_text(json.dumps({"model_type": model_type}))
    return base


def _adapter(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"base_model.model.x.lora_A.weight": np.zeros((2, 2), dtype=np.float32)}, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": 2, "base_model_name_or_path": "/elsewhere/model"}))


def _checkpoint(run: Run, step: int, complete: bool = True) -> Path:
    folder = run.checkpoints_dir / f"checkpoint-{step}"
    _adapter(folder)
    if complete:
        for name in ("optimizer.pt", "scheduler.pt"):
            (folder / name).write_bytes(b"x")
        (folder / "trainer_state.json").write_text("{}")
    return folder


def make_run(tmp_path: Path, state: str = "finished", final: bool = True, model_type: str = "llama", **config) -> Run:
    root = tmp_path / "runs"
    root.mkdir(exist_ok=True)
    run = create_run(root, RunConfig(model=str(_base(tmp_path, model_type)), **config))
    if final:
        _adapter(run.adapter_dir)
        (run.adapter_dir / "COMPLETE").write_text("")
    fields: dict = {"state": state}
    if state == "running":  # alive: this test process stands in for the trainer
        fields.update(pid=os.getpid(), pid_start=process_start_time(os.getpid()), host=host_name())
    if state in ("failed", "crashed"):
        fields["kind"] = "oom" if state == "failed" else "crash"
    run.update_status(**fields)
    return run


def test_finished_run_plans_the_final_adapter(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    plan = plan_export(run, merged=tmp_path / "out" / "merged", gguf=tmp_path / "out" / "m.gguf", gguf_type="q8_0")
    assert plan.source == str(run.adapter_dir)
    assert plan.source_label == "final adapter"
    assert plan.step is None
    assert plan.base_model == str(tmp_path / "base-llama")
    assert plan.model_type == "llama"
    assert plan.gguf_type == "q8_0"
    assert Path(plan.merged).is_absolute()
    # Round trip through JSON (how a child worker process receives it).
    assert ExportPlan.from_json(plan.to_json()) == plan
    assert worker_command("p.json")[-2:] == ["--plan", "p.json"]


def test_nothing_to_export(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Nothing to export"):
        plan_export(make_run(tmp_path))


@pytest.mark.parametrize(("state", "words"), [("running", "still running"), ("failed", "failed (oom)"), ("crashed", "crashed"),
                                               ("stopped", "stopped")])
def test_unfinished_runs_say_so_and_point_at_checkpoints(tmp_path: Path, state: str, words: str) -> None:
    run = make_run(tmp_path, state=state, final=False)
    _checkpoint(run, 10)
    _checkpoint(run, 20, complete=False)
    with pytest.raises(UserError) as err:
        plan_export(run, merged=tmp_path / "m")
    text = err.value.render()
    assert words in text
    assert "--checkpoint N (complete: 10)" in text
    # An explicit complete checkpoint is allowed, whatever the state.
    plan = plan_export(run, checkpoint=10, merged=tmp_path / "m")
    assert plan.source_label == "checkpoint-10" and plan.step == 10
    with pytest.raises(UserError, match="checkpoint-20 .* is incomplete"):
        plan_export(run, checkpoint=20, merged=tmp_path / "m")
    with pytest.raises(UserError, match="no checkpoint-30"):
        plan_export(run, checkpoint=30, merged=tmp_path / "m")


def test_finished_without_complete_marker(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (run.adapter_dir / "COMPLETE").unlink()
    with pytest.raises(UserError, match="final adapter is incomplete"):
        plan_export(run, merged=tmp_path / "m")


def test_corrupt_adapter_weights_are_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (run.adapter_dir / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(UserError, match="unreadable"):
        plan_export(run, merged=tmp_path / "m")


def test_existing_destination_needs_force(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "x.gguf").write_text("old")
    with pytest.raises(UserError) as err:
        plan_export(run, merged=tmp_path / "m")
    assert "already exists" in err.value.render() and "--force" in err.value.render()
    with pytest.raises(UserError) as err:
        plan_export(run, merged=tmp_path / "m", gguf=tmp_path / "x.gguf")
    assert len(err.value.problems) == 2
    plan = plan_export(run, merged=tmp_path / "m", gguf=tmp_path / "x.gguf", force=True)
    assert plan.force


def test_destination_under_a_file_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="afile is a file, not a folder"):
        plan_export(run, merged=tmp_path / "afile" / "sub" / "merged")


def test_unwritable_destination_is_refused(tmp_path: Path) -> None:
    """A read-only mount refuses even root; fall back to a non-root chmod check where mounting is impossible."""
    run = make_run(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True).returncode == 0
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("cannot mount a read-only tmpfs here, and root ignores chmod")
        ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match="not writable"):
            plan_export(run, gguf=ro / "m.gguf")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(ro)], check=False)
        else:
            ro.chmod(0o700)


def test_destination_may_not_swallow_the_run_or_base(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    for dest in (run.path, run.path.parent, tmp_path, tmp_path / "base-llama"):
        with pytest.raises(UserError, match="would contain"):
            plan_export(run, merged=dest, force=True)


def test_gguf_goes_into_the_ollama_folder_by_default(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    plan = plan_export(run, ollama=tmp_path / "ollama", ollama_name="my-model:v1")
    assert plan.gguf == str(tmp_path / "ollama" / "model.gguf")
    assert plan.ollama_name == "my-model:v1"
    assert default_ollama_name("20261126-2130-Qwen05B-b0.1") == "20261126-2130-qwen05b-b0.1"
    with pytest.raises(UserError, match="not a valid Ollama model name"):
        plan_export(run, ollama=tmp_path / "o2", ollama_name="Bad Name")
    with pytest.raises(UserError, match="separate folders"):
        plan_export(run, ollama=tmp_path / "o3", merged=tmp_path / "o3" / "merged")


def test_bad_gguf_requests(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    with pytest.raises(UserError, match="Unknown GGUF type"):
        plan_export(run, gguf=tmp_path / "m.gguf", gguf_type="q4_k")
    with pytest.raises(UserError, match="applies to a GGUF export"):
        plan_export(run, merged=tmp_path / "m", gguf_type="q8_0")
    with pytest.raises(UserError, match="should end in .gguf"):
        plan_export(run, gguf=tmp_path / "m.bin")


def test_unsupported_architecture_is_refused_before_loading(tmp_path: Path) -> None:
    run = make_run(tmp_path, model_type="gpt2")
    with pytest.raises(UserError) as err:
        plan_export(run, gguf=tmp_path / "m.gguf")
    text = err.value.render()
    assert "architecture 'gpt2'" in text and "Llama, Mistral and Qwen2" in text and "--merged" in text
    # A merged export of the same run is fine: only the GGUF writer is architecture-specific.
    assert plan_export(run, merged=tmp_path / "m").model_type == "gpt2"


def test_push_without_token_or_offline_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored token there
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(UserError, match="no Hugging Face token"):
        plan_export(run, push_to_hub="me/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="offline"):
        plan_export(run, push_to_hub="me/model")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    with pytest.raises(UserError, match="not a hub repo id"):
        plan_export(run, push_to_hub="a/b/c")
    with pytest.raises(UserError, match="--private applies"):
        plan_export(run, merged=tmp_path / "m", private=True)
    plan = plan_export(run, push_to_hub="me/model", private=True)
    assert plan.push_source == "adapter" and plan.private


def test_export_plan_module_stays_light() -> None:
    code = (
        "import sys, dpo_tui.core.export_plan, dpo_tui.core.model_card, dpo_tui.core.ollama_template, dpo_tui.cli.export;"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl', 'gguf', 'numpy', 'textual') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
