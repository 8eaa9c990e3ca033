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

Modules: :mod:`.findings` (findings, the report), :mod:`.sources` (files, folders, splits, hub ids),
:mod:`.readers` (jsonl/json/csv/parquet/arrow records), :mod:`.plan` (column planning, row shapes),
:mod:`.scan` (the one pass every entry point below runs).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .findings import (
    DATA_SUFFIXES,
    DEFAULT_MAX_ROW_BYTES,
    FINDING_CODES,
    LENGTH_RATIO,
    LENGTH_RATIO_MIN_CHARS,
    MAX_FINDING_LINES,
    VALID_ROLES,
    DataReport,
    Finding,
    percentiles,
)
from .plan import ALIASES, ROLE_MAP, ROLES
from .scan import Scan
from .sources import resolve_source

__all__ = [
    "ALIASES",
    "DATA_SUFFIXES",
    "DEFAULT_MAX_ROW_BYTES",
    "FINDING_CODES",
    "LENGTH_RATIO",
    "LENGTH_RATIO_MIN_CHARS",
    "MAX_FINDING_LINES",
    "ROLES",
    "ROLE_MAP",
    "VALID_ROLES",
    "DataReport",
    "Finding",
    "LoadedData",
    "check_data",
    "iter_preference_rows",
    "load_preference_data",
    "percentiles",
    "resolve_source",
    "write_jsonl",
]


@dataclass
class LoadedData:
    rows: list[dict[str, Any]]
    report: DataReport


def load_preference_data(source: str, *, split: str = "train", column_map: dict[str, str] | None = None,
                         max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> LoadedData:
    """Read, lint and normalize a preference dataset. Rows with errors are left out of ``rows``."""
    scan = Scan(source, split=split, column_map=column_map, max_row_bytes=max_row_bytes, keep=True).run()
    report = scan.report()
    return LoadedData(scan.rows, report)


def check_data(source: str, *, split: str = "train", column_map: dict[str, str] | None = None,
               max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> DataReport:
    """Lint only: streams the source and keeps no rows."""
    return Scan(source, split=split, column_map=column_map, max_row_bytes=max_row_bytes).run().report()


def iter_preference_rows(source: str, *, split: str = "train", column_map: dict[str, str] | None = None,
                         limit: int | None = None) -> Iterator[tuple[int, dict]]:
    """Stream ``(line, normalized row)`` for usable rows (the first ``limit`` of them), without holding the
    dataset in memory. Rows are linted as they pass, but the report is not kept: use :func:`check_data`."""
    scan = Scan(source, split=split, column_map=column_map, max_row_bytes=DEFAULT_MAX_ROW_BYTES, stream=True)
    for n, item in enumerate(scan, 1):
        yield item
        if limit is not None and n >= limit:
            return


def write_jsonl(rows: Iterable[dict], out: str | os.PathLike[str]) -> int:
    """Write normalized rows as JSON lines, streamed to a temp file then renamed. Returns the row count."""
    from ..fsutil import atomic_open

    n = 0
    written = 0
    rows = iter(rows)
    try:
        with atomic_open(out, "w", encoding="utf-8") as fh:
            for row in rows:
                text = json.dumps(row, ensure_ascii=False) + "\n"
                fh.write(text)
                written += len(text.encode("utf-8"))
                n += 1
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"cannot write {out}: {exc.strerror or exc}", hint="nothing was written") from None
        # atomic_open removed the partial file; count what the whole output needs, without writing it
        needed = written + sum(len(json.dumps(row, ensure_ascii=False).encode("utf-8")) + 1 for row in rows)
        try:
            free = shutil.disk_usage(Path(out).resolve().parent).free
        except OSError:
            free = None
        raise UserError(
            f"disk full: {out} needs about {_size(needed)}"
            + (f", {_size(free)} free on its filesystem" if free is not None else ""),
            hint="free some space or write to another folder; nothing was written (no partial file left)",
        ) from None
    return n


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
