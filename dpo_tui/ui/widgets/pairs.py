"""Render a preference pair and token-length histograms as Rich text (pure builders + a small widget)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

SEGMENT_STYLES = {"prompt": "dim", "trained": "", "cut": "strike dim"}


def _side(segments: list[tuple[str, str]], kept: int, total: int, max_length: int | None) -> Text:
    text = Text()
    for chunk, kind in segments:
        if kind == "prompt":
            continue
        if kind == "cut":
            text.append(f" ✂ cut at max_length {max_length} ({total - kept} tokens) ✂ ", style="reverse")
        text.append(chunk, style=SEGMENT_STYLES.get(kind, ""))
    return text


def pair_renderable(preview: Any, index: int, count: int) -> RenderableType:
    """The prompt once (as the template renders it), then chosen and rejected side by side."""
    prompt = "".join(chunk for chunk, kind in preview.chosen if kind == "prompt")
    head = Text(f"pair {index + 1}/{count} · {preview.format} · prompt {preview.prompt_tokens} tokens", style="bold")
    if preview.dropped:
        head.append(f"  DROPPED by the trainer: the prompt alone has ≥ {preview.max_length} tokens", style="reverse")
    if preview.prompt_left_out:
        head.append(f"  ({preview.prompt_left_out} prompt tokens are not a prefix; the trainer leaves them out)")
    table = Table.grid(expand=True, padding=(0, 1))
    table.add_column(ratio=1)
    table.add_column(ratio=1)
    chosen_title = Text(f"chosen · {preview.chosen_tokens} tokens", style="bold underline")
    rejected_title = Text(f"rejected · {preview.rejected_tokens} tokens", style="bold underline")
    if preview.chosen_kept < preview.chosen_tokens:
        chosen_title.append(f" ({preview.chosen_tokens - preview.chosen_kept} cut)")
    if preview.rejected_kept < preview.rejected_tokens:
        rejected_title.append(f" ({preview.rejected_tokens - preview.rejected_kept} cut)")
    table.add_row(chosen_title, rejected_title)
    table.add_row(
        _side(preview.chosen, preview.chosen_kept, preview.chosen_tokens, preview.max_length),
        _side(preview.rejected, preview.rejected_kept, preview.rejected_tokens, preview.max_length),
    )
    return Group(head, Text("prompt:", style="bold"), Text(prompt, style="dim"), Text(""), table)


def plain_pair_renderable(row: dict[str, Any], index: int, count: int, reason: str) -> RenderableType:
    """A pair without a tokenizer: the raw normalized fields, and why tokens are not shown."""

    def as_text(value: Any) -> str:
        if isinstance(value, list):
            return "\n".join(f"[{m.get('role')}] {m.get('content')}" for m in value if isinstance(m, dict))
        return str(value)

    table = Table.grid(expand=True, padding=(0, 1))
    table.add_column(ratio=1)
    table.add_column(ratio=1)
    table.add_row(Text("chosen", style="bold underline"), Text("rejected", style="bold underline"))
    table.add_row(Text(as_text(row.get("chosen"))), Text(as_text(row.get("rejected"))))
    head = Text(f"pair {index + 1}/{count}  ({reason})", style="bold")
    return Group(head, Text("prompt:", style="bold"), Text(as_text(row.get("prompt")), style="dim"), Text(""), table)


def histogram_renderable(tokens: dict[str, Any] | None, chars: dict[str, Any] | None, width: int = 40) -> RenderableType:
    """Token lengths of the longer sequence per pair as horizontal bars, with the max_length cut marked.

    Titled with what is counted (pairs, by tokens of the prompt plus the longer of chosen and rejected),
    and the columns labelled, so a bar never reads as a count of words or of one side."""
    if not tokens:
        out = Text("Lengths in characters (no tokenizer yet)\n", style="bold")
        out.append("Token lengths appear once a model with a tokenizer is chosen.\n", style="dim")
        for key in ("prompt", "chosen", "rejected"):
            s = (chars or {}).get(key)
            if s:
                out.append(f"{key:<9} characters p50 {s['p50']:>6}  p99 {s['p99']:>6}  max {s['max']:>6}\n")
        return out
    lines = Text()
    max_length = tokens.get("max_length")
    bins = tokens.get("histogram") or []
    peak = max((b["count"] for b in bins), default=0) or 1
    bar_w = max(8, width - 22)
    used = [i for i, b in enumerate(bins) if b["count"]]
    lines.append("Pairs by length in tokens: prompt + the longer of chosen and rejected\n", style="bold")
    if used:
        lines.append(f"{'tokens':<13} pairs" + ("   (✂ past max_length)" if max_length is not None else "") + "\n", style="dim")
    for b in bins[used[0] : used[-1] + 1] if used else []:
        over = max_length is not None and b["hi"] >= max_length
        bar = "█" * max(1 if b["count"] else 0, round(bar_w * b["count"] / peak))
        lines.append(f"{b['lo']:>6}–{b['hi']:<6} ")
        lines.append(bar.ljust(bar_w), style="reverse" if over else "")
        lines.append(f" {b['count']}" + (" ✂" if over else "") + "\n")
    for key in ("prompt", "chosen", "rejected", "sequence"):
        s = tokens.get(key)
        if s:
            lines.append(f"{key:<9} tokens p50 {s['p50']:>6}  p99 {s['p99']:>6}  max {s['max']:>6}\n")
    if max_length is not None:
        lines.append(
            f"max_length {max_length}: {tokens.get('truncated', 0)} pairs cut ({tokens.get('truncated_pct', 0.0):.1f}%), "
            f"{tokens.get('dropped', 0)} dropped ({tokens.get('dropped_pct', 0.0):.1f}%)\n",
            style="bold",
        )
    padded = tokens.get("padded")
    if padded and padded.get("p50") is not None:
        lines.append(f"padded batch length (batch {padded.get('batch_size')}): p50 {padded['p50']}  max {padded['max']}\n")
    return lines
