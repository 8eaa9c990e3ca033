"""What the console shows of evaluation reports, as plain data: table rows, prompt order, chart points.

The Eval view (one run), the trade-off view (several runs), the runs list's summary and compare's
eval rows only place what these return, so every number's wording is tested here without a
Textual app. Percent changes use a real minus sign (``−41%``); a change whose confidence interval
excludes the no-change value (0, or 50 % for a rate judged against chance) reads ``✓ sig``, one
that includes it ``n.s.``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import numfmt
from .report import Change, EvalReport, PromptRow, eval_dir, latest_report

MINUS = "−"
SIG = "✓ sig"
NOT_SIG = "n.s."
SIG_NOTE = "✓ sig: the 95% CI excludes no change (0, or 50% for a win rate or pair accuracy); n.s.: it does not"


def signed(value: float | None, digits: int = 3, unit: str = "") -> str:
    """``+1.2``, ``−41%``: an explicit sign, a typographic minus."""
    if value is None or not math.isfinite(value):
        return numfmt.MISSING
    text = numfmt.num(abs(value), digits=digits)
    sign = "+" if value > 0 else (MINUS if value < 0 else "")
    return f"{sign}{text}{unit}"


def pct(share: float | None, digits: int = 0) -> str:
    """0.92 → ``92%``."""
    if share is None or not math.isfinite(share):
        return numfmt.MISSING
    return f"{share * 100:.{digits}f}%"


def signed_pct(rel: float | None) -> str:
    """A relative change: −0.412 → ``−41%``."""
    if rel is None or not math.isfinite(rel):
        return numfmt.MISSING
    value = round(rel * 100)
    return f"{'+' if value > 0 else (MINUS if value < 0 else '')}{abs(value)}%"


def ci_text(ci: tuple[float, float] | None, scale: float = 1.0, unit: str = "") -> str:
    if ci is None:
        return numfmt.MISSING
    lo, hi = (signed(v * scale, 2, unit) for v in ci)
    return f"[{lo}, {hi}]"


def share_ci_text(ci: tuple[float, float] | None) -> str:
    """A rate's interval, in percent: ``[55, 72]%``."""
    if ci is None:
        return numfmt.MISSING
    return f"[{ci[0] * 100:.0f}, {ci[1] * 100:.0f}]%"


def excludes(ci: tuple[float, float] | None, value: float) -> bool | None:
    if ci is None:
        return None
    return ci[0] > value or ci[1] < value


def sig_text(significant: bool | None) -> str:
    if significant is None:
        return ""
    return SIG if significant else NOT_SIG


# --- the Eval view's numbers ------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricRow:
    """One measure, base vs tuned: ``change`` is tuned − base, ``ci`` its interval, ``note`` ✓ sig / n.s."""

    measure: str
    base: str
    tuned: str
    change: str = ""
    ci: str = ""
    significant: bool | None = None

    @property
    def note(self) -> str:
        return sig_text(self.significant)

    def cells(self) -> list[str]:
        return [self.measure, self.base, self.tuned, self.change, self.ci, self.note]


METRIC_HEADER = ("measure", "base", "tuned", "change", "95% CI", "")


def _change_row(measure: str, change: Change) -> MetricRow:
    rel = f" {signed_pct(change.rel)}" if change.rel is not None else ""
    return MetricRow(measure, numfmt.num(change.base), numfmt.num(change.tuned), f"{signed(change.diff)}{rel}",
                     ci_text(change.ci), change.ci_excludes_zero)


def _plain_row(measure: str, base: float, tuned: float) -> MetricRow:
    return MetricRow(measure, numfmt.num(base), numfmt.num(tuned), signed(tuned - base))


