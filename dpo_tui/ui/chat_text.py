"""What the chat screen's lines say: rich Text from the session and the worker's numbers.

Pure functions (no widgets), so the wording is read and tested in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text

from ..core.chat_client import AdapterChoice
from ..core.compare import legend_labels
from .chat_session import ChatSession


def empty_text() -> Text:
    """What the chat screen shows before it has a model to chat with."""
    return Text(
        "No model to chat with yet.\n\n"
        "Ctrl+O picks runs (their adapters or checkpoints) to compare with their base model;\n"
        "'c' on a run in the Runs or Monitor screen opens it here.",
    )


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
    title.append(f" base {base_name(base_path, model_spec)}", style="bold")
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


def base_name(base_path: str, model_spec: str) -> str:
    return "tiny-chat" if model_spec == "sample" else Path(base_path).name or base_path


def pane_titles(base_path: str, model_spec: str, tuned: list[AdapterChoice]) -> list[str]:
    """The base pane's title, then each tuned side's.

    One tuned side is named by its run (and β); two or more lead with what differs between their
    runs' configs (``β=0.5``), as compare's legend does, since their run ids differ only in a timestamp.
    """
    titles = [f"base · {base_name(base_path, model_spec)}"]
    if len(tuned) >= 2:
        diffs = legend_labels([a.config or {} for a in tuned], [a.label for a in tuned])
        for a, diff in zip(tuned, diffs, strict=True):
            checkpoint = "@" + a.label.split("@", 1)[1] if "@" in a.label and diff != a.label else ""
            titles.append(a.label if diff == a.label else f"{diff}{checkpoint} · {a.label}")
        return titles
    for a in tuned:
        titles.append(f"{a.label} · β {a.beta:g}" if a.beta is not None else a.label)
    return titles


def hint_line(session: ChatSession, in_box: bool) -> Text:
    """One line of guidance: how the answers are decoded before the first question, then how context works."""
    if session.histories and any(session.histories):
        text = "Follow-ups keep each side's conversation · Ctrl+N starts fresh"
    elif session.settings.greedy:
        text = "Greedy: sides differ only by their training · Ctrl+G samples (varied answers)"
    else:
        text = "Sampling: answers vary with the seed (Ctrl+R re-asks) · Ctrl+G: greedy"
    if not in_box:
        text = "Outside the prompt: ? and 1–4 are keys · Enter goes back to typing"
    return Text(" " + text, style="italic")
