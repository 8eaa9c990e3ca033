"""The trainer-exact preview of one pair: which tokens are prompt (context), trained completion, or cut by
``max_length``."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError, first_line
from . import iter_preference_rows
from .tokenizer import ChatTokenizer, PreparedPair, TemplateError


@dataclass
class PairPreview:
    """One pair as the trainer sees it. Each side is a list of ``(text, kind)`` segments, kind one of
    ``prompt`` (context, not trained), ``trained`` (completion tokens the loss sees), ``cut`` (completion
    tokens the collator truncates away)."""

    format: str
    chosen: list[tuple[str, str]]
    rejected: list[tuple[str, str]]
    prompt_tokens: int
    chosen_tokens: int
    rejected_tokens: int
    chosen_kept: int
    rejected_kept: int
    dropped: bool  # prompt alone >= max_length: the trainer drops the row
    prompt_left_out: int
    prepared: PreparedPair
    max_length: int | None = None

    def render_text(self) -> str:
        """Plain text: the trained completion inside [[...]], truncated tokens inside {{cut: ...}}."""
        out = []
        for name, segs, n, kept in (("chosen", self.chosen, self.chosen_tokens, self.chosen_kept),
                                    ("rejected", self.rejected, self.rejected_tokens, self.rejected_kept)):
            text = "".join(
                t if kind == "prompt" else (f"[[{t}]]" if kind == "trained" else f"{{{{cut: {t}}}}}")
                for t, kind in segs
            )
            out.append(f"--- {name}: prompt {self.prompt_tokens} tokens, completion {n} tokens"
                       + (f", {n - kept} cut by max_length {self.max_length}" if kept < n else "") + " ---")
            out.append(text)
        if self.dropped:
            out.append(f"(dropped by the trainer: the prompt alone has >= {self.max_length} tokens)")
        if self.prompt_left_out:
            out.append(f"(note: {self.prompt_left_out} prompt token(s) are not a prefix of prompt+completion and "
                       "are left out by the trainer)")
        return "\n".join(out)


def _segments(text: str, offsets: list[tuple[int, int]], ids_prompt: int, kept_total: int,
              n_total: int) -> list[tuple[str, str]]:
    """Split the tokenized text into prompt / trained / cut by token boundaries (char offsets)."""

    def char_at(tok_index: int) -> int:
        if tok_index >= n_total:
            return len(text)
        # special tokens added by the post-processor have (0, 0) offsets; use the next real token
        for j in range(tok_index, n_total):
            start, end = offsets[j]
            if end > start or start > 0:
                return start
        return len(text)

    a = char_at(ids_prompt) if ids_prompt else 0
    b = char_at(kept_total)
    segs = [(text[:a], "prompt"), (text[a:b], "trained"), (text[b:], "cut")]
    return [(t, k) for t, k in segs if t]


def preview_pair(row: dict, tokenizer: ChatTokenizer, max_length: int | None = None) -> PairPreview:
    """Render one normalized row exactly as the trainer tokenizes it. Raises TemplateError if the template
    refuses it."""
    res = tokenizer.prepare([row], keep_text=True)[0]
    if isinstance(res, TemplateError):
        raise res
    p = len(res.prompt_ids)
    cap = max_length if max_length is not None else 1 << 62
    sides = {}
    for name, ids, text, offs in (("chosen", res.chosen_ids, res.prompt_chosen_text, res.chosen_offsets),
                                  ("rejected", res.rejected_ids, res.prompt_rejected_text, res.rejected_offsets)):
        # the trained sequence is exactly prompt_ids + completion ids: the first tokens of the tokenized
        # prompt+completion text, so its offsets locate the boundaries
        kept_total = min(cap, p + len(ids))
        sides[name] = (_segments(text, offs, p, kept_total, len(offs)), max(0, kept_total - p))
    fmt = "conversational" if isinstance(row["prompt"], list) else "standard"
    return PairPreview(
        format=fmt,
        chosen=sides["chosen"][0],
        rejected=sides["rejected"][0],
        prompt_tokens=p,
        chosen_tokens=len(res.chosen_ids),
        rejected_tokens=len(res.rejected_ids),
        chosen_kept=sides["chosen"][1],
        rejected_kept=sides["rejected"][1],
        dropped=max_length is not None and p >= max_length,
        prompt_left_out=res.prompt_left_out,
        prepared=res,
        max_length=max_length,
    )


def preview_from_source(source: str, tokenizer: ChatTokenizer, index: int = 0, *, max_length: int | None = None,
                        split: str = "train", column_map: dict[str, str] | None = None) -> tuple[int, PairPreview]:
    """(line, preview) of the index-th usable row of a dataset."""
    rows = list(iter_preference_rows(source, split=split, column_map=column_map, limit=index + 1))
    if len(rows) <= index:
        raise UserError(f"{source}: no usable row number {index + 1} (it has {len(rows)})")
    line, row = rows[index]
    try:
        return line, preview_pair(row, tokenizer, max_length)
    except TemplateError as exc:
        raise UserError(f"{source}:{line}: the chat template refused this row: {first_line(exc)}") from None