def metric_rows(report: EvalReport) -> list[MetricRow]:
    """Every measure the report has, in reading order: behaviour, then what it may have cost."""
    b = report.behaviour
    rows = [
        _change_row("words, mean", b.words),
        _plain_row("words, median", b.base.median_words, b.tuned.median_words),
        _plain_row("words, p90", b.base.p90_words, b.tuned.p90_words),
        _change_row("tokens, mean", b.tokens),
        _plain_row("empty", b.base.empty, b.tuned.empty),
        _plain_row("truncated", b.base.truncated, b.tuned.truncated),
        _plain_row("looping", b.base.looping, b.tuned.looping),
    ]
    if b.sampled_words is not None:
        rows.append(_change_row(f"sampled words ×{report.settings.samples}", b.sampled_words))
    if report.pairs is not None:
        p = report.pairs
        rows.append(MetricRow("pair accuracy", "50%", pct(p.accuracy), f"n={p.n}", share_ci_text(p.accuracy_ci),
                              excludes(p.accuracy_ci, 0.5)))
        rows.append(MetricRow("pair margin", "0", numfmt.num(p.mean_margin), f"β={p.beta:g}"))
    if report.facts is not None:
        f = report.facts
        c = f.change
        rows.append(MetricRow("facts correct", f"{pct(c.base)} {f.base_correct}/{f.n}", f"{pct(c.tuned)} {f.tuned_correct}/{f.n}",
                              f"{signed(round(c.diff * 100), 3, ' pts')}", ci_text(c.ci, 100), c.ci_excludes_zero))
    if report.judge is not None:
        j = report.judge
        rows.append(MetricRow("win rate", "50%", pct(j.win_rate), f"{j.wins}W {j.losses}L {j.ties}T",
                              share_ci_text(j.win_rate_ci), excludes(j.win_rate_ci, 0.5)))
        if j.length_controlled_win_rate is not None:
            rows.append(MetricRow("win rate (LC)", "50%", pct(j.length_controlled_win_rate)))  # LC: length-controlled
        rows.append(MetricRow("no verdict", "", str(j.no_verdict), f"of {j.n}"))
    return rows


def header_lines(report: EvalReport) -> list[str]:
    """Run, checkpoint, base, the material and the judge, and which evaluation this is."""
    import time

    s = report.settings
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(report.created_at))
    material = [f"prompts {_name(s.prompts_file)} ({s.prompts})"]
    if s.facts_file:
        material.append(f"facts {_name(s.facts_file)}")
    if s.pairs_file or report.pairs is not None:
        material.append(f"pairs {_name(s.pairs_file or (report.pairs.source if report.pairs else ''))}")
    judge = report.judge.name if report.judge else (s.judge or "none")
    beta = f" · β={report.beta:g}" if report.beta is not None else ""
    return [
        f"{report.run_id} · {report.checkpoint}{beta} · base {report.base_model}",
        " · ".join(material),
        f"judge {judge} · samples {s.samples} · eval {report.id}, {when}",
    ]


def _name(path: str | None) -> str:
    if not path:
        return numfmt.MISSING
    return path.rsplit("/", 1)[-1] or path


# --- the prompts list ------------------------------------------------------------------------------
SORTS = ("most different", "words saved", "judge verdict", "file order")
FILTERS = ("all", "facts lost", "judge loss")
_VERDICT_ORDER = {"base": 0, "tie": 1, "tuned": 2, None: 3}
PROMPT_HEADER = ("#", "prompt", "base", "tuned", "Δ words", "judge", "fact")


def fact_flip(row: PromptRow) -> bool:
    return row.base_ok is not None and row.tuned_ok is not None and row.base_ok != row.tuned_ok


def fact_lost(row: PromptRow) -> bool:
    return row.base_ok is True and row.tuned_ok is False


def _sort_key(sort: str, index: int, row: PromptRow) -> tuple[float, ...]:
    diff = abs(row.tuned_words - row.base_words)
    if sort == "words saved":
        return (-(row.base_words - row.tuned_words), index)
    if sort == "judge verdict":
        return (_VERDICT_ORDER.get(row.verdict, 3), -diff, index)
    if sort == "file order":
        return (index,)
    decided = row.verdict in ("tuned", "base")
    return (0 if fact_flip(row) else 1, 0 if decided else 1, -diff, index)


