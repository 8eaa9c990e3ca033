"""Preference data: read every common shape, lint it, normalize it to what TRL 1.16 trains on.

One loader for the trainer, ``dpo-tui data check`` and the console's preview, so what the operator sees is
exactly what trains.

Public API (stable)::

    load_preference_data(source, *, split="train", column_map=None) -> LoadedData(rows, report)
    check_data(source, *, split="train", column_map=None) -> DataReport        # lint only, streaming
    iter_preference_rows(...)                                                  # streaming normalized rows

``LoadedData.rows`` are exactly what ``DPOTrainer`` accepts (TRL 1.16):

- standard:       ``{"prompt": str, "chosen": str, "rejected": str}``
- conversational: ``{"prompt": [msgs], "chosen": [assistant msgs], "rejected": [assistant msgs]}``,
  every message ``{"role": str, "content": str}``.

The prompt is always explicit: implicit-prompt data (full texts or conversations with a shared prefix,
Anthropic HH-RLHF transcripts) is split here, with TRL's ``extract_prompt`` semantics minus its known bugs,
so TRL never runs its own extraction.

Bad data never raises: every problem is a :class:`Finding` in ``report.errors`` (row unusable; the trainer
refuses the data) or ``report.warnings`` (trains; the trainer records ``warning`` events). Only a missing or
unreadable source raises :class:`~dpo_tui.core.errors.UserError`.

Implemented:

- Sources: ``.jsonl`` (streamed line by line), ``.json`` (a list of rows, or an object holding one; JSON
  lines in a ``.json`` file too), ``.csv``, ``.parquet`` (pyarrow, batched), a ``datasets.save_to_disk``
  folder (Dataset or DatasetDict), a folder of such files with train/test splits, and a Hugging Face
  dataset id from the local hub cache (downloaded with ``huggingface_hub`` only when online and not cached).
- Shapes (decided from all rows: the majority shape wins and rows of any other shape are a ``mixed-shapes``
  error naming the first line that differs):
  ``standard-explicit``, ``standard-implicit``, ``hh-rlhf``, ``conversational-explicit``,
  ``conversational-implicit``, ``ultrafeedback``, ``sharegpt`` (``from``/``value`` messages; completions as
  message objects), message contents given as lists of text parts, and common column names
  (``question``/``instruction``/``input``/``query`` → prompt, ``system``, ``response_j``/``response_k``,
  ``chosen_response``/``rejected_response``, ``chosen_messages``/``rejected_messages``, …), with an explicit
  ``column_map`` (``{"prompt": "question"}``) to settle ambiguity. ``report.decisions`` says what was decided.
- Lint: see :data:`FINDING_CODES` (each finding: severity, code, message, field, first line numbers, count;
  ``file`` too when a source has several files). JSONL is streamed (>= 50,000 rows/s, ``bench/data_lint.py``).
- ``DataReport.render()`` is the text form of ``dpo-tui data check``; ``to_json()`` its ``--json`` form.

Token statistics and the chat-template preview live in :mod:`dpo_tui.core.tokenstats`.
"""

from __future__ import annotations

import csv
import io
import json
import operator
import os
import re
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import Any, Literal

from .errors import Problem, UserError

__all__ = [
    "FINDING_CODES",
    "DataReport",
    "Finding",
    "LoadedData",
    "check_data",
    "iter_preference_rows",
    "load_preference_data",
    "resolve_source",
    "write_jsonl",
]

# ----------------------------------------------------------------------------------------------------------
# Findings and the report
# ----------------------------------------------------------------------------------------------------------

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
        chars = self.stats.get("chars") or {}
        if chars:
            out.append("characters (p50 / p99 / max):")
            for key in ("prompt", "chosen", "rejected"):
                s = chars.get(key)
                if s:
                    out.append(f"  {key:<9} {s['p50']:>8} / {s['p99']:>8} / {s['max']:>8}")
        tokens = self.stats.get("tokens")
        if tokens:
            out += [f"note: {n}" for n in tokens.get("notes", [])]
            out.append("tokens (p50 / p99 / max):")
            for key in ("prompt", "chosen", "rejected"):
                s = tokens.get(key)
                if s:
                    out.append(f"  {key:<9} {s['p50']:>8} / {s['p99']:>8} / {s['max']:>8}")
            if "max_length" in tokens:
                out.append(
                    f"  max_length {tokens['max_length']}: {tokens['truncated_pct']:.1f}% of pairs cut, "
                    f"{tokens['dropped_pct']:.1f}% dropped (prompt alone >= max_length)"
                )
        if self.ok:
            out.append("OK: usable" + (" (with warnings)" if self.warnings else ""))
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


class _Findings:
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

    def errors(self) -> list[Finding]:
        return [f for f in self._order if f.severity == "error"]

    def warnings(self) -> list[Finding]:
        return [f for f in self._order if f.severity == "warning"]


# ----------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Part:
    path: Path
    kind: str  # jsonl | json | csv | parquet | arrow
    label: str  # shown in findings when the source has several files


def _kind_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix, kind in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".csv", "csv"),
                         (".parquet", "parquet"), (".arrow", "arrow")):
        if name.endswith(suffix):
            return kind
    return None


_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "test": ("test", "testing", "eval", "evaluation"),
    "validation": ("validation", "valid", "val", "dev"),
}


def _split_of(rel: Path) -> str | None:
    """The split a file belongs to, from its folder or name (``train/x.jsonl``, ``train-0000.parquet``)."""
    tokens: list[str] = []
    for part in rel.parts[:-1]:
        tokens.append(part.lower())
    stem = rel.name.lower().split(".")[0]
    tokens += [t for t in re.split(r"[-_.]", stem) if t]
    for split, aliases in _SPLIT_ALIASES.items():
        if any(t in aliases for t in tokens):
            return split
    return None


def _hf_hub_cache() -> Path:
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _hub_snapshot(repo_id: str) -> Path | None:
    """The newest cached snapshot of a hub dataset, or None."""
    repo = _hf_hub_cache() / ("datasets--" + repo_id.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        rev = ref.read_text().strip()
        if (snaps / rev).is_dir():
            return snaps / rev
    candidates = [p for p in snaps.iterdir() if p.is_dir()]
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime)


def _download_hub(repo_id: str) -> Path:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") or os.environ.get(
        "HF_DATASETS_OFFLINE", ""
    ).lower() in ("1", "true", "yes", "on"):
        raise UserError(
            f"dataset {repo_id!r} is not in the local Hugging Face cache ({_hf_hub_cache()}) and the hub is offline",
            hint="download it on a machine with network (huggingface-cli download --repo-type dataset "
            f"{repo_id}) or point --dataset at a local file",
        )
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            repo_id, repo_type="dataset",
            allow_patterns=["*.jsonl", "*.json", "*.csv", "*.parquet", "*.arrow", "*/*", "*/*/*"],
        )
    except Exception as exc:  # noqa: BLE001 - network/auth errors become one operator message
        raise UserError(
            f"could not fetch dataset {repo_id!r} from the Hugging Face hub: {type(exc).__name__}: {exc}",
            hint="check the id and your network/token, or pass a local file",
        ) from None
    return Path(path)


