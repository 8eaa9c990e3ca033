"""The runs table's rows, as pure functions of a ``RunSummary``: cells, the detail line, filter and sort.

Unit-tested directly (no Textual app); the runs screen (``runs.py``) only places what these return.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from ...core import numfmt
from ...core.events import printable
from ...core.run_states import ACTIVE_STATES, FAILED_STATES, RESUMABLE_STATES, state_label
from ..format import duration

if TYPE_CHECKING:
    from ...core.runs import RunSummary

# (key, label, width). Fixed widths: auto-sized columns re-measure on idle and can paint a
# frame at the label widths first; fixed ones also keep snapshots stable. The run column
# grows to the longest id (up to RUN_ID_MAX cells). A fixed-width cell cuts what does not fit
# without a mark, so every cell is formatted to its column's width here (``cell_width``).
COLUMNS = (
    ("sel", " ", 1),
    ("run", "run", 30),
    ("state", "state", 10),
    ("progress", "steps", 7),
    ("loss", "loss", 6),
    ("margin", "margin", 6),
    ("acc", "acc", 4),
    ("beta", "β", 5),
    ("loss_type", "loss type", 9),
    ("rank", "rank", 4),
    ("group", "group", 16),
    ("model", "model", 14),
    ("dataset", "dataset", 14),
    ("ran", "ran", 6),
    ("age", "age", 6),
    ("exit", "exit reason", 40),
)
SELECTED_MARK = "●"
RUN_ID_MAX = 48
WIDTHS = {key: width for key, _, width in COLUMNS}
# What must stay on screen right of the run id at 80 columns: state, steps, loss, margin and accuracy.
KEPT_AFTER_RUN = 5
MIN_RUN_WIDTH = 24


def run_id_width(longest: int, room: int) -> int:
    """The run column's width in a table ``room`` cells wide (scrollbar excluded).

    The longest id (up to ``RUN_ID_MAX``), but never so wide that accuracy is pushed off screen; longer
    ids show a visible ``…`` in the middle, keeping the tail that tells β-ladder rungs apart. Then the
    slack goes to the run column so that the first column that does not fit starts past the edge: a
    column cut at the screen edge reads as another value (β 0.3 as "0", accuracy 0.86 as "0.8")."""
    pad = 2  # DataTable's cell padding, both sides
    after = [WIDTHS[key] + pad for key, _, _ in COLUMNS[2:]]
    avail = room - (WIDTHS["sel"] + pad) - pad
    width = min(max(longest, WIDTHS["run"]), RUN_ID_MAX, max(MIN_RUN_WIDTH, avail - sum(after[:KEPT_AFTER_RUN])))
    used = width
    for column in after:
        if used + column > avail:
            return width + max(0, avail - used)  # pad the run column: the next column starts off screen
        used += column
    return width


def cell_width(key: str) -> int:
    return RUN_ID_MAX if key == "run" else WIDTHS[key]


def number_cell(value: float | None, key: str, zeros: bool = True) -> str:
    """A value in significant digits that fits its column (``1.3e-5``, never ``1.26e-``); metrics keep
    trailing zeros (``0.250``), settings (``zeros=False``) read shortest (β ``0.1``)."""
    return numfmt.num(value, cell_width(key), zeros=zeros)


def text_cell(text: str | None, key: str, keep_end: bool = False) -> str:
    """Text cut with a visible ``…`` to its column, never silently."""
    return numfmt.ellipsize(text, cell_width(key), keep_end=keep_end)


def model_label(model: str | None) -> str:
    if not model:
        return "–"
    if model == "sample":
        return "tiny-chat"
    return Path(model).name if "/" in model and Path(model).is_absolute() else model


def dataset_label(dataset: str | None) -> str:
    if not dataset:
        return "–"
    if dataset == "sample":
        return "sample"
    path = Path(dataset)
    return path.name if path.is_absolute() or dataset.startswith((".", "~")) else dataset


def queue_position(phase: str | None) -> int | None:
    """2 for the supervisor's ``queued: position 2, gpu0 busy with …``; None when not waiting."""
    match = re.match(r"queued: position (\d+)", phase or "")
    return int(match.group(1)) if match else None


