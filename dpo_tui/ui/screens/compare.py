"""Compare two or more runs: overlaid curves, a config diff of only what differs, final and best metrics.

Pushed on the runs mode's stack by the runs screen (``v`` with runs selected). A thread worker
folds each run's event log (``core.compare.load_metrics``) and posts :class:`CompareScreen.Loaded`;
the handler owns the charts and tables. Each run gets one colour in every chart and a legend label
from what differs (``core.compare.legend_labels``: ``β=0.05`` versus ``β=0.5``).

The table builders (:func:`metric_rows`, :func:`diff_rows`) are pure, unit-tested directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.widgets import DataTable, TabbedContent, TabPane

from ...core.errors import UserError
from ..format import compact_float, metric
from ..messages import Snapshot
from ..widgets.footer import ConsoleFooter
from ..widgets.header import StatusHeader
from ..widgets.metric_chart import ChartLegend, MetricChart, Series
from ..widgets.run_panels import TextPanel
from .base import ConsoleScreen

# (chart id, title, metric). The fourth chart shows chosen or rejected rewards (``w`` switches).
CHARTS = (
    ("cmp-loss", "loss", "loss"),
    ("cmp-margins", "reward margin", "rewards/margins"),
    ("cmp-accuracy", "reward accuracy", "rewards/accuracies"),
    ("cmp-rewards", "chosen reward", "rewards/chosen"),
)
LEGEND_IGNORES = frozenset({"group"})
REWARD_VIEWS = (("chosen reward", "rewards/chosen"), ("rejected reward", "rewards/rejected"))

# Rows of the final/best table, in this order (metrics no run logged are left out).
METRIC_ORDER = (
    "loss",
    "rewards/margins",
    "rewards/accuracies",
    "rewards/chosen",
    "rewards/rejected",
    "logps/chosen",
    "logps/rejected",
    "eval_loss",
    "eval_rewards/margins",
    "eval_rewards/accuracies",
)


@dataclass
class ComparedRun:
    id: str
    label: str
    state: str
    config: dict[str, Any]
    series: dict[str, list[tuple[float, float | None]]]
    final: dict[str, float]
    best: dict[str, float]
    step: int = 0
    eval_report: Any = None
    """The run's newest evaluation report (``core.eval.report.EvalReport``), if it has one."""


