"""The tokenizer as the trainer uses it, without transformers: finding ``tokenizer.json``, rendering the chat
template as transformers renders it, and tokenizing a row exactly as TRL 1.16's ``DPOTrainer._prepare_dataset``.

The tokenizer is the fast ``tokenizers`` one (``tokenizer.json``); the chat template is rendered with jinja2 in
the same sandboxed environment transformers uses (trim_blocks, lstrip_blocks, ``raise_exception``, ``tojson``,
``strftime_now``, loop controls, ``{% generation %}``), with the special tokens passed as template variables.

Imports: ``tokenizers`` and ``jinja2`` lazily (core world).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import Problem, UserError, first_line
from ..fsutil import JSON_ERRORS
from ..hub import cached_snapshot, repo_folder
from .plan import common_prefix

SPECIAL_TOKEN_ATTRS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def resolve_tokenizer_dir(model: str) -> Path:
    """A folder holding ``tokenizer.json``: a local model folder, ``sample``, or a hub id in the local cache."""
    from ..config import resolve_model

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
    repo = repo_folder(spec, "model")
    main = cached_snapshot(spec, "model")
    cands = [main] if main is not None else []
    try:
        cands += sorted((p for p in (repo / "snapshots").iterdir() if p.is_dir() and p != main),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        pass
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
    except (OSError, *JSON_ERRORS):
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
            raise UserError(f"cannot load {folder / 'tokenizer.json'}: {first_line(exc)}") from None
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
            raise TemplateError(first_line(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a template is code; any failure is the template's
            raise TemplateError(f"{type(exc).__name__}: {first_line(exc)}") from None

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
            n = min(common_prefix(p, pc), common_prefix(p, pr))
            pair = PreparedPair(p[:n], pc[n:], pr[n:], len(p) - n)
            if keep_text:
                pair.prompt_chosen_text, pair.prompt_rejected_text = texts[flag][i + 1], texts[flag][i + 2]
                pair.chosen_offsets = list(e[i + 1].offsets)
                pair.rejected_offsets = list(e[i + 2].offsets)
            out.append(pair)
        return out
