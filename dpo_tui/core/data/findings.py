"""Lint findings and the report of one dataset: what ``dpo-tui data check`` prints and the console shows."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any, Literal

FINDING_CODES: dict[str, str] = {
    # code: what it means (severity is fixed per code)
    "empty": "error: the dataset holds no rows",
    "json": "error: a line (or the file) is not valid JSON",
    "truncated": "error: the last line is cut off (no newline and not valid JSON)",
    "utf8": "error: bytes that are not UTF-8",
    "not-object": "error: a row that is not a JSON object",
    "oversize": "error: a row larger than the per-row byte cap",
    "missing-field": "error: a required field (prompt/chosen/rejected) is missing",
    "null-field": "error: a field is null",
    "type": "error: a field has the wrong type",
    "empty-prompt": "error: the prompt is empty (or the implicit prompt has no common prefix)",
    "empty-chosen": "error: the chosen completion is empty",
    "empty-rejected": "error: the rejected completion is empty",
    "identical-pair": "error: chosen is identical to rejected (no learning signal)",
    "ambiguous-columns": "error: several columns could be the prompt/chosen/rejected; map one explicitly",
    "mixed-shapes": "error: rows of different shapes in one dataset",
    "unknown-role": "error: a message role that is not system/user/assistant/tool",
    "message": "error: a message that is not an object with a string content",
    "prompt-ends-assistant": "error: the prompt's last message is an assistant turn",
    "completion-role": "error: a completion holds non-assistant messages",
    "images": "error: vision rows (images) are not supported",
    "bom": "warning: the file starts with a UTF-8 byte-order mark (ignored)",
    "crlf": "warning: CRLF line endings (accepted)",
    "blank-line": "warning: blank lines (skipped)",
    "duplicate-pair": "warning: the same prompt/chosen/rejected appears more than once",
    "roles-not-alternating": "warning: user and assistant turns do not alternate (many templates reject it)",
    "length-ratio": "warning: chosen and rejected lengths differ by a large factor (length bias)",
    "template-markers": "warning: standard (plain text) rows contain chat-template markers or BOS/EOS text",
    "score-inverted": "warning: the chosen score is below the rejected score",
    "score-tie": "warning: the chosen and rejected scores are equal",
    "ignored-column": "warning: a column TRL would use is dropped by normalization",
    "no-separator": "warning: standard prompt and completion join without whitespace ('Hi?Hello')",
    "prompt-mismatch": "warning: the prompt column differs from the prompt repeated in the conversations",
    # with a tokenizer (dpo_tui.core.tokenstats)
    "no-chat-template": "error: conversational rows but the tokenizer has no chat template",
    "template-error": "error: the chat template refused a row (raise_exception) or failed to render",
    "all-dropped": "error: every prompt alone reaches max_length; the trainer would drop every row",
    "identical-tokens": "error: chosen and rejected tokenize identically (template trim, appended EOS)",
    "identical-after-cut": "error: chosen and rejected differ only past max_length (identical after truncation)",
    "rows-dropped": "warning: prompts reaching max_length; the trainer drops these rows",
    "completion-cut": "warning: prompt+completion longer than max_length; the completion end (and EOS) is cut",
    "double-bos": "warning: a prompt starting with two BOS tokens",
    "prompt-not-prefix": "warning: the tokenized prompt is not a prefix of prompt+completion",
}

MAX_FINDING_LINES = 10
DEFAULT_MAX_ROW_BYTES = 1 << 20  # D16: one 18 MB row costs 7.6x memory in TRL; refuse rows above 1 MiB
LENGTH_RATIO = 10.0
LENGTH_RATIO_MIN_CHARS = 200
VALID_ROLES = frozenset({"system", "user", "assistant", "tool"})
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".arrow", ".ndjson", ".jsonl.gz")


@dataclass
class Finding:
    """One lint finding, aggregated over all rows it applies to."""

    severity: Literal["error", "warning"]
    code: str
    message: str
    field: str | None = None
    lines: list[int] = _field(default_factory=list)
    count: int = 1
    file: str | None = None

    @property
    def line(self) -> int | None:
        return self.lines[0] if self.lines else None

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "code": self.code,
            "severity": self.severity,
            "count": self.count,
            "lines": list(self.lines),
            "file": self.file,
        }

    def render(self, source: str | None = None) -> str:
        where = self.file or source or ""
        if self.lines:
            where += f":{self.lines[0]}"
        parts = [p for p in (where, self.field) if p]
        text = (": ".join(parts) + ": " if parts else "") + self.message
        if self.count > 1:
            more = ", ".join(str(n) for n in self.lines[1:])
            text += f" [{self.count} rows" + (f"; also line {more}" if more else "")
            text += ", ..." if self.count > len(self.lines) else ""
            text += "]"
        return f"{self.severity}: {text} ({self.code})"


@dataclass
class DataReport:
    source: str
    format: str = "standard"  # "standard" | "conversational"
    shape: str = "unknown"
    decisions: list[str] = _field(default_factory=list)
    rows_total: int = 0
    rows_usable: int = 0
    errors: list[Finding] = _field(default_factory=list)
    warnings: list[Finding] = _field(default_factory=list)
    stats: dict[str, Any] = _field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def findings(self) -> list[Finding]:
        return [*self.errors, *self.warnings]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "shape": self.shape,
            "rows": self.rows_usable,
            "rows_total": self.rows_total,
            "ok": self.ok,
            "decisions": list(self.decisions),
            "errors": [f.to_json() for f in self.errors],
            "warnings": [f.to_json() for f in self.warnings],
            "stats": self.stats,
        }

    def render(self) -> str:
        """Human-readable report: one line per finding naming file, line and field."""
        out = [
            f"{self.source}: {self.shape} ({self.format}), {self.rows_usable} usable of {self.rows_total} rows",
        ]
        out += [f"  - {d}" for d in self.decisions]
        for f in self.errors + self.warnings:
            out.append(f.render(self.source))
        out += _stats_table("characters", self.stats.get("chars") or {})
        tokens = self.stats.get("tokens")
        if tokens:
            out += [f"note: {n}" for n in tokens.get("notes", [])]
            out += _stats_table("tokens", tokens)
            if "max_length" in tokens:
                out.append(
                    f"  max_length {tokens['max_length']}: {tokens['truncated_pct']:.1f}% of pairs cut, "
                    f"{tokens['dropped_pct']:.1f}% dropped (prompt alone >= max_length)"
                )
        if self.ok:
            out.append("OK: usable" + (" (with warnings)" if self.warnings else ""))
        elif not self.rows_usable:
            out.append(f"NOT USABLE: {len(self.errors)} kind(s) of error and no usable row; fix the errors above")
        else:
            out.append(f"NOT USABLE: {len(self.errors)} kind(s) of error. Fix the rows, or write the "
                       f"{self.rows_usable} usable ones with: dpo-tui data convert {self.source} OUT.jsonl --drop-bad")
        return "\n".join(out)

    def warning_lines(self) -> list[str]:
        """One line per warning, for the trainer's ``warning`` events."""
        return [f.render(self.source) for f in self.warnings]