def resolve_source(source: str, split: str = "train") -> tuple[str, list[_Part], list[str]]:
    """Map a source spec to the files to read, in order. Returns (display, parts, decisions)."""
    decisions: list[str] = []
    if not source or not str(source).strip():
        raise UserError("no dataset given", hint="pass a .jsonl/.json/.csv/.parquet file, a folder or a hub id")
    path = Path(source).expanduser()
    if not path.exists():
        if _HUB_ID.match(source) and not source.startswith((".", "/", "~")) and _kind_of(path) is None:
            snap = _hub_snapshot(source)
            if snap is None:
                snap = _download_hub(source)
                decisions.append(f"downloaded {source} from the Hugging Face hub")
            else:
                decisions.append(f"hub dataset {source} read from the local cache ({snap})")
            parts, more = _folder_parts(snap, split, source)
            return source, parts, decisions + more
        raise UserError(
            f"dataset not found: {source}",
            problems=[Problem("no such file or folder", file=source)],
            hint="pass a .jsonl/.json/.csv/.parquet file, a folder, a datasets.save_to_disk folder or a hub id",
        )
    if path.is_dir():
        parts, more = _folder_parts(path, split, source)
        return source, parts, decisions + more
    kind = _kind_of(path)
    if kind is None:
        raise UserError(
            f"unsupported dataset file type: {path.name}",
            problems=[Problem("expected .jsonl, .json, .csv, .parquet or .arrow", file=source)],
        )
    if not os.access(path, os.R_OK):
        raise UserError(f"dataset is not readable: {source}", problems=[Problem("permission denied", file=source)])
    file_split = _split_of(Path(path.name))
    if split != "train" and split != file_split and kind != "json":
        raise UserError(
            f"{source}: a single file has no split {split!r}",
            hint="use split 'train' for a single file, or point at a folder with train/test files",
        )
    return source, [_Part(path, kind, path.name)], decisions


def _folder_parts(folder: Path, split: str, display: str) -> tuple[list[_Part], list[str]]:
    decisions: list[str] = []
    # datasets.save_to_disk: a DatasetDict (dataset_dict.json + split folders) or a Dataset (state.json)
    dd = folder / "dataset_dict.json"
    if dd.is_file():
        try:
            splits = json.loads(dd.read_text())["splits"]
        except Exception:  # noqa: BLE001
            splits = [p.name for p in folder.iterdir() if (p / "state.json").is_file()]
        if split not in splits:
            raise UserError(
                f"{display}: no split {split!r} (splits: {', '.join(splits)})",
                hint="choose one with --split / dataset_split",
            )
        decisions.append(f"datasets.save_to_disk folder; split {split!r} of {', '.join(splits)}")
        return _arrow_parts(folder / split), decisions
    if (folder / "state.json").is_file():
        decisions.append("datasets.save_to_disk folder (a single Dataset)")
        return _arrow_parts(folder), decisions

    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and _kind_of(p) and not any(x.startswith(".") for x in p.relative_to(folder).parts)
        and p.name not in ("dataset_info.json", "dataset_infos.json", "state.json", "config.json")
    )
    if not files:
        raise UserError(f"{display}: no data files (.jsonl/.json/.csv/.parquet/.arrow) in this folder")
    by_split: dict[str | None, list[Path]] = {}
    for p in files:
        by_split.setdefault(_split_of(p.relative_to(folder)), []).append(p)
    named = {k: v for k, v in by_split.items() if k is not None}
    if named:
        chosen = named.get(split)
        if chosen is None:
            raise UserError(
                f"{display}: no split {split!r} (splits: {', '.join(sorted(named))})",
                hint="choose one with --split / dataset_split",
            )
        decisions.append(f"split {split!r} of {', '.join(sorted(named))}: {len(chosen)} file(s)")
    else:
        if split != "train":
            raise UserError(f"{display}: files are not split; only 'train' is available, not {split!r}")
        chosen = by_split[None]
        if len({_kind_of(p) for p in chosen}) > 1:
            raise UserError(
                f"{display}: the folder mixes file types ({', '.join(sorted({p.suffix for p in chosen}))})",
                hint="point at one file, or keep one file type per folder",
            )
        decisions.append(f"folder without splits: {len(chosen)} file(s) read as 'train'")
    return [_Part(p, _kind_of(p) or "jsonl", str(p.relative_to(folder))) for p in chosen], decisions


def _arrow_parts(folder: Path) -> list[_Part]:
    state = folder / "state.json"
    names: list[str] = []
    if state.is_file():
        try:
            names = [d["filename"] for d in json.loads(state.read_text())["_data_files"]]
        except Exception:  # noqa: BLE001
            names = []
    if not names:
        names = sorted(p.name for p in folder.glob("*.arrow"))
    if not names:
        raise UserError(f"{folder}: a save_to_disk folder without .arrow files")
    return [_Part(folder / n, "arrow", n) for n in names]


# ----------------------------------------------------------------------------------------------------------
# Record readers: yield (line_or_row_number, record) and report file-level findings
# ----------------------------------------------------------------------------------------------------------

_NOT_PARSED = object()
_SCAN_ONCE = json.JSONDecoder().scan_once  # the C scanner: (obj, end) for a value starting at an index