def state_cell(summary: RunSummary) -> Text:
    state = state_label(summary.state, summary.kind) + ("?" if summary.stalled else "")
    position = queue_position(summary.phase) if summary.state == "queued" else None
    if position is not None:
        state = f"queued #{position}"
    style = {
        "running": "bold",
        "starting": "bold",
        "stopping": "bold",
        "finished": "",
        "failed": "bold reverse",
        "crashed": "bold reverse",
        "unreadable": "dim",
    }.get(summary.state, "")
    return Text(state, style=style)


def unreadable_reason(summary: RunSummary) -> str:
    """The folder's problem without the ``Run <id>:`` prefix the row already shows."""
    error = summary.error or "unreadable"
    return printable(error.removeprefix(f"Run {summary.id}: ").removeprefix(f"Run {summary.id} "))


def exit_text(summary: RunSummary) -> str:
    """Why a run ended: ``oom: CUDA out of memory``, ``cancelled``, ``unreadable: no config.json``."""
    if summary.error is not None:
        return f"unreadable: {unreadable_reason(summary)}"
    if summary.state in FAILED_STATES:
        kind = printable(summary.kind or summary.state)
        return f"{kind}: {printable(summary.message)}" if summary.message else kind
    if summary.state == "stopped":
        return summary.kind or "stopped"
    if summary.state == "finished":
        return "finished"
    return ""


def run_seconds(summary: RunSummary, now: float) -> float | None:
    """How long it trained (so far): from the injected clock, never the machine's."""
    if not summary.started_at:
        return None
    if summary.ended_at:
        return summary.ended_at - summary.started_at
    return now - summary.started_at if summary.state in ACTIVE_STATES else None


def row_cells(summary: RunSummary, now: float, selected: bool = False, id_width: int = RUN_ID_MAX) -> list[Any]:
    age = duration(now - summary.created_at) if summary.created_at else "–"
    rank = "full" if summary.method == "full" else ("–" if summary.lora_rank is None else numfmt.count(summary.lora_rank, cell_width("rank")))
    return [
        Text(SELECTED_MARK, style="bold") if selected else "",
        numfmt.ellipsize(printable(summary.id), id_width, keep_end=True),
        state_cell(summary),
        numfmt.steps(summary.step, summary.max_steps, cell_width("progress")),
        number_cell(summary.loss, "loss"),
        number_cell(summary.margin, "margin"),
        "–" if summary.accuracy is None else f"{summary.accuracy:.2f}",
        number_cell(summary.beta, "beta", zeros=False),
        text_cell(summary.loss_type or None, "loss_type"),
        rank,
        text_cell(printable(summary.group) if summary.group else None, "group", keep_end=True),
        text_cell(model_label(summary.model), "model", keep_end=True),
        text_cell(dataset_label(summary.dataset), "dataset", keep_end=True),
        duration(run_seconds(summary, now)),
        age,
        text_cell(exit_text(summary), "exit"),
    ]


def header_text(root: str, summaries: list[RunSummary], error: str | None, listed: bool, matched: int | None,
                sort: tuple[SortKey, bool] | None, selected: int) -> Text:
    """The line above the table: the root, how many runs (active, matching the filter ``matched``,
    selected) and the order when ``sort`` (key, reversed) is not the natural newest-first."""
    if error:
        header = Text(error)
    elif not listed:
        header = Text(f"Runs in {root}  ·  reading…", style="dim")
    elif summaries:
        active = sum(1 for s in summaries if s.state in ACTIVE_STATES)
        parts = [f"Runs in {root}", f"{len(summaries)} run{'' if len(summaries) == 1 else 's'}, {active} active"]
        if matched is not None:
            parts.append(f"{matched} match")
        if sort is not None:
            key, reverse = sort
            parts.append(f"sorted by {key.name} {'↓' if key.descending != reverse else '↑'}")
        if selected:
            parts.append(f"{selected} selected")
        header = Text("  ·  ".join(parts))
    else:
        header = Text(f"No runs yet in {root}. Press n to set one up.")
    header.no_wrap, header.overflow = True, "ellipsis"  # one line: a wrapped tail would be hidden
    return header


