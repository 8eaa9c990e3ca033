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

The tokenizer is the fast ``tokenizers`` one (``tokenizer.json``); the chat template is rendered with jinja2 in
the same sandboxed environment transformers uses (trim_blocks, lstrip_blocks, ``raise_exception``, ``tojson``,
``strftime_now``, loop controls, ``{% generation %}``), with the special tokens passed as template variables.
A worker test proves the ids equal what ``DPOTrainer`` puts in ``train_dataset``.

Imports: ``tokenizers`` and ``jinja2`` lazily (core world).
"""

from __future__ import annotations

import json
import os
import random
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .data import DataReport, Finding, iter_preference_rows, percentiles
from .errors import Problem, UserError

__all__ = [
    "ChatTokenizer",
    "PairPreview",
    "PreparedPair",
    "TokenStats",
    "add_token_stats",
    "preview_pair",
    "resolve_tokenizer_dir",
]

SPECIAL_TOKEN_ATTRS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
DEFAULT_BATCH_ROWS = 512


# ----------------------------------------------------------------------------------------------------------
# Finding the tokenizer
# ----------------------------------------------------------------------------------------------------------


def _hub_cache() -> Path:
    env = os.environ
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(key):
            return Path(env[key]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def resolve_tokenizer_dir(model: str) -> Path:
    """A folder holding ``tokenizer.json``: a local model folder, ``sample``, or a hub id in the local cache."""
    from .config import resolve_model

    spec = resolve_model(model)
    path = Path(spec).expanduser()
    if path.is_file() and path.name == "tokenizer.json":
        return path.parent
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return path
        raise UserError(
            f"no tokenizer.json in {path}",
            hint="token statistics need a fast tokenizer (tokenizer.json); save the tokenizer with "
            "transformers' save_pretrained",
        )
    repo = _hub_cache() / ("models--" + spec.replace("/", "--"))
    snaps = repo / "snapshots"
    if snaps.is_dir():
        ref = repo / "refs" / "main"
        cands = []
        if ref.is_file() and (snaps / ref.read_text().strip()).is_dir():
            cands.append(snaps / ref.read_text().strip())
        cands += sorted((p for p in snaps.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
        for snap in cands:
            if (snap / "tokenizer.json").is_file():
                return snap
    raise UserError(
        f"model not found: {model}",
        problems=[Problem("neither a local folder nor a cached hub model with tokenizer.json", field="model")],
        hint="pass a local model folder, 'sample', or download the model first",
    )


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ----------------------------------------------------------------------------------------------------------
# The chat template, rendered as transformers renders it
# ----------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _compile_template(source: str):
    import jinja2
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Generation(Extension):
        """``{% generation %}...{% endgeneration %}`` (assistant-mask markers): rendered as their body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        from datetime import datetime

        return datetime.now().strftime(fmt)

    class _Namespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                _Namespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            _Namespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"underscore-prefixed namespace attribute {name!r}")

    class _Dict:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = _Dict()
    env.globals["namespace"] = _Namespace
    return env.from_string(source)


class TemplateError(Exception):
    """The chat template refused a conversation (``raise_exception``) or failed to render."""


# ----------------------------------------------------------------------------------------------------------
# The tokenizer
# ----------------------------------------------------------------------------------------------------------