@dataclass
class LoadedData:
    rows: list[dict[str, Any]]
    report: DataReport


class Findings:
    """Aggregates findings by (code, field, file), keeping the first few line numbers."""

    __slots__ = ("_by_key", "_order")

    def __init__(self) -> None:
        self._by_key: dict[tuple, Finding] = {}
        self._order: list[Finding] = []

    def add(self, code: str, message: str | Callable[[], str], *, line: int | None,
            field: str | None = None, file: str | None = None) -> None:
        key = (code, field, file)
        f = self._by_key.get(key)
        if f is None:
            severity = "error" if FINDING_CODES.get(code, "error").startswith("error") else "warning"
            f = Finding(severity, code, message() if callable(message) else message, field,
                        [line] if line is not None else [], 1, file)
            self._by_key[key] = f
            self._order.append(f)
            return
        f.count += 1
        if line is not None and len(f.lines) < MAX_FINDING_LINES:
            f.lines.append(line)

    def put(self, finding: Finding, key: tuple) -> None:
        """Record a finding aggregated elsewhere (the dataset-wide ``mixed-shapes`` errors)."""
        self._by_key[key] = finding
        self._order.append(finding)

    def errors(self) -> list[Finding]:
        return [f for f in self._order if f.severity == "error"]

    def warnings(self) -> list[Finding]:
        return [f for f in self._order if f.severity == "warning"]


def percentiles(values: Sequence[int] | array) -> dict[str, Any] | None:
    """n, mean, min, p50, p90, p99 and max of a list of lengths (None when empty)."""
    n = len(values)
    if not n:
        return None
    s = sorted(values)

    def pct(q: float) -> int:
        return int(s[min(n - 1, int(q * (n - 1) + 0.5))])

    return {"n": n, "mean": round(sum(s) / n, 1), "min": int(s[0]), "p50": pct(0.5), "p90": pct(0.9),
            "p99": pct(0.99), "max": int(s[-1])}




def _stats_table(unit: str, stats: dict[str, Any]) -> list[str]:
    """``unit (p50 / p99 / max):`` and one line per column that has figures; nothing at all when none has
    (a file with no usable row must not print an empty table)."""
    rows = [(key, stats[key]) for key in ("prompt", "chosen", "rejected") if stats.get(key)]
    if not rows:
        return []
    return [f"{unit} (p50 / p99 / max):", *(f"  {key:<9} {s['p50']:>8} / {s['p99']:>8} / {s['max']:>8}" for key, s in rows)]