def detail_text(summary: RunSummary | None, now: float, evals: str | None = None) -> Text:
    """The line under the table; ``evals`` is the run's newest evaluation in a few words
    (``core.eval.view.short_summary``; ``R`` opens it)."""
    if summary is None:
        return Text("")
    if summary.error:
        return Text(f"{printable(summary.id)}: unreadable: {unreadable_reason(summary)} · d deletes the folder")
    shown_id = printable(summary.id)
    parts = [f"{shown_id}: {state_label(summary.state, summary.kind)}"]
    if summary.kind and summary.state in RESUMABLE_STATES and summary.kind != "cancelled":
        parts[0] += f" ({summary.kind})"
    if summary.state == "queued" and summary.phase:  # the phase holds the queue position
        parts[0] = f"{shown_id}: {printable(summary.phase).replace('queued: ', 'queued, ', 1)}"
    if summary.message and summary.state in FAILED_STATES:
        parts.append(printable(summary.message))
    if summary.hint and summary.state in RESUMABLE_STATES:
        parts.append(printable(summary.hint))
    if summary.stalled:
        parts.append("no heartbeat for minutes: the trainer may be hung")
    if summary.beta is not None:
        rank = "full" if summary.method == "full" else f"r={summary.lora_rank}"
        parts.append(f"{model_label(summary.model)} β={summary.beta:g} {summary.loss_type} {rank}")
    if evals:  # before the run's facts below: on a two-line panel at 80 columns the line's end is cut
        parts.append(f"eval {evals} (R)")
    seconds = run_seconds(summary, now)
    if seconds is not None:
        parts.append(f"ran {duration(seconds)}")
    if summary.dataset:
        parts.append(f"data {dataset_label(summary.dataset)}")
    if summary.group:
        parts.append(f"group {summary.group}")
    return Text(" · ".join(parts))


# --- filter and sort -----------------------------------------------------------------------------
def haystack(summary: RunSummary) -> str:
    fields = (summary.id, summary.state, summary.model, model_label(summary.model), summary.dataset, summary.group, summary.kind)
    return " ".join(f for f in fields if f).lower()


def matches(summary: RunSummary, query: str) -> bool:
    """Every whitespace-separated term of ``query`` occurs in the run's id, model, dataset, group or state."""
    text = haystack(summary)
    return all(term in text for term in query.lower().split())


@dataclass(frozen=True)
class SortKey:
    name: str
    """What the header says: ``sorted by β``."""
    value: Callable[[RunSummary, float], Any]
    descending: bool
    """The natural direction (newest, highest accuracy… first)."""


STATE_ORDER = {"running": 0, "stopping": 1, "starting": 2, "queued": 3, "failed": 4, "crashed": 5, "stopped": 6, "finished": 7, "unreadable": 8}

SORT_KEYS: tuple[SortKey, ...] = (
    SortKey("newest", lambda s, now: s.id, True),
    SortKey("state", lambda s, now: STATE_ORDER.get(s.state, 9), False),
    SortKey("β", lambda s, now: s.beta, False),
    SortKey("loss", lambda s, now: s.loss, False),
    SortKey("margin", lambda s, now: s.margin, True),
    SortKey("accuracy", lambda s, now: s.accuracy, True),
    SortKey("duration", lambda s, now: run_seconds(s, now), True),
    SortKey("group", lambda s, now: s.group or None, False),
    SortKey("model", lambda s, now: model_label(s.model) if s.model else None, False),
)


def sort_summaries(summaries: Iterable[RunSummary], key: SortKey, reverse: bool, now: float) -> list[RunSummary]:
    """Sorted by ``key`` (its natural direction, flipped by ``reverse``); runs without a value last,
    ties newest first."""
    items = sorted(summaries, key=lambda s: s.id, reverse=True)
    known = [s for s in items if key.value(s, now) is not None]
    unknown = [s for s in items if key.value(s, now) is None]
    descending = key.descending != reverse
    # Python's sort is stable (reverse=True too), so ties keep the newest-first order.
    known.sort(key=lambda s: key.value(s, now), reverse=descending)
    return known + unknown