@dataclass
class Comparison:
    runs: list[ComparedRun] = field(default_factory=list)
    diff: dict[str, list[Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def unique_labels(labels: list[str]) -> list[str]:
    """Labels as given, with ``#2``, ``#3`` added to repeats (two runs with the same β)."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label} #{seen[label]}")
    return out


def short_ids(ids: list[str], width: int) -> list[str]:
    """Run ids cut to what tells them apart, so a column of them fits ``width`` cells.

    The dash-separated parts every id shares at the same place become ``…`` (``…-212000-…-b0.05``);
    an id still too wide loses its middle to ``…``. Every cut shows an ``…``, so a shortened id never
    reads as another, whole one; if two would end up alike, the ids are kept whole (the table scrolls).
    """
    if len(ids) < 2 or all(len(i) <= width for i in ids):
        return list(ids)
    parts = [i.split("-") for i in ids]
    depth = min(len(p) for p in parts)
    # The last part (β, a suffix) is kept: it is what a reader matches against the legend.
    shared = {n for n in range(depth) if len({p[n] for p in parts}) == 1 and all(n < len(p) - 1 for p in parts)}
    out = []
    for p in parts:
        pieces: list[str] = []
        for n, piece in enumerate(p):
            if n not in shared:
                pieces.append(piece)
            elif not pieces or pieces[-1] != "…":
                pieces.append("…")
        out.append("-".join(pieces))
    out = [i if len(i) <= width else i[: (width - 1) // 2] + "…" + i[len(i) - (width - 1 - (width - 1) // 2):] for i in out]
    return out if len(set(out)) == len(out) else list(ids)


def load_comparison(root: Path, ids: list[str]) -> Comparison:
    """Fold each run's events; an unreadable run is reported in ``errors`` and left out."""
    from ...core.compare import config_diff, legend_labels, load_metrics
    from ...core.eval.report import latest_report
    from ...core.runs import Run

    loaded = []
    errors = []
    for run_id in ids:
        run = Run(root / run_id)
        try:
            metrics = load_metrics(run)
            state = str(run.status(reconcile=False).state)
        except UserError as exc:
            errors.append(exc.summary)
            continue
        except OSError as exc:
            errors.append(f"{run_id}: {exc.strerror or exc}")
            continue
        loaded.append((run_id, state, metrics))
    reports = {run_id: latest_report(root / run_id) for run_id, _, _ in loaded}
    configs = [m.config for _, _, m in loaded]
    # The group names runs, it does not change them: "group=" in a legend would only add noise.
    plain = [{k: v for k, v in c.items() if k not in LEGEND_IGNORES} for c in configs]
    ids = [run_id for run_id, _, _ in loaded]
    labels = legend_labels(plain, ids)
    # Nothing differs, so runs are told apart by id: what differs of the ids, or three would not fit 80 columns.
    labels = unique_labels(short_ids(ids, 24) if labels == ids else labels)
    runs = [
        ComparedRun(
            id=run_id,
            label=label,
            state=state,
            config=m.config,
            series={name: list(points) for name, points in m.history.series.items()},
            final=m.final(),
            best=m.best(),
            step=m.history.step,
            eval_report=reports.get(run_id),
        )
        for (run_id, state, m), label in zip(loaded, labels, strict=True)
    ]
    return Comparison(runs, config_diff(configs), errors)


def _shown(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return compact_float(value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "[]"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "{}"
    return str(value)


def diff_rows(comparison: Comparison, id_width: int = 40) -> list[list[str]]:
    """``[field, value per run…]`` for the fields that differ (plus each run's id first, cut by
    :func:`short_ids` to ``id_width``)."""
    ids = short_ids([r.id for r in comparison.runs], id_width)
    rows = [["run", *ids], ["state", *(r.state for r in comparison.runs)]]
    for name, values in comparison.diff.items():
        rows.append([name, *(_shown(v) for v in values)])
    return rows


def metric_rows(comparison: Comparison) -> list[list[Text | str]]:
    """``[metric, "final (best)" per run…]``; the run with the best final value of a metric is bold. Then
    the newest evaluation's words change, facts, pair accuracy and win rate when any run has one."""
    from ...core.compare import BETTER

    runs = comparison.runs
    rows: list[list[Text | str]] = [["steps", *(str(r.step) for r in runs)]]
    names = [m for m in METRIC_ORDER if any(m in r.final for r in runs)]
    for name in names:
        finals = [r.final.get(name) for r in runs]
        usable = [v for v in finals if v is not None and math.isfinite(v)]
        winner = None
        if name in BETTER and len(usable) > 1 and len(set(usable)) > 1:
            winner = min(usable) if BETTER[name] == "min" else max(usable)
        cells: list[Text | str] = [name]
        for r, final in zip(runs, finals, strict=True):
            if final is None:
                cells.append("–")
                continue
            best = r.best.get(name)
            text = metric(final) + (f" ({metric(best)})" if best is not None and best != final else "")
            cells.append(Text(text, style="bold") if winner is not None and final == winner else text)
        rows.append(cells)
    from ...core.eval.view import compare_rows

    for extra in compare_rows([r.eval_report for r in runs]):  # none when no run has been evaluated
        eval_cells: list[Text | str] = [*extra]
        rows.append(eval_cells)
    return rows


class CompareScreen(ConsoleScreen):
    """Runs side by side. ``c``/``d``/``t`` switch curves, config diff and final/best metrics."""

    BINDINGS = [
        Binding("escape", "back", "Runs", id="compare.back", tooltip="Back to the runs overview"),
        Binding("c", "show_tab('curves')", "Curves", id="compare.curves", tooltip="Curves: loss, margin, accuracy, rewards"),
        Binding("d", "show_tab('diff')", "Diff", id="compare.diff", tooltip="The config fields that differ between the runs"),
        Binding("t", "show_tab('metrics')", "Metrics", id="compare.metrics", tooltip="Final and best value of each metric per run"),
        Binding("w", "toggle_rewards", "Rewards", id="compare.rewards", tooltip="Chosen or rejected rewards in the 4th chart"),
        Binding("m", "toggle_smoothing", "Smooth", id="compare.smooth", tooltip="Toggle curve smoothing (EMA)"),
    ]

    @dataclass
    class Loaded(Snapshot):
        """The compared runs' configs, curves and final/best metrics, read off the UI thread.

        Posted once by the ``compare-load`` thread worker (:meth:`_load`) when the screen mounts.
        """

        comparison: Comparison

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self.comparison: Comparison | None = None
        self.rewards_view = 0
        self.smooth = False

    def compose(self) -> ComposeResult:
        yield StatusHeader()
        yield TextPanel(id="compare-title")
        yield ChartLegend(id="compare-legend")
        with TabbedContent(id="compare-tabs", initial="curves"):
            with TabPane("Curves", id="curves"), Grid(id="compare-charts"):
                for chart_id, title, _ in CHARTS:
                    yield MetricChart(title, latest=False, id=chart_id, classes="chart")
            with TabPane("Config diff", id="diff"):
                yield DataTable(id="compare-diff", cursor_type="row", zebra_stripes=True)
            with TabPane("Final & best", id="metrics"):
                yield DataTable(id="compare-metrics", cursor_type="row", zebra_stripes=True)
        yield ConsoleFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#compare-title", TextPanel).show(Text(f"Comparing {len(self.run_ids)} runs · loading…", style="dim"))
        self._load(self.services.runs_root, self.run_ids)

    @work(thread=True, exclusive=True, group="compare-load", exit_on_error=False, description="read the runs to compare")
    def _load(self, root: Path, ids: list[str]) -> None:
        self.post_message(self.Loaded(load_comparison(root, ids)))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.comparison = comparison = message.comparison
        runs = comparison.runs
        title = Text(f"Comparing {len(runs)} runs", style="bold")
        groups = {str(r.config.get("group") or "") for r in runs}
        if len(groups) == 1 and "" not in groups:
            title.append(f" · group {groups.pop()}")
        differing = len(comparison.diff)
        title.append(f" · {differing} config field{'s differ' if differing != 1 else ' differs'}" if differing else " · same config")
        if comparison.errors:
            title.append(f" · left out: {'; '.join(comparison.errors)}", style="bold")
        self.query_one("#compare-title", TextPanel).show(title)
        self.query_one(ChartLegend).set_labels([r.label for r in runs])
        self._draw_charts()
        self._fill_table("#compare-diff", ["field", *(r.label for r in runs)], diff_rows(comparison, self._id_width()))
        self._fill_table("#compare-metrics", ["metric", *(r.label for r in runs)], metric_rows(comparison))

    def _id_width(self) -> int:
        """Cells per run column that let every run's column fit beside the field names."""
        runs = self.comparison.runs if self.comparison else []
        names = max((len(name) for name in ("field", "state", *(self.comparison.diff if self.comparison else ()))), default=5)
        # Each DataTable column pads one cell either side; two more for the scrollbar and the border.
        return max(12, (self.app.size.width - 2 - (names + 2)) // max(1, len(runs)) - 2)

    def _fill_table(self, selector: str, labels: list[str], rows: list[list[Any]]) -> None:
        table = self.query_one(selector, DataTable)
        table.clear(columns=True)
        for index, label in enumerate(labels):
            widths = [cell.cell_len if isinstance(cell, Text) else len(str(cell)) for cell in (row[index] for row in rows)]
            table.add_column(label, key=f"c{index}", width=min(max(len(label), *widths), 40))
        table.add_rows(rows)

    def _draw_charts(self) -> None:
        runs = self.comparison.runs if self.comparison else []
        title, reward_metric = REWARD_VIEWS[self.rewards_view]
        with self.app.batch_update():
            for chart_id, chart_title, name in CHARTS:
                chart = self.query_one(f"#{chart_id}", MetricChart)
                if chart_id == "cmp-rewards":
                    chart.title, name = title, reward_metric
                else:
                    chart.title = chart_title
                chart.set_series([Series(r.label, r.series.get(name, [])) for r in runs], smooth=self.smooth)

    # --- actions --------------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#compare-tabs", TabbedContent).active = tab

    def action_toggle_rewards(self) -> None:
        self.rewards_view = 1 - self.rewards_view
        self.query_one("#compare-tabs", TabbedContent).active = "curves"
        self._draw_charts()

    def action_toggle_smoothing(self) -> None:
        self.smooth = not self.smooth
        self._draw_charts()
