"""Token statistics and the trainer-exact preview of preference pairs, without transformers.

The rows come from :func:`dpo_tui.core.data.load_preference_data` (the same rows the trainer gets). They are
tokenized here exactly as TRL 1.16's ``DPOTrainer._prepare_dataset`` does it:

- standard rows: ``eos_token`` is appended to chosen and rejected as text unless already there; prompt,
  prompt+chosen and prompt+rejected are tokenized *with* special tokens (the tokenizer's post-processor);
- conversational rows: rendered with the model's chat template (``add_generation_prompt=True`` for the prompt
  alone), then tokenized *without* special tokens;
- the completion starts at the common token prefix of prompt and prompt+completion;
- with ``max_length``, rows whose prompt alone has ``>= max_length`` tokens are dropped, and the collator keeps
  the first ``max_length`` tokens of each prompt+completion (``keep_start``).

The tokenizer and chat template live in :mod:`dpo_tui.core.data.tokenizer`, the pair preview in
:mod:`dpo_tui.core.data.preview`; this module counts, and is the one import for all three.
A worker test proves the ids equal what ``DPOTrainer`` puts in ``train_dataset``.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .data import DataReport, Finding, iter_preference_rows, percentiles
from .data.plan import common_prefix
from .data.preview import PairPreview, preview_from_source, preview_pair
from .data.tokenizer import ChatTokenizer, PreparedPair, TemplateError, resolve_tokenizer_dir

__all__ = [
    "ChatTokenizer",
    "PairPreview",
    "PreparedPair",
    "TemplateError",
    "TokenStats",
    "add_token_stats",
    "preview_from_source",
    "preview_pair",
    "resolve_tokenizer_dir",
]

DEFAULT_BATCH_ROWS = 512
SAME = -1  # diff_at of a pair whose chosen and rejected token ids are equal


def _histogram(values: Sequence[int], bins: int = 20) -> list[dict[str, int]]:
    if not values:
        return []
    hi = max(values)
    width = max(1, -(-(hi + 1) // bins))
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, v // width)] += 1
    return [{"lo": i * width, "hi": (i + 1) * width - 1, "count": c} for i, c in enumerate(counts)]


class TokenStats:
    """Accumulates token lengths row by row; ``result()`` gives the numbers the console shows."""

    def __init__(self, tokenizer: ChatTokenizer) -> None:
        self.tok = tokenizer
        self.lines: array = array("l")
        self.prompt = array("l")
        self.chosen = array("l")
        self.rejected = array("l")
        self.errors: list[tuple[int, str]] = []  # (line, message) for rows the template refused
        self.not_prefix: list[int] = []
        self.not_prefix_example: str | None = None
        self.double_bos: list[int] = []
        self.no_template = False
        # tokens chosen and rejected completions share before they differ (SAME when identical): a pair whose
        # first difference lies past max_length trains on identical sequences (loss stays at log 2)
        self.diff_at = array("q")

    def add(self, lines: Sequence[int], rows: Sequence[dict]) -> None:
        if not self.tok.chat_template and any(isinstance(r["prompt"], list) for r in rows):
            self.no_template = True
            pairs = [(ln, r) for ln, r in zip(lines, rows, strict=True) if not isinstance(r["prompt"], list)]
            lines, rows = [p[0] for p in pairs], [p[1] for p in pairs]
        bos = self.tok.bos_id
        for line, res in zip(lines, self.tok.prepare(rows), strict=True):
            if isinstance(res, TemplateError):
                self.errors.append((line, str(res)))
                continue
            self.lines.append(line)
            self.prompt.append(len(res.prompt_ids))
            self.chosen.append(len(res.chosen_ids))
            self.rejected.append(len(res.rejected_ids))
            c, r = res.chosen_ids, res.rejected_ids
            self.diff_at.append(SAME if c == r else common_prefix(c, r))
            if res.prompt_left_out:
                self.not_prefix.append(line)
            ids = res.prompt_ids
            if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
                self.double_bos.append(line)

    def result(self, max_length: int | None = None, batch_size: int = 1, seed: int = 42,
               pad_to_multiple_of: int | None = None) -> dict[str, Any]:
        n = len(self.prompt)
        seq_c = [p + c for p, c in zip(self.prompt, self.chosen, strict=True)]
        seq_r = [p + r for p, r in zip(self.prompt, self.rejected, strict=True)]
        longest = [max(a, b) for a, b in zip(seq_c, seq_r, strict=True)]
        out: dict[str, Any] = {
            "tokenizer": self.tok.name,
            "notes": list(self.tok.notes),
            "rows": n,
            "prompt": percentiles(self.prompt),
            "chosen": percentiles(self.chosen),
            "rejected": percentiles(self.rejected),
            "sequence": percentiles(longest),
            "histogram": _histogram(longest),
        }
        kept = list(range(n))
        if max_length is not None:
            dropped = [i for i in range(n) if self.prompt[i] >= max_length]
            dropped_set = set(dropped)
            kept = [i for i in range(n) if i not in dropped_set]
            cut = [i for i in kept if seq_c[i] > max_length or seq_r[i] > max_length]
            out.update({
                "max_length": max_length,
                "dropped": len(dropped),
                "dropped_pct": 100.0 * len(dropped) / n if n else 0.0,
                "dropped_lines": [self.lines[i] for i in dropped[:10]],
                "truncated": len(cut),
                "truncated_pct": 100.0 * len(cut) / n if n else 0.0,
                "truncated_lines": [self.lines[i] for i in cut[:10]],
            })
        # the padded length per batch: the collator pads the 2*B prompt+completion sequences of a batch to the
        # longest one (after truncation); batches are random, so simulate the shuffled order once
        cap = max_length if max_length is not None else 1 << 62
        order = kept[:]
        random.Random(seed).shuffle(order)
        padded = []
        bs = max(1, batch_size)
        for start in range(0, len(order), bs):
            chunk = order[start:start + bs]
            width = max(min(cap, max(seq_c[i], seq_r[i])) for i in chunk)
            if pad_to_multiple_of:
                width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
            padded.append(width)
        out["padded"] = {"batch_size": bs, "sequences_per_batch": 2 * bs, **(percentiles(padded) or {})}
        return out

    def findings(self, max_length: int | None = None) -> list[Finding]:
        fs: list[Finding] = []
        if self.no_template:
            fs.append(Finding("error", "no-chat-template", "the rows are conversational but the tokenizer has no "
                              "chat template; use a chat model or standard (text) rows", "prompt"))
            return fs
        if self.errors:
            lines = [ln for ln, _ in self.errors]
            fs.append(Finding("error", "template-error", f"the chat template refused the row: {self.errors[0][1]}",
                              None, lines[:10], len(lines)))
        if self.double_bos:
            fs.append(Finding("warning", "double-bos", "the prompt starts with two BOS tokens: the text already "
                              "holds the BOS the tokenizer adds; use conversational rows or drop it",
                              "prompt", self.double_bos[:10], len(self.double_bos)))
        if self.not_prefix:
            fs.append(Finding("warning", "prompt-not-prefix", "the tokenized prompt is not a prefix of "
                              "prompt+completion; the trainer leaves the end of the prompt out of the sequence",
                              "prompt", self.not_prefix[:10], len(self.not_prefix)))
        same = self.identical_rows()
        if same:
            fs.append(Finding("error", "identical-tokens", "chosen and rejected tokenize identically (the chat "
                              "template trims them, or the trainer's EOS makes them equal): no learning signal, "
                              "the loss stays at 0.693; fix or drop the row", "chosen", same[:10], len(same)))
        if max_length is not None and len(self.prompt):
            n = len(self.prompt)
            dropped = [self.lines[i] for i in range(n) if self.prompt[i] >= max_length]
            if len(dropped) == n:
                fs.append(Finding("error", "all-dropped", f"every prompt has >= {max_length} tokens, leaving no "
                                  "room for a response token: the trainer would drop every row; raise max_length",
                                  "prompt", dropped[:10], n))
            elif dropped:
                fs.append(Finding("warning", "rows-dropped", f"{len(dropped)} row(s) have a prompt of >= "
                                  f"{max_length} tokens (no room for a response token) and will be dropped by the "
                                  "trainer", "prompt", dropped[:10], len(dropped)))
            cut_same = self.identical_after_cut(max_length)
            if cut_same:
                fs.append(Finding("error", "identical-after-cut", f"chosen and rejected are identical in their first "
                                  f"{max_length} tokens (they differ only past max_length): no learning signal after "
                                  "truncation; raise max_length or drop the row", None, cut_same[:10],
                                  len(cut_same)))
            cut = [self.lines[i] for i in range(n) if self.prompt[i] < max_length and (
                self.prompt[i] + self.chosen[i] > max_length or self.prompt[i] + self.rejected[i] > max_length)]
            if cut:
                fs.append(Finding("warning", "completion-cut", f"{len(cut)} pair(s) exceed max_length "
                                  f"{max_length}: the end of the completion (and its EOS) is cut", None,
                                  cut[:10], len(cut)))
        return fs


    def identical_rows(self) -> list[int]:
        """Lines whose chosen and rejected token ids are equal."""
        return [self.lines[i] for i, d in enumerate(self.diff_at) if d == SAME]

    def identical_after_cut(self, max_length: int) -> list[int]:
        """Lines the trainer keeps (prompt < max_length) whose pair differs only past ``max_length`` tokens."""
        return [self.lines[i] for i, d in enumerate(self.diff_at)
                if d != SAME and self.prompt[i] < max_length and self.prompt[i] + d >= max_length]

    def unusable(self, max_length: int | None) -> int:
        """Rows the trainer cannot learn from: refused by the template, dropped, or identical as tokens."""
        bad = len(self.errors)
        for i, d in enumerate(self.diff_at):
            p = self.prompt[i]
            if d == SAME or (max_length is not None and (p >= max_length or p + d >= max_length)):
                bad += 1
        return bad


def add_token_stats(report: DataReport, source: str | None, tokenizer: ChatTokenizer, *,
                    rows: Iterable[tuple[int, dict]] | None = None, max_length: int | None = None,
                    batch_size: int = 1, split: str = "train", column_map: dict[str, str] | None = None,
                    progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Tokenize the usable rows (streamed from ``source``, or the given ``(line, row)`` pairs), store the
    statistics in ``report.stats["tokens"]`` and add their findings to the report. Run it off the UI thread."""
    stats = TokenStats(tokenizer)
    if rows is None:
        rows = iter_preference_rows(source, split=split, column_map=column_map)
    lines: list[int] = []
    batch: list[dict] = []
    done = 0
    for line, row in rows:
        lines.append(line)
        batch.append(row)
        if len(batch) >= DEFAULT_BATCH_ROWS:
            stats.add(lines, batch)
            done += len(batch)
            lines, batch = [], []
            if progress:
                progress(done)
    if batch:
        stats.add(lines, batch)
        done += len(batch)
        if progress:
            progress(done)
    result = stats.result(max_length=max_length, batch_size=batch_size)
    report.stats["tokens"] = result
    for f in stats.findings(max_length):
        (report.errors if f.severity == "error" else report.warnings).append(f)
    if not stats.no_template:
        # the report's "usable" counts what the trainer learns from, so it never says "all usable" and then
        # "NOT USABLE" for token-level reasons
        report.rows_usable = max(0, report.rows_usable - stats.unusable(max_length))
        report.stats["rows_usable"] = report.rows_usable
    return result