def prompt_order(rows: Sequence[PromptRow], sort: str = SORTS[0], filter_: str = FILTERS[0]) -> list[int]:
    """Indexes of ``rows`` to show: those the filter keeps, in the sort's order (ties in file order).

    ``most different`` puts fact flips first, then prompts the judge decided, then the largest word
    difference: what changed most is what the operator must read first."""
    keep = {
        "all": lambda r: True,
        "facts lost": fact_lost,
        "judge loss": lambda r: r.verdict == "base",
    }[filter_]
    chosen = [i for i, r in enumerate(rows) if keep(r)]
    return sorted(chosen, key=lambda i: _sort_key(sort, i, rows[i]))


def verdict_text(verdict: str | None) -> str:
    return {"tuned": "tuned", "base": "base", "tie": "tie"}.get(verdict or "", numfmt.MISSING)


def ok_mark(ok: bool | None) -> str:
    return numfmt.MISSING if ok is None else ("✓" if ok else "✗")


def fact_cell(row: PromptRow) -> str:
    if row.expected is None:
        return ""
    return f"{ok_mark(row.base_ok)}→{ok_mark(row.tuned_ok)}"


def prompt_cells(index: int, row: PromptRow, prompt_width: int = 30) -> list[str]:
    return [
        str(index + 1),
        numfmt.ellipsize(" ".join(row.prompt.split()), prompt_width),
        str(row.base_words),
        str(row.tuned_words),
        signed(row.tuned_words - row.base_words),
        verdict_text(row.verdict),
        fact_cell(row),
    ]


@dataclass(frozen=True)
class PromptDetail:
    """The highlighted prompt in full: the prompt, the fact check, the judge, both answers."""

    prompt: str
    lines: list[tuple[str, str]] = field(default_factory=list)
    """(label, text) pairs: ``expected``, ``judge``, ``base``, ``tuned``."""


def prompt_detail(row: PromptRow) -> PromptDetail:
    lines: list[tuple[str, str]] = []
    if row.expected is not None:
        lines.append(("expected", f"{row.expected}  · base {ok_mark(row.base_ok)} · tuned {ok_mark(row.tuned_ok)}"))
    if row.verdict is not None or row.verdict_reason:
        verdict = {"tuned": "tuned wins", "base": "base wins", "tie": "tie"}.get(row.verdict or "", "no verdict")
        lines.append(("judge", f"{verdict}" + (f": {row.verdict_reason}" if row.verdict_reason else "")))
    for side, text, n, finish in (("base", row.base, row.base_words, row.base_finish),
                                  ("tuned", row.tuned, row.tuned_words, row.tuned_finish)):
        how = f"{n} words" + (f", {finish}" if finish else "")
        lines.append((f"{side} ({how})", text if text.strip() else "(empty answer)"))
    return PromptDetail(row.prompt, lines)


# --- one line per run: the runs list and compare -----------------------------------------------------
def summary_text(report: EvalReport, wide: bool = False) -> str:
    """``words −41% · facts 92→90%``; ``wide`` adds pair accuracy and the judge's win rate."""
    b = report.behaviour
    parts = [f"words {signed_pct(b.words.rel)}" + ("" if b.words.ci_excludes_zero else " (n.s.)")]
    if report.facts is not None:
        c = report.facts.change
        parts.append(f"facts {pct(c.base).rstrip('%')}→{pct(c.tuned)}")
    if wide and report.pairs is not None:
        parts.append(f"pair acc {pct(report.pairs.accuracy)}")
    if wide and report.judge is not None and report.judge.win_rate is not None:
        parts.append(f"win {pct(report.judge.win_rate)}")
    return " · ".join(parts)


def short_summary(report: EvalReport) -> str:
    """``−41% words · facts 92→90%``: the runs screen's detail line, where every cell counts at 80 columns."""
    b = report.behaviour
    text = f"{signed_pct(b.words.rel)} words" + ("" if b.words.ci_excludes_zero else " n.s.")
    if report.facts is not None:
        c = report.facts.change
        text += f" · facts {pct(c.base).rstrip('%')}→{pct(c.tuned)}"
    return text


