"""The VRAM bar: estimated peak memory against the chosen GPUs' free memory, the breakdown, the
verdict and the suggestions (each applied with one key: F6, F7, F8, F9).

The parent sets :attr:`VramBar.estimate` and :attr:`VramBar.free_bytes` (attributes down); the
text is built by :func:`vram_text`, a pure function of those values.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ..format import GIB, human_bytes, progress_bar

SUGGESTION_KEYS = ("f6", "f7", "f8", "f9")
VERDICT_WORDS = {"fits": "fits", "tight": "tight", "oom": "does not fit", "no": "does not fit", "does-not-fit": "does not fit"}


def components_of(estimate: Any) -> list[tuple[str, float]]:
    comps = getattr(estimate, "components", None) or {}
    if isinstance(comps, dict):
        items = list(comps.items())
    else:
        items = [(getattr(c, "name", getattr(c, "label", "?")), getattr(c, "bytes", getattr(c, "total_bytes", 0))) for c in comps]
    return [(str(k), float(v or 0)) for k, v in items if v]


def verdict_word(estimate: Any) -> str:
    verdict = str(getattr(estimate, "verdict", "") or "")
    if verdict in VERDICT_WORDS:
        return VERDICT_WORDS[verdict]
    if verdict:
        return verdict.replace("_", " ").replace("-", " ")
    fits = getattr(estimate, "fits", None)
    return "fits" if fits else "does not fit" if fits is False else "unknown"


def vram_text(estimate: Any, free_bytes: float | None, device_label: str, width: int, error: str | None = None, note: str = "") -> Text:
    """Up to six lines: bar + verdict, a device warning (shared or missing GPUs), breakdown, suggestions."""
    warning = Text(f"\n⚠ {note}", style="bold") if note else Text()
    if error:
        return Text(f"VRAM: {error}", style="dim") + warning
    if estimate is None:
        return Text("VRAM: estimating…", style="dim") + warning
    total = float(getattr(estimate, "total_bytes", 0) or 0)
    word = verdict_word(estimate)
    out = Text()
    if free_bytes:
        frac = total / free_bytes
        tail = f" {human_bytes(total)} of {free_bytes / GIB:.1f} GiB free on {device_label} "
        bar_w = max(6, min(40, width - len("VRAM ") - len(tail) - len(word) - 3))
        out.append("VRAM ")
        out.append(progress_bar(min(1.0, frac), bar_w), style="bold")
        out.append(tail)
    else:
        out.append(f"VRAM peak ≈ {human_bytes(total)} ({device_label}) ")
    out.append(f" {word} ", style="bold reverse")
    out.append_text(warning)
    parts = [(name, value) for name, value in components_of(estimate) if value >= 0.005 * total]
    if parts:
        # Packed part by part so a narrow terminal breaks between "name value" pairs, never inside one.
        lines: list[str] = []
        for piece in (f"{name.replace('_', ' ')} {human_bytes(value)}" for name, value in parts):
            if lines and len(lines[-1]) + 3 + len(piece) <= max(20, width - 2):
                lines[-1] += " · " + piece
            else:
                lines.append(piece)
        out.append("\n" + "\n".join(lines), style="dim")
    suggestions = list(getattr(estimate, "suggestions", None) or [])[: len(SUGGESTION_KEYS)]
    for key, s in zip(SUGGESTION_KEYS, suggestions, strict=False):
        label = getattr(s, "label", str(s))
        after = getattr(s, "total_bytes", None)
        fits = getattr(s, "fits", None)
        tail = f" → {human_bytes(after)}" if after else ""
        tail += " (fits)" if fits else ""
        out.append(f"\n{key.upper()} {label}{tail}")
    return out


class VramBar(Widget):
    estimate: reactive[Any] = reactive(None, always_update=True)
    free_bytes: reactive[float | None] = reactive(None)
    device_label: reactive[str] = reactive("GPU")
    error: reactive[str | None] = reactive(None)
    note: reactive[str] = reactive("")
    """A device warning: the chosen GPUs are shared with other users, or missing."""

    def watch_estimate(self, estimate: Any) -> None:
        word = verdict_word(estimate) if estimate is not None else ""
        self.set_class(word == "fits", "-fits")
        self.set_class(word == "tight", "-tight")
        self.set_class(word == "does not fit", "-oom")

    def render(self) -> Text:
        return vram_text(self.estimate, self.free_bytes, self.device_label, self.size.width, self.error, self.note)