@dataclass
class PreparedPair:
    """One row as the trainer tokenizes it (before the collator's truncation)."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    prompt_left_out: int = 0  # prompt tokens dropped because prompt alone is not a prefix of prompt+completion
    # texts fed to the tokenizer (rendered chat for conversational rows), and token char offsets
    prompt_chosen_text: str = ""
    prompt_rejected_text: str = ""
    chosen_offsets: list[tuple[int, int]] = _field(default_factory=list)
    rejected_offsets: list[tuple[int, int]] = _field(default_factory=list)


class ChatTokenizer:
    """``tokenizer.json`` + ``tokenizer_config.json`` + chat template, as TRL/transformers use them."""

    def __init__(self, tokenizer: Any, special: dict[str, str], chat_template: str | None, name: str = "") -> None:
        self.tok = tokenizer
        self.special = special
        self.chat_template = chat_template
        self.name = name
        self.notes: list[str] = []
        self.bos_token = special.get("bos_token")
        self.eos_token = special.get("eos_token")
        self.pad_token = special.get("pad_token")
        self.bos_id = tokenizer.token_to_id(self.bos_token) if self.bos_token else None
        self.eos_id = tokenizer.token_to_id(self.eos_token) if self.eos_token else None
        pad = self.pad_token or self.eos_token  # TRL: pad := eos when the tokenizer has none
        self.pad_id = tokenizer.token_to_id(pad) if pad else None

    @classmethod
    def from_dir(cls, folder: str | os.PathLike[str]) -> ChatTokenizer:
        folder = Path(folder)
        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"cannot load {folder / 'tokenizer.json'}: {exc}") from None
        tok.no_truncation()
        tok.no_padding()
        cfg = _read_json(folder / "special_tokens_map.json")
        cfg.update(_read_json(folder / "tokenizer_config.json"))
        special = {}
        for attr in SPECIAL_TOKEN_ATTRS:
            text = _token_text(cfg.get(attr))
            if text is not None:
                special[attr] = text
        # with a tokenizer.json, transformers 5 ignores add_bos_token/add_eos_token in the config and keeps the
        # file's post-processor (none: no special tokens), exactly what `tokenizers` does with the file
        notes = []
        klass = cfg.get("tokenizer_class")
        if klass and klass not in ("PreTrainedTokenizerFast", "TokenizersBackend"):
            notes.append(f"tokenizer class {klass}: ids computed from tokenizer.json; the trainer loads the same "
                         "file, but a model-specific tokenizer class may pre-process text differently")
        template = None
        jinja_file = folder / "chat_template.jinja"
        if jinja_file.is_file():
            template = jinja_file.read_text(encoding="utf-8")
        else:
            raw = cfg.get("chat_template")
            if raw is None:
                raw = _read_json(folder / "chat_template.json").get("chat_template")
            if isinstance(raw, list):
                named = {t.get("name"): t.get("template") for t in raw if isinstance(t, dict)}
                raw = named.get("default")
            if isinstance(raw, str):
                template = raw
        out = cls(tok, special, template, str(folder))
        out.notes = notes
        return out

    @classmethod
    def from_model(cls, model: str) -> ChatTokenizer:
        return cls.from_dir(resolve_tokenizer_dir(model))

    # -- primitives ----------------------------------------------------------------------------------------
    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        if not self.chat_template:
            raise TemplateError("the tokenizer has no chat template")
        import jinja2

        try:
            return _compile_template(self.chat_template).render(
                messages=[{k: v for k, v in m.items() if v is not None} for m in messages],
                tools=None, documents=None, add_generation_prompt=add_generation_prompt, **self.special,
            )
        except jinja2.exceptions.TemplateError as exc:
            raise TemplateError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a template is code; any failure is the template's
            raise TemplateError(f"{type(exc).__name__}: {exc}") from None

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool) -> list[Any]:
        return self.tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    # -- TRL's _prepare_dataset ----------------------------------------------------------------------------
    def texts_for(self, row: dict) -> tuple[list[str], bool]:
        """The three texts the trainer tokenizes for a row and whether special tokens are added."""
        if isinstance(row["prompt"], list):
            return [
                self.render(row["prompt"], add_generation_prompt=True),
                self.render(row["prompt"] + row["chosen"]),
                self.render(row["prompt"] + row["rejected"]),
            ], False
        eos = self.eos_token
        if eos is None:
            raise TemplateError("the tokenizer has no eos_token; the trainer appends it to standard completions")
        chosen = row["chosen"] if row["chosen"].endswith(eos) else row["chosen"] + eos
        rejected = row["rejected"] if row["rejected"].endswith(eos) else row["rejected"] + eos
        p = row["prompt"]
        return [p, p + chosen, p + rejected], True

    def prepare(self, rows: Sequence[dict], keep_text: bool = False) -> list[PreparedPair | TemplateError]:
        """Tokenize rows exactly as the trainer does; a row the template refuses becomes a TemplateError."""
        texts: dict[bool, list[str]] = {True: [], False: []}  # by add_special_tokens
        slots: list[Any] = []
        for row in rows:
            try:
                three, special = self.texts_for(row)
            except TemplateError as exc:
                slots.append(exc)
                continue
            slots.append((special, len(texts[special])))
            texts[special] += three
        encs = {flag: self.encode_batch(t, add_special_tokens=flag) if t else [] for flag, t in texts.items()}
        out: list[PreparedPair | TemplateError] = []
        for slot in slots:
            if isinstance(slot, TemplateError):
                out.append(slot)
                continue
            flag, i = slot
            e = encs[flag]
            p, pc, pr = e[i].ids, e[i + 1].ids, e[i + 2].ids
            n = min(_common_prefix(p, pc), _common_prefix(p, pr))
            pair = PreparedPair(p[:n], pc[n:], pr[n:], len(p) - n)
            if keep_text:
                pair.prompt_chosen_text, pair.prompt_rejected_text = texts[flag][i + 1], texts[flag][i + 2]
                pair.chosen_offsets = list(e[i + 1].offsets)
                pair.rejected_offsets = list(e[i + 2].offsets)
            out.append(pair)
        return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# ----------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------


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
        if max_length is not None and len(self.prompt):
            n = len(self.prompt)
            dropped = [self.lines[i] for i in range(n) if self.prompt[i] >= max_length]
            if len(dropped) == n:
                fs.append(Finding("error", "all-dropped", f"every prompt has >= {max_length} tokens: the trainer "
                                  "would drop every row; raise max_length", "prompt", dropped[:10], n))
            elif dropped:
                fs.append(Finding("warning", "rows-dropped", f"{len(dropped)} row(s) have a prompt of >= "
                                  f"{max_length} tokens and will be dropped by the trainer", "prompt",
                                  dropped[:10], len(dropped)))
            cut = [self.lines[i] for i in range(n) if self.prompt[i] < max_length and (
                self.prompt[i] + self.chosen[i] > max_length or self.prompt[i] + self.rejected[i] > max_length)]
            if cut:
                fs.append(Finding("warning", "completion-cut", f"{len(cut)} pair(s) exceed max_length "
                                  f"{max_length}: the end of the completion (and its EOS) is cut", None,
                                  cut[:10], len(cut)))
        return fs


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
    return result


# ----------------------------------------------------------------------------------------------------------
# Preview
# ----------------------------------------------------------------------------------------------------------


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
        raise UserError(f"{source}:{line}: the chat template refused this row: {exc}") from None

