"""Helpers for the console tests: fixed services, fixture event logs, and a screen-as-text helper.

Everything a snapshot shows is fixed here: host label, clock, GPU inventory, run ids and event
timestamps. Nothing starts a real trainer unless a test asks for it (``tests/ui/test_real_run.py``).
"""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path
from typing import Any

from dpo_tui.ui.services import Services

T0 = 1764192000.0  # 2025-11-26 21:20 UTC: every fixture event is relative to it
NOW = T0 + 600.0
GIB = 1024**3


def fake_inventory(gpus: int = 1, others: dict[int, list[tuple[str, int, float]]] | None = None) -> Any:
    """A fixed ``core.gpus.GpuInventory``: ``gpus`` H100s with 71 of 80 GiB free each.

    ``others`` maps a GPU index to processes on it, as (user, pid, GiB); their memory is taken from
    that GPU's free memory.
    """
    from dpo_tui.core.gpus import GpuInfo, GpuInventory, GpuProcess

    items = []
    for i in range(gpus):
        procs = [GpuProcess(pid=pid, used_bytes=int(gib * GIB), user=user, name="python") for user, pid, gib in (others or {}).get(i, [])]
        taken = sum(p.used_bytes or 0 for p in procs)
        free = 71 * GIB - taken
        items.append(GpuInfo(index=i, name="NVIDIA H100 80GB HBM3", memory_total=80 * GIB, memory_used=80 * GIB - free,
                             memory_free=free, utilization=97 if procs else 0, processes=procs))
    return GpuInventory(gpus=items, cpu_only=gpus == 0, ram_total=128 * GIB, ram_available=100 * GIB,
                        error="no NVIDIA GPU found" if gpus == 0 else None)


def _discover_no_cache(roots: list[Path]) -> list[Any]:
    """Discovery without the machine's hub cache (tests must not depend on what is installed)."""
    from dpo_tui.core.models import discover_models

    return discover_models(roots, include_cache=False)


def make_services(root: Path, **overrides: Any) -> Services:
    values: dict[str, Any] = {
        "runs_root": root,
        "clock": lambda: NOW,
        "host_label": "gpu-box",
        "gpu_inventory": lambda: fake_inventory(1),
        "gpu_refresh_interval": 0.0,
        "runs_refresh_interval": 0.0,
        "watch_interval": 0.0,
        "animate": False,
        "load_settings": lambda: None,
        "root_label": "~/.local/share/dpo-tui/runs",
        "discover_models": _discover_no_cache,
    }
    values.update(overrides)
    return Services(**values)


def log_event(step: int, t: float, seq: int, **metrics: float | None) -> dict[str, Any]:
    return {
        "v": 1,
        "seq": seq,
        "t": t,
        "attempt": 1,
        "type": "log",
        "step": step,
        "epoch": round(step / 53, 4),
        "metrics": metrics,
        "nonfinite": [k for k, v in metrics.items() if v is None],
    }


def learning_events(steps: int, max_steps: int = 30, t0: float = T0, dt: float = 2.0) -> list[dict[str, Any]]:
    """A healthy DPO curve: loss falls from ln 2, margins rise, both rewards fall."""
    events: list[dict[str, Any]] = [{"v": 1, "seq": 1, "t": t0, "attempt": 1, "type": "started", "max_steps": max_steps, "examples": 423}]
    for s in range(1, steps + 1):
        margin = 0.09 * s + 0.05 * math.sin(s)
        chosen = -0.03 * s
        events.append(
            log_event(
                s,
                t0 + dt * s,
                len(events) + 1,
                loss=math.log(2) * math.exp(-0.04 * s),
                **{
                    "rewards/margins": margin,
                    "rewards/chosen": chosen,
                    "rewards/rejected": chosen - margin,
                    "rewards/accuracies": min(1.0, 0.5 + 0.025 * s),
                    "grad_norm": 1.0 + 0.1 * math.cos(s),
                    "learning_rate": 5e-4,
                },
            )
        )
    return events


async def until(pilot: Any, condition: Any, timeout: float = 10.0) -> None:
    """Let the app run until ``condition()`` holds (AssertionError after ``timeout`` seconds), then settle once."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.02)
    await pilot.pause()


def screen_text(app: Any) -> str:
    """The current screen as plain text (what a person would read)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_fake_model(folder: Path, hidden: int = 32, layers: int = 2, vocab_words: int = 200) -> Path:
    """A tiny Llama-shaped folder: config, a word-level tokenizer with a chat template, and a
    safetensors file of zeros. Enough for ``core.models`` and ``core.tokenstats``; never trained."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    words = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    words += [f"w{i}" for i in range(vocab_words)]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHAT_TEMPLATE, "model_max_length": 512})
    )
    v = len(words)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": v,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config))
    shapes = {"model.embed_tokens.weight": [v, hidden], "model.norm.weight": [hidden]}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": [hidden, hidden],
            p + "self_attn.k_proj.weight": [hidden, hidden],
            p + "self_attn.v_proj.weight": [hidden, hidden],
            p + "self_attn.o_proj.weight": [hidden, hidden],
            p + "mlp.gate_proj.weight": [hidden * 2, hidden],
            p + "mlp.up_proj.weight": [hidden * 2, hidden],
            p + "mlp.down_proj.weight": [hidden, hidden * 2],
            p + "input_layernorm.weight": [hidden],
            p + "post_attention_layernorm.weight": [hidden],
        }
    fake_safetensors(folder / "model.safetensors", shapes)
    return folder


def fake_safetensors(path: Path, tensors: dict[str, list[int]]) -> None:
    """A valid safetensors file of zero float32 tensors with these shapes (header padded to 8 bytes)."""
    header: dict[str, object] = {}
    offset = 0
    for name, shape in tensors.items():
        n = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


def build_fake_sample_data(root: Path) -> Path:
    """A ``sample_data`` folder (``DPO_TUI_SAMPLE_DATA``) with a fake tiny-chat and a few fixed pairs."""
    build_fake_model(root / "tiny-chat")
    prefs = root / "prefs"
    prefs.mkdir(parents=True, exist_ok=True)
    rows = [
        {"prompt": f"w{i} w{i + 1} w{i + 2}\n", "chosen": f"w{i + 3} w{i + 4}", "rejected": " ".join(f"w{(i + k) % 200}" for k in range(5, 5 + 3 + i % 9))}
        for i in range(40)
    ]
    (prefs / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    conv = [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in rows
    ]
    (prefs / "train_conversational.jsonl").write_text("".join(json.dumps(r) + "\n" for r in conv))
    (prefs / "heldout_prompts.txt").write_text("w1 w2\nw3 w4\n")
    return root


async def to_dataset(pilot: Any, app: Any) -> Any:
    """From the model screen (sample model highlighted) to the dataset screen, report and token counts ready."""
    from dpo_tui.ui.screens.dataset import DatasetScreen
    from dpo_tui.ui.screens.models import ModelScreen

    await until(pilot, lambda: isinstance(app.screen, ModelScreen) and app.screen.scanned)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, DatasetScreen))
    screen = app.screen
    await until(pilot, lambda: screen.report is not None and screen.tokens is not None)
    return screen


async def to_experiment(pilot: Any, app: Any) -> Any:
    """From the model screen through the dataset screen to the experiment form."""
    from dpo_tui.ui.screens.experiment import ExperimentScreen

    await to_dataset(pilot, app)
    await pilot.press("ctrl+n")
    await until(pilot, lambda: isinstance(app.screen, ExperimentScreen))
    return app.screen