class _Reader:
    """Turns a source part into (line, obj) pairs. ``obj`` is ``_NOT_PARSED`` for rows already reported."""

    def __init__(self, findings: _Findings, max_row_bytes: int, multi: bool) -> None:
        self.f = findings
        self.max_row_bytes = max_row_bytes
        self.multi = multi
        self.bytes = 0

    def _file(self, part: _Part) -> str | None:
        return part.label if self.multi else None

    def read(self, part: _Part) -> Iterator[tuple[int, Any]]:
        try:
            size = part.path.stat().st_size
        except OSError as exc:
            raise UserError(f"cannot read {part.path}: {exc.strerror}") from None
        self.bytes += size
        if part.kind == "jsonl":
            yield from self._jsonl(part)
        elif part.kind == "json":
            yield from self._json(part)
        elif part.kind == "csv":
            yield from self._csv(part)
        elif part.kind == "parquet":
            yield from self._parquet(part)
        else:
            yield from self._arrow(part)

    def _open(self, part: _Part):
        try:
            return open(part.path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise UserError(f"cannot read {part.path}: {exc.strerror}") from None

    def _jsonl(self, part: _Part, fh=None, first_line: int = 1) -> Iterator[tuple[int, Any]]:
        add = self.f.add
        file = self._file(part)
        loads = json.loads
        cap = self.max_row_bytes
        fh = fh or self._open(part)
        with fh:
            lineno = first_line - 1
            pending_crlf = 0
            scan = _SCAN_ONCE
            for raw in fh:
                lineno += 1
                # fast path: one UTF-8 JSON value filling the line, ended by "\n"
                if len(raw) <= cap:
                    try:
                        text = raw.decode("utf-8")
                        obj, end = scan(text, 0)
                    except (ValueError, StopIteration):
                        pass
                    else:
                        if end == len(text) - 1 and text[end] == "\n":
                            yield lineno, obj
                            continue
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                    add("bom", "file starts with a UTF-8 byte-order mark; ignored", line=1, file=file)
                if raw.endswith(b"\r\n"):
                    if not pending_crlf:
                        add("crlf", "CRLF (Windows) line endings; accepted", line=lineno, file=file)
                    pending_crlf += 1
                complete = raw.endswith(b"\n")
                if len(raw) > cap:
                    add("oversize", lambda n=len(raw): f"row is {n:,} bytes, above the {cap:,}-byte cap "
                        "(one huge row multiplies the trainer's memory); shorten or remove it",
                        line=lineno, file=file)
                    yield lineno, _NOT_PARSED
                    continue
                stripped = raw.strip()
                if not stripped:
                    add("blank-line", "blank line; skipped", line=lineno, file=file)
                    continue
                try:
                    text = stripped.decode("utf-8")
                except UnicodeDecodeError as exc:
                    bad = stripped[exc.start]
                    col = exc.start + 1 + (len(raw) - len(raw.lstrip()))
                    add("utf8", f"not UTF-8 (byte 0x{bad:02X} at column {col}); re-encode the file as UTF-8",
                        line=lineno, file=file)
                    yield lineno, _NOT_PARSED
                    continue
                try:
                    obj = loads(text)
                except ValueError as exc:
                    msg = getattr(exc, "msg", str(exc))
                    col = getattr(exc, "colno", None)
                    if not complete:
                        add("truncated", f"last line is cut off ({msg} at column {col}); the file was not "
                            "written completely", line=lineno, file=file)
                    else:
                        add("json", f"invalid JSON: {msg} at column {col}", line=lineno, file=file)
                    yield lineno, _NOT_PARSED
                    continue
                yield lineno, obj

    def _json(self, part: _Part) -> Iterator[tuple[int, Any]]:
        file = self._file(part)
        fh = self._open(part)
        data = fh.read()
        fh.close()
        if len(data.strip()) == 0:
            return
        bom = data.startswith(b"\xef\xbb\xbf")
        if bom:
            self.f.add("bom", "file starts with a UTF-8 byte-order mark; ignored", line=1, file=file)
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            self.f.add("utf8", f"not UTF-8 (byte 0x{data[exc.start]:02X} at column {col}); re-encode the file "
                       "as UTF-8", line=line, file=file)
            return
        if "\r\n" in text:
            self.f.add("crlf", "CRLF (Windows) line endings; accepted", line=text.count("\n", 0, text.index("\r\n")) + 1,
                       file=file)
        start = len(text) - len(text.lstrip())
        if start < len(text) and text[start] == "[":
            yield from self._json_array(text, start, file)
            return
        dec = json.JSONDecoder()
        try:
            obj, end = dec.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            self.f.add("json", f"invalid JSON: {exc.msg} at column {exc.colno}", line=exc.lineno, file=file)
            return
        rest = text[end:].strip()
        if rest and isinstance(obj, dict):
            # JSON lines saved with a .json name
            yield from self._jsonl(part, io.BytesIO(data), 1)
            return
        if rest:
            line = text.count("\n", 0, end) + 1
            self.f.add("json", "invalid JSON: extra data after the top-level value", line=line, file=file)
            return
        if isinstance(obj, dict):
            split = getattr(self, "split", "train")
            if isinstance(obj.get(split), list) and not ({"chosen", "rejected"} & obj.keys()):
                self.decisions.append(f"JSON object: rows read from its {split!r} list")
                yield from enumerate(obj[split], 1)
                return
            lists = [(k, v) for k, v in obj.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
            if len(lists) == 1 and not ({"chosen", "rejected"} & obj.keys()):
                key, rows = lists[0]
                self.decisions.append(f"JSON object: rows read from its {key!r} list")
                yield from enumerate(rows, 1)
                return
            yield 1, obj  # a single row
            return
        self.f.add("not-object", "the top-level JSON value is neither a list of rows nor an object", line=1,
                   file=file)

    decisions: list[str]
    split: str = "train"

    def _json_array(self, text: str, start: int, file: str | None) -> Iterator[tuple[int, Any]]:
        dec = json.JSONDecoder()
        raw_decode = dec.raw_decode
        ws = re.compile(r"[ \t\r\n]*")
        pos = ws.match(text, start + 1).end()
        line = 1 + text.count("\n", 0, pos)
        last = pos
        if pos < len(text) and text[pos] == "]":
            return
        while True:
            line += text.count("\n", last, pos)
            last = pos
            try:
                obj, end = raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if exc.pos >= len(text.rstrip()):
                    self.f.add("truncated", f"the file ends inside the list ({exc.msg}); it was not written "
                               "completely", line=exc.lineno, file=file)
                else:
                    self.f.add("json", f"invalid JSON: {exc.msg} at column {exc.colno}", line=exc.lineno, file=file)
                return
            if end - pos > self.max_row_bytes:
                self.f.add("oversize", f"row is {end - pos:,} characters, above the {self.max_row_bytes:,} cap; "
                           "shorten or remove it", line=line, file=file)
                obj = _NOT_PARSED
            yield line, obj
            pos = ws.match(text, end).end()
            if pos < len(text) and text[pos] == ",":
                pos = ws.match(text, pos + 1).end()
                continue
            if pos < len(text) and text[pos] == "]":
                return
            lineno = text.count("\n", 0, pos) + 1
            what = "the file ends inside the list" if pos >= len(text) else "expected ',' or ']'"
            code = "truncated" if pos >= len(text) else "json"
            self.f.add(code, f"invalid JSON: {what}", line=lineno, file=file)
            return

    def _csv(self, part: _Part) -> Iterator[tuple[int, Any]]:
        file = self._file(part)
        fh = self._open(part)
        with fh:
            head = fh.read(3)
            if head == b"\xef\xbb\xbf":
                self.f.add("bom", "file starts with a UTF-8 byte-order mark; ignored", line=1, file=file)
            else:
                fh.seek(0)
            text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
            reader = csv.reader(text)
            try:
                header = next(reader, None)
                if header is None:
                    return
                header = [h.strip() for h in header]
                prev = reader.line_num
                for values in reader:
                    line = prev + 1
                    prev = reader.line_num
                    if not any(v.strip() for v in values):
                        self.f.add("blank-line", "blank line; skipped", line=line, file=file)
                        continue
                    if len(values) != len(header):
                        self.f.add("type", f"row has {len(values)} cells but the header has {len(header)}",
                                   line=line, file=file)
                        yield line, _NOT_PARSED
                        continue
                    yield line, {h: _csv_cell(v) for h, v in zip(header, values, strict=True)}
            except UnicodeDecodeError as exc:
                self.f.add("utf8", f"not UTF-8 (byte 0x{exc.object[exc.start]:02X}) after line {reader.line_num}; "
                           "re-encode the file as UTF-8", line=reader.line_num + 1, file=file)
            except csv.Error as exc:
                self.f.add("json", f"invalid CSV: {exc}", line=reader.line_num, file=file)

    def _parquet(self, part: _Part) -> Iterator[tuple[int, Any]]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(part.path)
        except Exception as exc:  # noqa: BLE001
            self.f.add("json", f"not a readable Parquet file: {exc}", line=None, file=part.label)
            return
        n = 0
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                n += 1
                yield n, row

    def _arrow(self, part: _Part) -> Iterator[tuple[int, Any]]:
        import pyarrow as pa

        try:
            source = pa.memory_map(str(part.path), "r")
            try:
                reader = pa.ipc.open_stream(source)
            except pa.ArrowInvalid:
                source = pa.memory_map(str(part.path), "r")
                reader = pa.ipc.open_file(source)
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:
                batches = iter(reader)
        except Exception as exc:  # noqa: BLE001
            self.f.add("json", f"not a readable Arrow file: {exc}", line=None, file=part.label)
            return
        n = 0
        for batch in batches:
            for row in batch.to_pylist():
                n += 1
                yield n, row


def _csv_cell(value: str) -> Any:
    """CSV cells are text; a cell holding a JSON list/object of messages is decoded."""
    s = value.strip()
    if s[:1] in ("[", "{") and s[-1:] in ("]", "}"):
        try:
            return json.loads(s)
        except ValueError:
            return value
    return value


# ----------------------------------------------------------------------------------------------------------
# Column plans and shapes
# ----------------------------------------------------------------------------------------------------------

ROLES = ("prompt", "chosen", "rejected", "system")
ALIASES: dict[str, tuple[str, ...]] = {
    "prompt": ("question", "instruction", "query", "input", "conversations", "messages", "context",
               "prompt_messages", "history"),
    "chosen": ("response_j", "chosen_response", "response_chosen", "chosen_messages", "chosen_conversations",
               "chosen_text", "preferred", "preferred_response", "better_response", "accepted"),
    "rejected": ("response_k", "rejected_response", "response_rejected", "rejected_messages",
                 "rejected_conversations", "rejected_text", "dispreferred", "dispreferred_response",
                 "worse_response"),
    "system": ("system_prompt", "system_message"),
}
SCORE_COLUMNS = (("score_chosen", "score_rejected"), ("chosen_score", "rejected_score"),
                 ("chosen_rating", "rejected_rating"))
TRL_EXTRA_COLUMNS = ("tools", "chat_template_kwargs")
ROLE_MAP = {
    "user": "user", "human": "user", "system": "system", "assistant": "assistant", "gpt": "assistant",
    "bot": "assistant", "model": "assistant", "chatgpt": "assistant", "function_call": "assistant",
    "tool": "tool", "observation": "tool", "function": "tool", "ipython": "tool",
}


@dataclass
class _Plan:
    prompt: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    system: str | None = None
    input: str | None = None  # instruction + input (Alpaca): input is appended to the prompt
    missing: tuple[tuple[str, str], ...] = ()  # (field, message)
    ambiguous: str | None = None
    scores: tuple[str, str] | None = None
    decisions: tuple[str, ...] = ()
    warnings: tuple[tuple[str, str, str], ...] = ()  # (code, field, message)
    images: bool = False
    fast: bool = False  # plain prompt/chosen/rejected columns and nothing else to look at


def _make_plan(keys: Iterable[str], column_map: dict[str, str]) -> _Plan:
    keyset = list(keys)
    present = set(keyset)
    plan = _Plan()
    decisions: list[str] = []
    missing: list[tuple[str, str]] = []
    used: set[str] = set()
    for role in ROLES:
        if role in column_map:
            col = column_map[role]
            if col in present:
                setattr(plan, role, col)
                used.add(col)
                decisions.append(f"{role} <- column {col!r} (mapped explicitly)")
            else:
                missing.append((role, f"mapped column {col!r} is missing (columns: {', '.join(keyset)})"))
            continue
        if role in present:
            setattr(plan, role, role)
            used.add(role)
            others = [a for a in ALIASES[role] if a in present and a not in used and a not in column_map.values()]
            if others and role == "prompt":
                decisions.append(
                    f"prompt <- column 'prompt'; column(s) {', '.join(map(repr, others))} not used "
                    f"(--map prompt={others[0]} to use one instead)"
                )
            continue
        cands = [a for a in ALIASES[role] if a in present and a not in used and a not in column_map.values()]
        if role == "prompt" and "instruction" in cands and "input" in cands:
            plan.prompt, plan.input = "instruction", "input"
            used.update(("instruction", "input"))
            decisions.append("prompt <- 'instruction' + newline + 'input' (Alpaca style; --map prompt=COLUMN "
                             "to override)")
            continue
        if len(cands) == 1:
            setattr(plan, role, cands[0])
            used.add(cands[0])
            decisions.append(f"{role} <- column {cands[0]!r} (common name)")
        elif len(cands) > 1:
            plan.ambiguous = (
                f"several columns could be the {role}: {', '.join(map(repr, cands))}; choose one with "
                f"--map {role}={cands[0]}"
            )
            return plan
        elif role in ("chosen", "rejected"):
            unused = [k for k in keyset if k not in used]
            hint = f" (unused columns: {', '.join(unused)}; --map {role}=COLUMN)" if unused else ""
            missing.append((role, f"'{role}' is missing{hint}"))
    if plan.system:
        decisions.append(f"system prompt from column {plan.system!r}: rows become conversational (system + user "
                         "messages) so the chat template renders it")
    for a, b in SCORE_COLUMNS:
        if a in present and b in present:
            plan.scores = (a, b)
            used.update((a, b))
            decisions.append(f"scores from {a!r} / {b!r} (used for lint only)")
            break
    warnings = []
    for col in TRL_EXTRA_COLUMNS:
        if col in present:
            warnings.append(("ignored-column", col, f"column {col!r} is dropped; rows are normalized to "
                                                     "prompt/chosen/rejected only"))
    plan.images = "images" in present or "image" in present
    ignored = [k for k in keyset if k not in used and k not in TRL_EXTRA_COLUMNS]
    if ignored:
        decisions.append(f"ignored columns: {', '.join(ignored)}")
    plan.missing = tuple(missing)
    plan.fast = (
        (plan.prompt, plan.chosen, plan.rejected) == ("prompt", "chosen", "rejected")
        and not (missing or warnings or plan.system or plan.input or plan.scores or plan.images)
    )
    plan.decisions = tuple(decisions)
    plan.warnings = tuple(warnings)
    return plan


_SPACE = " \n\t\r"
_ROLE_CONTENT = operator.itemgetter("role", "content")
_HH_SPLIT = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
_TEMPLATE_MARKERS = ("<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>",
                     "[INST]", "<start_of_turn>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<s>", "</s>")


def _is_hh(text: str) -> bool:
    return (text.startswith("\n\nHuman:") or text.startswith("Human:")) and "\n\nAssistant:" in text


def _parse_hh(text: str) -> list[dict[str, str]]:
    pieces = _HH_SPLIT.split(text)
    # pieces: [before, role, content, role, content, ...]
    msgs = []
    for i in range(1, len(pieces) - 1, 2):
        role = "user" if pieces[i] == "Human" else "assistant"
        msgs.append({"role": role, "content": pieces[i + 1].strip()})
    return msgs


def _kind(v: Any) -> str:
    if type(v) is str:
        return "s"
    if v is None:
        return "n"
    if isinstance(v, list):
        if not v:
            return "e"
        return "m" if isinstance(v[0], dict) else "x"
    if isinstance(v, dict):
        return "d" if ("role" in v or "from" in v) else "x"
    return "x"


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(v), type(v).__name__)


# ----------------------------------------------------------------------------------------------------------
# The scanner: one pass over the records, normalizing and linting each row
# ----------------------------------------------------------------------------------------------------------


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


class _Scanner:
    def __init__(self, column_map: dict[str, str] | None, keep: bool,
                 on_row: Callable[[int, dict], None] | None = None) -> None:
        self.column_map = dict(column_map or {})
        bad = [k for k in self.column_map if k not in ROLES]
        if bad:
            raise UserError(
                f"unknown column mapping target(s): {', '.join(bad)}",
                hint="map one of prompt, chosen, rejected, system, e.g. --map prompt=question",
            )
        self.f = _Findings()
        self.keep = keep
        self.on_row = on_row
        self.rows: list[dict] = []
        self.plans: dict[tuple, _Plan] = {}
        self.decisions: list[str] = []
        self._decided: set[str] = set()
        self.shape: str | None = None
        self.fmt: str | None = None
        self.shapes: dict[tuple[str, str], _ShapeCount] = {}
        self.row_sig = array("b")
        self._sig: tuple[str, str] = ("unknown", "standard")
        self._row_sharegpt = False
        self._fast_rec: _ShapeCount | None = None
        self.total = 0
        self.usable = 0
        self.seen: set[int] = set()
        self.lp, self.lc, self.lr = array("I"), array("I"), array("I")  # 4 bytes a row each
        self.file: str | None = None
        self.sharegpt = False
        self.parts_content = False
        self.dropped_keys: set[str] = set()

    # -- helpers -------------------------------------------------------------------------------------------
    def decide(self, text: str) -> None:
        if text not in self._decided:
            self._decided.add(text)
            self.decisions.append(text)

    def err(self, code: str, message: str, line: int, fld: str | None = None) -> None:
        self.f.add(code, message, line=line, field=fld, file=self.file)

    def _plan(self, obj: dict, line: int) -> _Plan:
        key = tuple(obj)
        plan = self.plans.get(key)
        if plan is None:
            plan = _make_plan(key, self.column_map)
            first = not self.plans
            self.plans[key] = plan
            where = "" if first else f"rows with columns {', '.join(key)} (first at line {line}): "
            for d in plan.decisions:
                self.decide(where + d)
        return plan

    def _msgs(self, value: Any, fld: str, line: int, role_default: str | None = None) -> list[dict] | None:
        """Normalize a message list (or one message object) to [{"role", "content"}]; None after an error."""
        if type(value) is list:  # already {"role", "content"} with a known role and text: keep as is
            for m in value:
                if type(m) is not dict or len(m) != 2 or type(m.get("content")) is not str or (
                        m.get("role") not in VALID_ROLES):
                    break
            else:
                return value
        items = [value] if isinstance(value, dict) else value
        out = []
        for m in items:
            if not isinstance(m, dict):
                self.err("message", f"a message is {_type_name(m)}, not an object with role and content", line, fld)
                return None
            if "role" in m:
                role, content = m.get("role"), m.get("content", _NOT_PARSED)
                if content is _NOT_PARSED and "value" in m:
                    content = m["value"]
            elif "from" in m:
                self.sharegpt = self._row_sharegpt = True
                role, content = m.get("from"), m.get("value", _NOT_PARSED)
            else:
                self.err("message", "a message without 'role' (or ShareGPT 'from')", line, fld)
                return None
            if len(m) > 2:
                extra = [k for k, v in m.items() if k not in ("role", "content", "from", "value") and v is not None]
                if extra:
                    self.dropped_keys.update(extra)
            norm_role = ROLE_MAP.get(role.lower() if isinstance(role, str) else role)
            if norm_role is None:
                self.err("unknown-role", f"unknown role {role!r} (expected system, user, assistant or tool)",
                         line, fld)
                return None
            if content is _NOT_PARSED:
                self.err("message", f"a {norm_role} message without 'content'", line, fld)
                return None
            if isinstance(content, list):
                texts = []
                for part in content:
                    if isinstance(part, dict) and part.get("type", "text") == "text":
                        t = part.get("text", part.get("value"))
                        if isinstance(t, str):
                            texts.append(t)
                            continue
                    if isinstance(part, str):
                        texts.append(part)
                        continue
                    self.err("message", "message content holds a non-text part (only text is supported)", line, fld)
                    return None
                self.parts_content = True
                content = "".join(texts)
            elif content is None:
                self.err("null-field", f"a {norm_role} message has null content", line, fld)
                return None
            elif not isinstance(content, str):
                self.err("message", f"a {norm_role} message content is {_type_name(content)}, not text", line, fld)
                return None
            out.append({"role": norm_role, "content": content})
        return out

    # -- the per-row work ----------------------------------------------------------------------------------
    def feed(self, line: int, obj: Any) -> None:
        """Lint and normalize one record. The common case (plain standard row) stays on a short path."""
        if type(obj) is dict:
            plan = self.plans.get(tuple(obj))
            if plan is not None and plan.fast:
                p = obj["prompt"]
                c = obj["chosen"]
                r = obj["rejected"]
                if (
                    type(p) is str and type(c) is str and type(r) is str
                    and p and c and r and c != r
                    and not (p.isspace() or c.isspace() or r.isspace())
                    and "<" not in p and "<" not in c and "<" not in r and "[INST]" not in p
                    and (p[-1] in _SPACE or (c[0] in _SPACE and r[0] in _SPACE))
                ):
                    lc = len(c)
                    lr = len(r)
                    if lc < LENGTH_RATIO_MIN_CHARS and lr < LENGTH_RATIO_MIN_CHARS:
                        key = hash((p, c, r))
                        if key not in self.seen:
                            self.seen.add(key)
                            self.total += 1
                            self.usable += 1
                            self.lp.append(len(p))
                            self.lc.append(lc)
                            self.lr.append(lr)
                            rec = self._fast_rec
                            if rec is None:
                                self._sig = ("standard-explicit", "standard")
                                rec = self._shape_record(line)
                                self._fast_rec = rec
                            rec.count += 1
                            if rec.count <= MAX_FINDING_LINES:
                                rec.lines.append(line)
                            if self.keep:
                                self.rows.append({"prompt": p, "chosen": c, "rejected": r})
                                self.row_sig.append(rec.index)
                            if self.on_row is not None:
                                self.on_row(line, self.rows[-1] if self.keep else
                                            {"prompt": p, "chosen": c, "rejected": r})
                            return
        self._feed_slow(line, obj)

    def _shape_record(self, line: int) -> _ShapeCount:
        rec = self.shapes.get(self._sig)
        if rec is None:
            rec = self.shapes[self._sig] = _ShapeCount(len(self.shapes), line, self.file)
        return rec

    def _feed_slow(self, line: int, obj: Any) -> None:
        self.total += 1
        self._row_sharegpt = False
        if obj is _NOT_PARSED:
            return
        if not isinstance(obj, dict):
            self.err("not-object", f"row is {_type_name(obj)}, not a JSON object with prompt/chosen/rejected", line)
            return
        plan = self._plan(obj, line)
        if plan.ambiguous:
            self.err("ambiguous-columns", plan.ambiguous, line)
            return
        if plan.missing:
            for fld, msg in plan.missing:
                self.err("missing-field", msg, line, fld)
            return
        if plan.images and obj.get("images", obj.get("image")) is not None:
            self.err("images", "rows with images (vision DPO) are not supported", line, "images")
            return
        for code, fld, msg in plan.warnings:
            if obj.get(fld) is not None:
                self.err(code, msg, line, fld)
        c = obj[plan.chosen]
        r = obj[plan.rejected]
        p = obj[plan.prompt] if plan.prompt else _NOT_PARSED
        bad = False
        for col, v in ((plan.prompt, p), (plan.chosen, c), (plan.rejected, r)):
            if v is None:
                self.err("null-field", f"'{col}' is null", line, col)
                bad = True
        if bad:
            return
        kc, kr = _kind(c), _kind(r)
        kp = _kind(p) if p is not _NOT_PARSED else "-"
        if plan.input is not None and kp == "s":
            extra = obj.get(plan.input)
            if isinstance(extra, str) and extra.strip():
                p = p + "\n" + extra
        system = obj.get(plan.system) if plan.system else None
        if system is not None and not isinstance(system, str):
            self.err("type", f"'{plan.system}' is {_type_name(system)}, expected text", line, plan.system)
            return

        # ---- fast path: standard explicit strings ----------------------------------------------------
        if kp == "s" and kc == "s" and kr == "s" and not plan.system:
            self._standard(line, p, c, r, "standard-explicit", obj, plan)
            return
        for col, k, v in ((plan.prompt, kp, p), (plan.chosen, kc, c), (plan.rejected, kr, r)):
            if k == "x":
                self.err("type", f"'{col}' is {_type_name(v)}, expected text or a list of messages", line, col)
                bad = True
        if bad:
            return
        if kp == "-" and kc == "s" and kr == "s":
            if _is_hh(c) and _is_hh(r):
                self._conversational(line, None, _parse_hh(c), _parse_hh(r), "hh-rlhf", obj, plan, system)
            else:
                self._implicit_standard(line, c, r, obj, plan, system)
            return
        if kp == "s" and kc == "s" and kr == "s":  # with a system column
            self._conversational(line, [{"role": "user", "content": p}], [{"role": "assistant", "content": c}],
                                 [{"role": "assistant", "content": r}], "standard-explicit", obj, plan, system)
            return
        # conversational in some way; 'e' (empty list) is compatible with messages
        pm = None
        if kp in ("m", "d", "e"):
            pm = self._msgs(p, plan.prompt, line) if kp != "e" else []
            if pm is None:
                return
        cm = self._completion(c, kc, plan.chosen, line)
        rm = self._completion(r, kr, plan.rejected, line)
        if cm is None or rm is None:
            return
        if kp == "-":
            shape = "conversational-implicit"
            self._conversational(line, None, cm, rm, shape, obj, plan, system)
        elif kp == "s":
            self._ultrafeedback(line, p, cm, rm, obj, plan, system)
        else:
            shape = "sharegpt" if self._row_sharegpt else "conversational-explicit"
            self._conversational(line, pm, cm, rm, shape, obj, plan, system)

    def _completion(self, v: Any, k: str, col: str, line: int) -> list[dict] | None:
        if k == "s":
            return [{"role": "assistant", "content": v}]
        if k == "e":
            return []
        return self._msgs(v, col, line)

    def _check_shape(self, line: int, shape: str, fmt: str) -> bool:
        """Remember the row's shape; the dataset's shape is decided from all rows at the end."""
        self._sig = (shape, fmt)
        return True

    def _finish(self, line: int, row: dict, key: int, lp: int, lc: int, lr: int) -> None:
        rec = self._shape_record(line)
        rec.count += 1
        if len(rec.lines) < MAX_FINDING_LINES:
            rec.lines.append(line)
        if key in self.seen:
            self.err("duplicate-pair", "duplicate pair (same prompt, chosen and rejected as an earlier row)", line)
        else:
            self.seen.add(key)
        big, small = (lc, lr) if lc >= lr else (lr, lc)
        if big >= LENGTH_RATIO_MIN_CHARS and big >= LENGTH_RATIO * max(small, 1):
            longer = "chosen" if lc >= lr else "rejected"
            self.err("length-ratio", f"{longer} is over {LENGTH_RATIO:g}x longer than the other completion "
                     "(DPO learns length bias from such pairs)", line)
        self.lp.append(lp)
        self.lc.append(lc)
        self.lr.append(lr)
        self.usable += 1
        if self.keep:
            self.rows.append(row)
            self.row_sig.append(rec.index)
        if self.on_row is not None:
            self.on_row(line, row)

    def _scores(self, line: int, obj: dict, plan: _Plan) -> None:
        a, b = obj.get(plan.scores[0]), obj.get(plan.scores[1])
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            if a < b:
                self.err("score-inverted", f"{plan.scores[0]} ({a}) is below {plan.scores[1]} ({b}); is the "
                         "pair swapped?", line)
            elif a == b:
                self.err("score-tie", f"{plan.scores[0]} equals {plan.scores[1]} ({a}); the preference is "
                         "a tie", line)

    def _standard(self, line: int, p: str, c: str, r: str, shape: str, obj: dict, plan: _Plan) -> None:
        if not self._check_shape(line, shape, "standard"):
            return
        bad = False
        if not p.strip():
            self.err("empty-prompt", "prompt is empty", line, plan.prompt or "prompt")
            bad = True
        if not c.strip():
            self.err("empty-chosen", "chosen is empty", line, plan.chosen)
            bad = True
        if not r.strip():
            self.err("empty-rejected", "rejected is empty", line, plan.rejected)
            bad = True
        if c == r and not bad:
            self.err("identical-pair", "chosen is identical to rejected: no learning signal (loss stays at "
                     "0.693); fix or drop the row", line, plan.chosen)
            bad = True
        if bad:
            return
        if "<" in p or "<" in c or "[INST]" in p:
            found = [m for m in _TEMPLATE_MARKERS if m in p or m in c or m in r]
            if found:
                self.err("template-markers", f"plain-text row contains {', '.join(found[:3])}: pre-rendered chat "
                         "text gets a second BOS/EOS from the trainer; use conversational rows instead", line)
        if p[-1] not in _SPACE and (c[0] not in _SPACE or r[0] not in _SPACE):
            self.err("no-separator", "prompt and completion join without a space or newline (the trainer "
                     "concatenates the texts as they are, e.g. 'Hi?Hello'); end the prompt with a newline or "
                     "start completions with a space", line, plan.prompt or "prompt")
        if plan.scores:
            self._scores(line, obj, plan)
        self._finish(line, {"prompt": p, "chosen": c, "rejected": r}, hash((p, c, r)), len(p), len(c), len(r))

    def _implicit_standard(self, line: int, c: str, r: str, obj: dict, plan: _Plan, system: str | None) -> None:
        if c == r:
            if self._check_shape(line, "standard-implicit", "standard"):
                self.err("identical-pair", "chosen is identical to rejected: no learning signal; fix or drop the "
                         "row", line, plan.chosen)
            return
        # TRL extract_prompt: longest common character prefix; a trailing space moves into the completions
        n = min(len(c), len(r))
        idx = 0
        while idx < n and c[idx] == r[idx]:
            idx += 1
        if idx > 0 and c[idx - 1] == " ":
            idx -= 1
        if system:
            # keep the system prompt: the pair becomes conversational
            if not self._check_shape(line, "standard-implicit", "conversational"):
                return
            return self._conversational(line, [{"role": "user", "content": c[:idx]}],
                                        [{"role": "assistant", "content": c[idx:]}],
                                        [{"role": "assistant", "content": r[idx:]}],
                                        "standard-implicit", obj, plan, system, checked=True)
        if idx == 0:
            if self._check_shape(line, "standard-implicit", "standard"):
                self.err("empty-prompt", "chosen and rejected share no common prefix, so there is no prompt; add "
                         "a prompt column", line, "prompt")
            return
        self._standard(line, c[:idx], c[idx:], r[idx:], "standard-implicit", obj, plan)

    def _ultrafeedback(self, line: int, p: str, cm: list, rm: list, obj: dict, plan: _Plan,
                       system: str | None) -> None:
        starts_user = bool(cm) and cm[0]["role"] in ("user", "system") and bool(rm) and rm[0]["role"] in (
            "user", "system")
        if starts_user:
            idx = _common_prefix(cm, rm)
            prompt, cm2, rm2 = cm[:idx], cm[idx:], rm[idx:]
            users = [m["content"] for m in prompt if m["role"] == "user"]
            if users and p.strip() and users[0].strip() != p.strip() and users[-1].strip() != p.strip():
                self.err("prompt-mismatch", f"'{plan.prompt}' differs from the first user message in the "
                         "conversations; the conversations are used", line, plan.prompt)
            self._conversational(line, prompt, cm2, rm2, "ultrafeedback", obj, plan, system)
        else:
            self._conversational(line, [{"role": "user", "content": p}], cm, rm, "conversational-explicit",
                                 obj, plan, system)

    def _conversational(self, line: int, prompt: list | None, cm: list, rm: list, shape: str, obj: dict,
                        plan: _Plan, system: str | None, checked: bool = False) -> None:
        if not checked and not self._check_shape(line, shape, "conversational"):
            return
        pcol = plan.prompt or "prompt"
        if prompt is None:  # implicit: the common message prefix is the prompt
            if cm == rm:
                self.err("identical-pair", "chosen is identical to rejected: no learning signal; fix or drop "
                         "the row", line, plan.chosen)
                return
            idx = _common_prefix(cm, rm)
            if idx == 0:
                self.err("empty-prompt", "chosen and rejected conversations share no first message, so there is "
                         "no prompt", line, "prompt")
                return
            prompt, cm, rm = cm[:idx], cm[idx:], rm[idx:]
        if system and not (prompt and prompt[0]["role"] == "system"):
            prompt = [{"role": "system", "content": system}, *prompt]
        bad = False
        plen = 0
        has_text = False
        prev = None
        twice = None
        for m in prompt:
            role, content = m["role"], m["content"]
            plen += len(content)
            if role == "system":
                continue
            if not has_text and content and not content.isspace():
                has_text = True
            if role == prev and twice is None and role in ("user", "assistant"):
                twice = role
            prev = role
        if not has_text:
            self.err("empty-prompt", "prompt has no non-empty user message", line, pcol)
            bad = True
        elif prompt[-1]["role"] == "assistant":
            self.err("prompt-ends-assistant", "the prompt ends with an assistant message; the completion should "
                     "answer a user (or tool) turn", line, pcol)
            bad = True
        lens = []
        for col, name, msgs in ((plan.chosen, "chosen", cm), (plan.rejected, "rejected", rm)):
            n = 0
            text = False
            roles_ok = True
            for m in msgs:
                content = m["content"]
                n += len(content)
                if not text and content and not content.isspace():
                    text = True
                if m["role"] != "assistant":
                    roles_ok = False
            lens.append(n)
            if not text:
                self.err(f"empty-{name}", f"{name} is empty", line, col)
                bad = True
            elif not roles_ok:
                roles = ", ".join(m["role"] for m in msgs)
                self.err("completion-role", f"{name} holds non-assistant messages ({roles}); completions must be "
                         "assistant turns", line, col)
                bad = True
        if not bad and cm == rm:
            self.err("identical-pair", "chosen is identical to rejected: no learning signal; fix or drop the row",
                     line, plan.chosen)
            bad = True
        if bad:
            return
        if twice is not None:
            self.err("roles-not-alternating", f"two {twice} messages in a row in the prompt; many chat "
                     "templates reject this", line, pcol)
        if plan.scores:
            self._scores(line, obj, plan)
        row = {"prompt": prompt, "chosen": cm, "rejected": rm}
        key = hash((tuple(map(_ROLE_CONTENT, prompt)), tuple(map(_ROLE_CONTENT, cm)), tuple(map(_ROLE_CONTENT, rm))))
        self._finish(line, row, key, plen, lens[0], lens[1])

    # -- the report ----------------------------------------------------------------------------------------
    def _settle_shape(self) -> None:
        """The majority shape wins; rows of any other shape are a ``mixed-shapes`` error."""
        if not self.shapes:
            return
        ranked = sorted(self.shapes.items(), key=lambda kv: (-kv[1].count, kv[1].index))
        (self.shape, self.fmt), main = ranked[0]
        if len(ranked) == 1:
            return
        main_where = f"{main.file}:{main.first}" if main.file else f"line {main.first}"
        for (shape, fmt), rec in sorted(ranked[1:], key=lambda kv: kv[1].index):
            f = Finding("error", "mixed-shapes",
                        f"{rec.count} row(s) are {shape} ({fmt}) but most rows ({main.count}) are {self.shape} "
                        f"({self.fmt}, first at {main_where}); use one shape per dataset",
                        None, list(rec.lines), rec.count, rec.file)
            self.f._by_key[("mixed-shapes", shape, rec.file)] = f
            self.f._order.append(f)
            self.usable -= rec.count
        if self.keep:
            keep = main.index
            self.rows = [row for row, sig in zip(self.rows, self.row_sig, strict=True) if sig == keep]

    def report(self, source: str, nbytes: int, decisions: list[str]) -> DataReport:
        self._settle_shape()
        if self.total == 0 and not self.f.errors():
            self.f.add("empty", "dataset is empty: no rows", line=None)
        if self.sharegpt:
            self.decide("ShareGPT messages ('from'/'value'): human -> user, gpt -> assistant")
        if self.parts_content:
            self.decide("message content given as a list of text parts: parts joined into one string")
        if self.dropped_keys:
            self.decide(f"message keys dropped: {', '.join(sorted(self.dropped_keys))}")
        if self.shape in ("standard-implicit", "conversational-implicit", "hh-rlhf", "ultrafeedback"):
            self.decide({
                "standard-implicit": "no prompt column: the prompt is the longest common prefix of chosen and "
                                     "rejected (as TRL's extract_prompt)",
                "conversational-implicit": "no prompt column: the prompt is the common message prefix of the "
                                           "chosen and rejected conversations",
                "hh-rlhf": "Anthropic HH-RLHF transcripts ('\\n\\nHuman: ... \\n\\nAssistant: ...') parsed into "
                           "messages; the shared turns are the prompt",
                "ultrafeedback": "prompt string plus chosen/rejected conversations that repeat it: the shared "
                                 "messages are the prompt",
            }[self.shape])
        rep = DataReport(
            source=source,
            format=self.fmt or "standard",
            shape=self.shape or "unknown",
            decisions=[*decisions, *self.decisions],
            rows_total=self.total,
            rows_usable=self.usable,
            errors=sorted(self.f.errors(), key=_finding_order),
            warnings=sorted(self.f.warnings(), key=_finding_order),
        )
        rep.stats = {
            "bytes": nbytes,
            "rows_total": self.total,
            "rows_usable": self.usable,
            "chars": {k: percentiles(v) for k, v in (("prompt", self.lp), ("chosen", self.lc), ("rejected", self.lr))},
        }
        return rep


def _finding_order(f: Finding) -> tuple:
    return (f.file or "", f.lines[0] if f.lines else 0)


@dataclass
class _ShapeCount:
    index: int
    first: int
    file: str | None
    count: int = 0
    lines: list[int] = _field(default_factory=list)


def _common_prefix(a: list, b: list) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    # when one side is a prefix of the other, TRL's extract_prompt leaks the last shared message into both
    # completions; here the shorter side is simply empty and reported as such
    return i


# ----------------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------------


def _scan(source: str, split: str, column_map: dict[str, str] | None, keep: bool,
          max_row_bytes: int, on_row: Callable[[int, dict], None] | None = None) -> tuple[list[dict], DataReport]:
    display, parts, decisions = resolve_source(str(source), split)
    scanner = _Scanner(column_map, keep, on_row)
    reader = _Reader(scanner.f, max_row_bytes, multi=len(parts) > 1)
    reader.decisions = decisions
    reader.split = split
    for part in parts:
        scanner.file = part.label if len(parts) > 1 else None
        feed = scanner.feed
        for line, obj in reader.read(part):
            feed(line, obj)
    report = scanner.report(display, reader.bytes, decisions)
    report.stats["files"] = [p.label for p in parts]
    return scanner.rows, report


def load_preference_data(source: str, *, split: str = "train", column_map: dict[str, str] | None = None,
                         max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> LoadedData:
    """Read, lint and normalize a preference dataset. Rows with errors are left out of ``rows``."""
    rows, report = _scan(source, split, column_map, True, max_row_bytes)
    return LoadedData(rows, report)


def check_data(source: str, *, split: str = "train", column_map: dict[str, str] | None = None,
               max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> DataReport:
    """Lint only: streams the source and keeps no rows."""
    return _scan(source, split, column_map, False, max_row_bytes)[1]


def iter_preference_rows(source: str, *, split: str = "train", column_map: dict[str, str] | None = None,
                         limit: int | None = None) -> Iterator[tuple[int, dict]]:
    """Stream ``(line, normalized row)`` for usable rows (the first ``limit`` of them), without holding the
    dataset in memory. Rows are linted as they pass, but the report is not kept: use :func:`check_data`."""
    display, parts, _decisions = resolve_source(str(source), split)
    buf: list[tuple[int, dict]] = []
    scanner = _Scanner(column_map, False, lambda line, row: buf.append((line, row)))
    reader = _Reader(scanner.f, DEFAULT_MAX_ROW_BYTES, multi=len(parts) > 1)
    reader.decisions = []
    n = 0
    for part in parts:
        scanner.file = part.label if len(parts) > 1 else None
        for line, obj in reader.read(part):
            scanner.feed(line, obj)
            if buf:
                for item in buf:
                    yield item
                    n += 1
                    if limit is not None and n >= limit:
                        return
                buf.clear()


def write_jsonl(rows: Iterable[dict], out: str | os.PathLike[str]) -> int:
    """Write normalized rows as JSON lines, streamed to a temp file then renamed. Returns the row count."""
    from .fsutil import atomic_open

    n = 0
    with atomic_open(out, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")
            n += 1
    return n


if __name__ == "__main__":  # pragma: no cover - quick manual check
    rep = check_data(sys.argv[1])
    print(rep.render())