class SummaryCache:
    """The runs list's eval line per run (:func:`summary_text` of its newest report, or with ``short``
    :func:`short_summary`), re-read only when the run's ``eval/`` folder changed: a report is written
    by rename, which changes the folder's mtime, so a refresh of 1,000 runs costs one ``stat`` each."""

    def __init__(self, short: bool = False) -> None:
        self._seen: dict[Path, tuple[int, str | None]] = {}
        self._text = short_summary if short else summary_text

    def lines(self, run_paths: dict[str, Path]) -> dict[str, str]:
        out: dict[str, str] = {}
        for run_id, path in run_paths.items():
            folder = eval_dir(path)
            try:
                mtime = folder.stat().st_mtime_ns
            except OSError:
                continue  # no evaluation yet (the usual case)
            cached = self._seen.get(folder)
            if cached is None or cached[0] != mtime:
                report = latest_report(path)
                cached = (mtime, self._text(report) if report is not None else None)
                self._seen[folder] = cached
            if cached[1]:
                out[run_id] = cached[1]
        return out


COMPARE_ROWS = ("eval: words change", "eval: facts (tuned)", "eval: pair accuracy", "eval: win rate")


def compare_rows(reports: Sequence[EvalReport | None]) -> list[list[str]]:
    """Rows for compare's final-and-best table; empty when no run has a report."""
    if not any(reports):
        return []
    cells: list[list[str]] = [[name] for name in COMPARE_ROWS]
    for r in reports:
        if r is None:
            for row in cells:
                row.append(numfmt.MISSING)
            continue
        w = r.behaviour.words
        cells[0].append(f"{signed_pct(w.rel)} {SIG if w.ci_excludes_zero else NOT_SIG}")
        cells[1].append(pct(r.facts.change.tuned) if r.facts else numfmt.MISSING)
        cells[2].append(pct(r.pairs.accuracy) if r.pairs else numfmt.MISSING)
        cells[3].append(pct(r.judge.win_rate) if r.judge else numfmt.MISSING)
    return cells


# --- the trade-off view ----------------------------------------------------------------------------
Y_KINDS = ("facts correct", "judge win rate", "pair accuracy")


@dataclass(frozen=True)
class TradeoffPoint:
    run_id: str
    label: str
    x: float | None
    """Mean words change, percent of base (the behaviour trained for)."""
    y: float | None
    """Quality kept, percent (facts correct by tuned, the judge's win rate, or pair accuracy)."""


def y_value(report: EvalReport, kind: str) -> float | None:
    if kind == "facts correct":
        return report.facts.change.tuned * 100 if report.facts else None
    if kind == "judge win rate":
        rate = report.judge.win_rate if report.judge else None
        return rate * 100 if rate is not None else None
    return report.pairs.accuracy * 100 if report.pairs else None


def base_y(reports: Sequence[EvalReport], kind: str) -> float | None:
    """The base's value on the y axis: its facts score, or 50% (a coin flip) for rates against it."""
    if kind == "facts correct":
        values = [r.facts.change.base * 100 for r in reports if r.facts]
        return sum(values) / len(values) if values else None
    return 50.0


def tradeoff_points(items: Sequence[tuple[str, str, EvalReport]], kind: str) -> list[TradeoffPoint]:
    """(run id, label, report) → one point per run."""
    out = []
    for run_id, label, report in items:
        rel = report.behaviour.words.rel
        out.append(TradeoffPoint(run_id, label, rel * 100 if rel is not None else None, y_value(report, kind)))
    return out


TRADEOFF_HEADER = ("run", "β", "words change", "95% CI", "facts", "pair acc", "win rate")


def tradeoff_rows(items: Sequence[tuple[str, str, EvalReport]]) -> list[list[str]]:
    rows = []
    for _run_id, label, r in items:
        w = r.behaviour.words
        scale = 100 / w.base if w.base else None
        ci = ci_text(w.ci, scale, "%") if scale is not None else ci_text(w.ci)
        facts = f"{pct(r.facts.change.base).rstrip('%')}→{pct(r.facts.change.tuned)}" if r.facts else numfmt.MISSING
        rows.append([
            label,
            numfmt.num(r.beta) if r.beta is not None else numfmt.MISSING,
            f"{signed_pct(w.rel)} {SIG if w.ci_excludes_zero else NOT_SIG}",
            ci,
            facts,
            pct(r.pairs.accuracy) if r.pairs else numfmt.MISSING,
            pct(r.judge.win_rate) if r.judge and r.judge.win_rate is not None else numfmt.MISSING,
        ])
    return rows


