"""What the chat screen's lines say: rich Text from the session and the worker's numbers.

Pure functions (no widgets), so the wording is read and tested in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text

from .chat_session import ChatSession


def _mib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def memory_text(memory: dict[str, Any]) -> str:
    """``GPU 1.21 GiB (peak 1.40 GiB)`` on CUDA, else ``RAM 380 MiB`` (the worker process)."""
    if not memory:
        return ""
    if "cuda_allocated" in memory:
        text = f"GPU {_mib(memory['cuda_allocated'])}"
        if memory.get("cuda_peak"):
            text += f" (peak {_mib(memory['cuda_peak'])})"
        return text
    return f"RAM {_mib(memory['rss'])}" if memory.get("rss") else ""


def side_stats(done: dict[str, Any], timings: bool = True) -> Text:
    """``23 tok · 310 tok/s · ttft 0.02s · eos`` for a finished side."""
    text = Text()
    text.append(f"{done.get('tokens', 0)} tok")
    if timings and done.get("tokens_per_s"):
        text.append(f" · {done['tokens_per_s']:.0f} tok/s")
    if timings and done.get("ttft_s") is not None:
        text.append(f" · ttft {done['ttft_s']:.2f}s")
    reason = done.get("finish_reason")
    if reason:
        text.append(f" · {reason}", style="bold" if reason in ("length", "cancelled") else "")
    return text


def title_line(base_path: str | None, model_spec: str, model_info: dict[str, Any], tuned: int, state: str,
               detail: str, gen_mode: str, memory: str) -> Text:
    """`` base tiny-chat · cpu float32 · 1 tuned · worker ready · batched · RAM 380 MiB``."""
    title = Text()
    if base_path is None:
        title.append(" Chat · pick a run with Ctrl+O")
        return title
    name = "tiny-chat" if model_spec == "sample" else Path(base_path).name
    title.append(f" base {name}", style="bold")
    if model_info:
        title.append(f" · {model_info.get('device')} {model_info.get('dtype')}")
    title.append(f" · {tuned} tuned" if tuned != 1 else " · 1 tuned")
    title.append(" · worker ")
    title.append(state, style="bold" if state in ("crashed", "error", "busy") else "")
    if detail:
        title.append(f": {detail}")
    if gen_mode and state in ("ready", "busy"):
        title.append(f" · {gen_mode}")
    if memory:
        title.append(f" · {memory}")
    return title


def settings_line(session: ChatSession) -> Text:
    """`` sampling T 0.7 top-p 0.95 · seed 0 · max 256 tokens · reward off``."""
    s = session.settings
    line = Text(" ")
    if s.greedy:
        line.append("greedy", style="bold")
    else:
        line.append(f"sampling T {s.temperature:g} top-p {s.top_p:g}")
    line.append(f" · seed {s.seed} · max {s.max_new_tokens} tokens")
    if s.system_prompt:
        line.append(" · system prompt")
    if s.stop:
        line.append(f" · {len(s.stop)} stop")
    line.append(" · reward " + ("on" if session.show_rewards else "off"))
    if session.judged_rows:
        line.append(f" · {session.judged_rows} judged")
    return line
