"""Finding llama.cpp's GGUF tools and what the export plan does with them, without llama.cpp installed.

A fake llama.cpp (a ``convert_hf_to_gguf.py`` that records how it was called, a ``llama-quantize`` shell
script) stands in where the real tools would be: in a folder given with ``--llama-cpp``, in
``DPO_TUI_LLAMA_CPP``, or on ``PATH``. No model is loaded: runs are fake folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from dpo_tui.core.config import RunConfig
from dpo_tui.core.errors import UserError
from dpo_tui.core.export_plan import plan_export
from dpo_tui.core.llama_cpp import CONVERTER, ENV_DIR, QUANTIZE, find_llama_cpp
from dpo_tui.core.runs import Run, create_run
from tests.support.cli import run_cli_inprocess
from tests.support.export_check import fake_llama_cpp


@pytest.fixture(autouse=True)
def no_llama_cpp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This machine has no llama.cpp; make sure of it whatever PATH the test runs with."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{empty}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.delenv(ENV_DIR, raising=False)


def make_run(tmp_path: Path, model_type: str) -> Run:
    base = tmp_path / f"base-{model_type}"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": model_type}))
    root = tmp_path / "runs"
    root.mkdir(exist_ok=True)
    run = create_run(root, RunConfig(model=str(base)))
    run.adapter_dir.mkdir(parents=True, exist_ok=True)
    save_file({"base_model.model.x.lora_A.weight": np.zeros((2, 2), dtype=np.float32)}, str(run.adapter_dir / "adapter_model.safetensors"))
    (run.adapter_dir / "adapter_config.json").write_text(json.dumps({"r": 2}))
    (run.adapter_dir / "COMPLETE").write_text("")
    run.update_status(state="finished")
    return run


def test_nothing_found_means_the_builtin_writer(tmp_path: Path) -> None:
    assert find_llama_cpp() is None
    plan = plan_export(make_run(tmp_path, "llama"), gguf=tmp_path / "m.gguf")
    assert plan.converter == "builtin" and plan.llama_cpp_converter is None


def test_k_quant_without_llama_cpp_is_refused_with_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        plan_export(make_run(tmp_path, "llama"), gguf=tmp_path / "m.gguf", gguf_type="q4_k_m")
    text = err.value.render()
    assert "--gguf-type q4_k_m needs llama.cpp's llama-quantize, which was not found" in text
    assert "the built-in writer writes f16, bf16, q8_0" in text
    assert "--llama-cpp DIR" in text and "PATH" in text and ENV_DIR in text


def test_unsupported_architecture_without_llama_cpp_points_to_it(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        plan_export(make_run(tmp_path, "gemma2"), gguf=tmp_path / "m.gguf")
    text = err.value.render()
    assert "Cannot write a GGUF for architecture 'gemma2'" in text
    assert "llama.cpp's own converter knows it" in text and "--llama-cpp DIR" in text
    assert not (tmp_path / "m.gguf").exists()


def test_cli_refuses_a_k_quant_before_any_work(tmp_path: Path) -> None:
    run = make_run(tmp_path, "llama")
    proc = run_cli_inprocess("export", run.id, "--runs-dir", str(run.path.parent), "--gguf", str(tmp_path / "o" / "m.gguf"),
                             "--gguf-type", "Q4_K_M")
    assert proc.returncode == 2
    assert "needs llama.cpp's llama-quantize" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_named_folder_must_hold_the_converter(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        find_llama_cpp(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=f"has no {CONVERTER}"):
        find_llama_cpp(tmp_path / "empty")


@pytest.mark.parametrize("quantize_in", ["", "build/bin", "bin"])
def test_folder_from_flag_finds_both_tools(tmp_path: Path, quantize_in: str) -> None:
    folder = fake_llama_cpp(tmp_path / "llama.cpp", quantize_in=quantize_in)
    tools = find_llama_cpp(folder)
    assert tools is not None and tools.origin == "--llama-cpp"
    assert tools.converter == str(folder / CONVERTER)
    assert tools.quantize == str(folder / quantize_in / QUANTIZE)


def test_env_folder_and_path_and_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = fake_llama_cpp(tmp_path / "llama.cpp", quantize_in="")
    (folder / CONVERTER).chmod(0o755)
    monkeypatch.setenv(ENV_DIR, str(folder))
    assert find_llama_cpp().origin == ENV_DIR  # type: ignore[union-attr]
    monkeypatch.setenv(ENV_DIR, "off")
    assert find_llama_cpp() is None
    monkeypatch.delenv(ENV_DIR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    tools = find_llama_cpp()
    assert tools is not None and tools.origin == "PATH" and tools.quantize == str(folder / QUANTIZE)
    assert find_llama_cpp("off") is None


def test_plan_prefers_llama_cpp_and_says_so(tmp_path: Path) -> None:
    folder = fake_llama_cpp(tmp_path / "llama.cpp")
    plan = plan_export(make_run(tmp_path, "gemma2"), gguf=tmp_path / "m.gguf", gguf_type="q4_k_m", llama_cpp=str(folder))
    assert plan.converter == "llama.cpp"
    assert plan.llama_cpp_quantize == str(folder / "build" / "bin" / QUANTIZE)
    lines = plan.describe()
    assert f"GGUF (q4_k_m, llama.cpp) → {tmp_path / 'm.gguf'}" in lines
    assert any(line.startswith("GGUF written by llama.cpp from --llama-cpp") for line in lines)


def test_k_quant_needs_llama_quantize_too(tmp_path: Path) -> None:
    folder = fake_llama_cpp(tmp_path / "llama.cpp", quantize=False)
    with pytest.raises(UserError) as err:
        plan_export(make_run(tmp_path, "llama"), gguf=tmp_path / "m.gguf", gguf_type="q4_k_m", llama_cpp=str(folder))
    assert f"has {CONVERTER} but no {QUANTIZE}" in err.value.render()
    plan = plan_export(make_run(tmp_path / "b", "llama"), gguf=tmp_path / "m.gguf", gguf_type="q8_0", llama_cpp=str(folder))
    assert plan.converter == "llama.cpp" and plan.llama_cpp_quantize is None