@dataclass
class Plot:
    """A character scatter plot: ``rows`` of text, and where each point's mark sits (for colour)."""

    rows: list[str]
    marks: list[tuple[int, int, int]]
    """(row, column, point index) of each drawn point."""
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    left: int
    """Columns of y-axis labels before the plot area."""


MARK = "●"
BASE_MARK = "◆"


def _span(values: list[float], must: float | None) -> tuple[float, float]:
    vals = [*values, *([must] if must is not None else [])]
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.1 if hi > lo else (abs(hi) * 0.1 or 5.0)
    return lo - pad, hi + pad


def scatter(points: Sequence[TradeoffPoint], width: int, height: int, y_ref: float | None) -> Plot | None:
    """Plot ``points`` (x: words change %, y: quality %) in ``width × height`` cells with axes.

    The base is the reference: a dotted vertical line at 0 % change, a dotted horizontal line at its
    y value (``y_ref``) and a ◆ where they cross. Each point is a ● with its label beside it (left of
    it when the right edge is too close; a label that would cover another point is cut). None when no
    point has both values."""
    usable = [(i, p) for i, p in enumerate(points) if p.x is not None and p.y is not None]
    if not usable:
        return None
    x0, x1 = _span([p.x for _, p in usable if p.x is not None], 0.0)
    y0, y1 = _span([p.y for _, p in usable if p.y is not None], y_ref)
    h = max(4, height - 2)
    ticks = {r: f"{y1 - r * (y1 - y0) / (h - 1):.0f}%" for r in (0, h // 2, h - 1)}
    left = max(len(t) for t in ticks.values()) + 1
    w = max(10, width - left)
    grid = [[" "] * w for _ in range(h)]

    def col(x: float) -> int:
        return min(w - 1, max(0, round((x - x0) / (x1 - x0) * (w - 1))))

    def row(y: float) -> int:
        return min(h - 1, max(0, round((y1 - y) / (y1 - y0) * (h - 1))))

    zero_col = col(0.0)
    for r in range(h):
        grid[r][zero_col] = "┊"
    if y_ref is not None:
        ref_row = row(y_ref)
        for c in range(w):
            grid[ref_row][c] = "┼" if c == zero_col else "┄"
        grid[ref_row][zero_col] = BASE_MARK
    taken = {(row(p.y), col(p.x)) for _, p in usable if p.x is not None and p.y is not None}
    marks: list[tuple[int, int, int]] = []
    for index, p in usable:
        assert p.x is not None and p.y is not None
        r, c = row(p.y), col(p.x)
        grid[r][c] = MARK
        marks.append((r, left + c, index))
        label = p.label
        start = c + 2 if c + 2 + len(label) <= w else max(0, c - 1 - len(label))
        for k, ch in enumerate(label):
            cc = start + k
            if cc >= w or (r, cc) in taken:
                break
            grid[r][cc] = ch
    rows = []
    for r in range(h):
        rows.append(ticks.get(r, "").rjust(left - 1) + "│" + "".join(grid[r]))
    rows.append(" " * (left - 1) + "└" + "─" * w)
    lo, mid, hi = signed_pct(x0 / 100), "0%", signed_pct(x1 / 100)
    axis = [" "] * w
    for text, at in ((lo, 0), (hi, w - len(hi)), (mid, max(0, min(w - len(mid), zero_col - len(mid) // 2)))):
        for k, ch in enumerate(text):
            if 0 <= at + k < w:
                axis[at + k] = ch
    rows.append(" " * left + "".join(axis))
    return Plot(rows, marks, (x0, x1), (y0, y1), left)
