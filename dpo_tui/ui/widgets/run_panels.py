"""Small monitor panels. Each takes plain values from its parent and renders one or two lines.

The text builders are pure functions (``progress_text`` …) so tests can check them directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.widget import Widget

from ...core.events import RunHistory
from ..format import GIB, duration, human_bytes, progress_bar

OUTCOME_WORDS = {
    "finished": "finished",
    "stopped": "stopped",
    "failed": "failed",
    "crashed": "crashed",
}


def progress_text(history: RunHistory, state: str, width: int, now: float | None = None) -> Text:
    """``step 12/30 ███░░ 40% · 1.3 it/s · ETA 14s · epoch 0.40 · 24s``, fitted to ``width``: the bar
    shrinks first, then the least useful parts go (epoch, elapsed, rate); step and ETA always stay."""
    step, total = history.step, history.max_steps
    # (priority, text): lower priority is dropped first when the line is too long.
    parts: list[tuple[int, str]] = []
    rate = history.steps_per_second()
    if rate:
        parts.append((2, f"{rate:.2f} steps/s" if rate < 10 else f"{rate:.0f} steps/s"))
    eta = history.eta_seconds()
    if eta is not None and state in ("running", "starting") and history.terminal is None:
        parts.append((3, f"ETA {duration(eta)}"))
    epoch = (history.last_log or {}).get("epoch")
    if isinstance(epoch, (int, float)):
        parts.append((0, f"epoch {epoch:.2f}"))
    if history.first_t is not None and history.last_t is not None:
        end = history.last_t if history.terminal is not None or now is None else max(history.last_t, now)
        parts.append((1, duration(end - history.first_t)))
    head = f"step {step}/{total} " if total else f"step {step}"
    fixed = len(head) + (5 if total else 0)  # " 100%"
    budget = max(20, width - 2)  # the panel's padding

    def tail_len(kept: list[tuple[int, str]]) -> int:
        return sum(3 + len(t) for _, t in kept)

    kept = list(parts)
    while kept and fixed + 4 + tail_len(kept) > budget:
        kept.remove(min(kept, key=lambda p: p[0]))
    text = Text()
    text.append(head)
    if total:
        frac = step / total
        bar_w = max(4, min(30, budget - fixed - tail_len(kept)))
        text.append(progress_bar(frac, bar_w), style="bold")
        text.append(f" {frac * 100:3.0f}%")
    for _, part in kept:
        text.append(f" · {part}")
    return text


def resources_text(resource: dict[str, Any] | None) -> Text:
    """``GPU0 31.2/80.0 GiB 97% · RSS 3.1 GiB`` from the newest ``resource`` event."""
    if not resource:
        return Text("resources: waiting for the first report…", style="dim")
    parts: list[str] = []
    for d in resource.get("devices") or []:
        used, total = d.get("used") or d.get("mem_used") or d.get("reserved"), d.get("total") or d.get("mem_total")
        util = d.get("util")
        index = d.get("index", len(parts))
        piece = f"GPU{index} {used / GIB:.1f}" + (f"/{total / GIB:.1f} GiB" if total else " GiB") if used else f"GPU{index}"
        if d.get("peak"):
            piece += f" peak {d['peak'] / GIB:.1f}"
        if isinstance(util, (int, float)):
            piece += f" {util:.0f}%"
        parts.append(piece)
    if not parts:
        parts.append("CPU")
        if isinstance(resource.get("cpu_percent"), (int, float)):
            parts[-1] += f" {resource['cpu_percent']:.0f}%"
    if resource.get("rss"):
        parts.append(f"RSS {human_bytes(resource['rss'])}")
    return Text(" · ".join(parts))


def checkpoint_text(history: RunHistory, newest_complete: str | None, final: str | None = None, best: Any = None) -> Text:
    """The weights a chat or export would use: the final adapter once saved (it supersedes the last
    checkpoint), else the newest checkpoint; plus the best by eval loss when that is another one."""
    ckpt = history.last_checkpoint
    if final:
        text = Text(f"final {'model' if final == 'model' else 'adapter'}: {final}/")
    elif newest_complete:
        text = Text(f"checkpoint: {newest_complete}")
    elif ckpt:
        name = str(ckpt.get("path") or "").rstrip("/").rsplit("/", 1)[-1] or f"step {ckpt.get('step')}"
        text = Text(f"checkpoint: {name}")
    else:
        return Text("no checkpoint yet", style="dim")
    if best is not None and best.value is not None and not (final and best.is_final):
        text.append(f"  best: {best.candidate.name} (eval loss {best.value:.3g})", style="bold")
    return text


def outcome_text(state: str, status: Any, history: RunHistory) -> str:
    """How the run ended, or its live state: ``failed (oom): CUDA out of memory — halve the batch``."""
    term = history.terminal or {}
    if state == "finished":
        return "finished"
    if state == "stopped":
        hint = term.get("hint") or getattr(status, "hint", None)
        return "stopped" + (f" — {hint}" if hint else "")
    if state == "failed":
        kind = term.get("kind") or getattr(status, "kind", None) or "crash"
        message = term.get("message") or getattr(status, "message", None) or ""
        hint = term.get("hint") or getattr(status, "hint", None)
        return f"failed ({kind})" + (f": {message}" if message else "") + (f" — {hint}" if hint else "")
    if state == "crashed":
        message = getattr(status, "message", None) or "the trainer vanished without a final event"
        return f"crashed: {message}"
    phase = getattr(status, "phase", "") or ""
    if state == "queued" and phase.startswith("queued: "):
        return phase.replace("queued: ", "queued, ", 1)  # "queued, position 2, gpu0 busy with <run>"
    return state + (f" ({phase})" if phase and state == "running" and phase != "training" else "")


def tail_lines(raw: bytes, limit: int) -> list[str]:
    """The last ``limit`` lines of a log tail; tqdm's carriage-return updates count as lines."""
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = [ln.rstrip() for chunk in text.split("\n") for ln in chunk.split("\r")]
    return [ln for ln in lines if ln.strip()][-limit:]


def _same_text(a: Text, b: Text) -> bool:
    """Whether two texts render alike (``Text.__eq__`` ignores the base style and layout flags)."""
    return (a.plain == b.plain and a.spans == b.spans and a.style == b.style and a.justify == b.justify
            and a.overflow == b.overflow and a.no_wrap == b.no_wrap and a.end == b.end)


class TextPanel(Widget):
    """Renders a :class:`rich.text.Text` the parent hands it.

    Long lines wrap unless the panel's rule in app.tcss sets ``text-wrap: nowrap`` (Textual styles the
    rendered text; a ``no_wrap`` flag on the Text itself is not honoured).
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._text = Text()

    def show(self, text: Text | str) -> None:
        text = Text(text) if isinstance(text, str) else text
        if _same_text(text, self._text):
            return  # the monitor re-shows every panel on each tick: an unchanged one must not repaint
        self._text = text
        self.refresh()

    @property
    def plain(self) -> str:
        return self._text.plain

    def render(self) -> Text:
        return self._text


class LogTail(TextPanel):
    """The newest lines of ``trainer.log``."""

    def show_lines(self, lines: Iterable[str]) -> None:
        self.show(Text("\n".join(lines) or "(the trainer log is empty)", style="" if lines else "dim"))
