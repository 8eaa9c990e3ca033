"""Architecture matrix at real widths: the path of ``tests/worker/test_architectures.py`` with each family's
smallest member's real hidden size, heads, kv-heads and vocabulary (Llama-3.2-1B, Qwen2.5-0.5B, Mistral-7B,
Gemma-2-2B, Phi-3-mini), 2 layers and random weights, on CPU.

Per family: build the model (bf16 on disk, with the family's tokenizer and chat template from
``tests/support/archs.py``), the picker's facts (parameter count from the safetensors headers and from config
arithmetic, both equal to ``sum(p.numel())``), ``data check --model``, ``train`` with LoRA (``all-linear``)
for a few steps in fp32 through the product's own command, and optionally ``export --merged`` (+ ``--gguf``
where the built-in writer knows the architecture). Prints wall time per phase and the trainer's peak RSS
(``VmHWM`` of the trainer process, sampled while it runs).

    nice -n 10 python bench/arch_matrix.py [--families llama3,qwen2.5,...] [--steps 2] [--max-length 64] [--export] [--json]

Results are recorded in docs/models.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.archs import FAMILIES, Family, build_model  # noqa: E402
from tests.support.cli import SAMPLE_PREFS, run_cli, run_cli_inprocess  # noqa: E402

CONVERSATIONAL = REPO / "sample_data" / "prefs" / "train_conversational.jsonl"
ENV = {"HF_HUB_OFFLINE": "1"}


def _proc_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def train_and_watch(runs: Path, model: Path, data: Path, steps: int, max_length: int, timeout: float = 1800) -> dict[str, Any]:
    """Start a LoRA run and sample its trainer's peak RSS until it ends."""
    from dpo_tui.core.runs import Run

    started = time.monotonic()
    proc = run_cli("train", "--runs-dir", str(runs), "--model", str(model), "--dataset", str(data), "--method", "lora",
                   "--max-steps", str(steps), "--max-length", str(max_length), "--batch-size", "1", "--precision", "fp32",
                   "--probe-prompts", "0", "--lora-rank", "8", env=ENV, check=True)
    run = Run(runs / proc.stdout.strip().splitlines()[0])
    peak_kib = 0
    while time.monotonic() - started < timeout:
        status = run.status()
        if status.pid:
            peak_kib = max(peak_kib, _proc_kib(status.pid, "VmHWM") or 0)
        if status.state in ("finished", "failed", "crashed", "stopped"):
            break
        time.sleep(0.2)
    status = run.status()
    adapter = run.adapter_dir / "adapter_config.json"
    targets = json.loads(adapter.read_text())["target_modules"] if adapter.exists() else []
    return {"state": status.state, "message": status.message, "wall_s": round(time.monotonic() - started, 1),
            "trainer_s": round((status.ended_at or 0) - (status.started_at or 0), 1) if status.ended_at else None,
            "peak_rss_gib": round(peak_kib / 2**20, 2), "run": run,
            "targets": sorted({t.rsplit(".", 1)[-1] for t in targets})}


def one_family(family: Family, work: Path, steps: int, max_length: int, export: bool) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig

    from dpo_tui.core.model_config import config_param_count, info_from_config
    from dpo_tui.core.models import inspect_model

    row: dict[str, Any] = {"family": family.name}
    folder = work / family.name
    t = time.monotonic()
    build_model(family, folder, scale="real", dtype=torch.bfloat16)
    row["build_s"] = round(time.monotonic() - t, 1)
    cfg = json.loads((folder / "config.json").read_text())
    real = AutoConfig.from_pretrained(str(folder))
    row["widths"] = f"{real.hidden_size}/{real.num_attention_heads}/{real.num_key_value_heads}/{real.vocab_size}"
    info = inspect_model(str(folder))
    row["params"] = info.param_count
    row["params_config_arithmetic"] = config_param_count(info_from_config(cfg))
    row["facts_ok"] = bool(info.ok and info.has_chat_template and info.param_count == row["params_config_arithmetic"])
    t = time.monotonic()
    proc = run_cli_inprocess("data", "check", str(CONVERSATIONAL), "--model", str(folder), "--json", env=ENV)
    row["data_check_s"] = round(time.monotonic() - t, 1)
    row["data_check_ok"] = proc.returncode == 0
    data = work / "pairs.jsonl"
    data.write_text("".join(CONVERSATIONAL.read_text().splitlines(keepends=True)[: max(4, steps * 2)]))
    trained = train_and_watch(work / "runs", folder, data, steps, max_length)
    run = trained.pop("run")
    row.update({f"train_{k}": v for k, v in trained.items()})
    row["lora_targets_ok"] = set(trained["targets"]) == set(family.lora_targets)
    if export and trained["state"] == "finished":
        out = work / "export"
        args = ["--merged", str(out / "merged")] + (["--gguf", str(out / "model.gguf")] if family.gguf else [])
        t = time.monotonic()
        proc = run_cli_inprocess("export", run.id, "--runs-dir", str(run.path.parent), *args, "--llama-cpp", "off", env=ENV)
        row["export_s"] = round(time.monotonic() - t, 1)
        row["export"] = "merged+gguf" if family.gguf else "merged"
        row["export_ok"] = proc.returncode == 0
    return row


def main(argv: list[str] | None = None) -> int:
    import shutil

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated: " + ", ".join(FAMILIES))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--export", action="store_true", help="also export merged (+ GGUF where supported)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    assert SAMPLE_PREFS.exists()
    os.environ.update(ENV)
    rows = []
    for name in args.families.split(","):
        with tempfile.TemporaryDirectory(prefix=f"arch-{name}-") as tmp:
            try:
                row = one_family(FAMILIES[name], Path(tmp), args.steps, args.max_length, args.export)
            except Exception as exc:  # noqa: BLE001 - one family failing must not hide the others' numbers
                row = {"family": name, "error": f"{type(exc).__name__}: {exc}"}
            shutil.rmtree(tmp, ignore_errors=True)
        rows.append(row)
        print(json.dumps(row) if args.json else "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return 0 if all(r.get("train_state") == "finished" and r.get("facts_ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
