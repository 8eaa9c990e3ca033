"""Judges: who wins between two answers to one prompt. Shared by evaluation and pair labelling.

A judge is named by a one-line spec (the ``--judge`` option of ``dpo-tui eval`` and ``dpo-tui pairs``)::

    shorter                      the answer with fewer words wins (equal: tie)
    longer                       the answer with more words wins
    regex:PATTERN                the answer PATTERN matches wins (both or neither: tie)
    rm=FOLDER                    a local reward model (AutoModelForSequenceClassification); higher score wins
    url=URL,model=NAME[,prompt=FILE][,key_env=VAR][,timeout=S][,retries=N]
                                 an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server,
                                 Ollama); the API key is read from the environment variable ``key_env``
                                 (default ``OPENAI_API_KEY``) and never written anywhere

:func:`parse_judge_spec` checks a spec without touching anything heavy. Rule judges live here (pure);
the endpoint client and the reward-model judge are built by ``dpo_tui.worker.judges.build_judge``.

Every judge answers :meth:`Judge.compare` for one order (A shown first). :func:`judge_both_orders`
asks both orders and keeps a winner only when the two agree, which cancels a judge's position bias;
a judge that cannot answer (unparsable reply, timeout, HTTP 500) gives a :class:`Verdict` with
``winner=None`` ("no verdict"), never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from .errors import Problem, UserError

Winner = Literal["a", "b", "tie"]
RULES = ("shorter", "longer")
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
ENDPOINT_KEYS = ("url", "model", "prompt", "key_env", "timeout", "retries")


@dataclass(frozen=True)
class Verdict:
    """One judgement. ``winner`` None means the judge gave no usable answer (counted, never fatal)."""

    winner: Winner | None
    reason: str = ""

    @property
    def decided(self) -> bool:
        return self.winner is not None


class Judge(Protocol):
    name: str

    def compare(self, prompt: str, a: str, b: str) -> Verdict:
        """Judge ``a`` (shown first) against ``b`` for ``prompt``."""
        ...


@dataclass(frozen=True)
class JudgeSpec:
    """A parsed ``--judge`` value. ``kind`` is ``rule``, ``regex``, ``reward_model`` or ``endpoint``."""

    kind: Literal["rule", "regex", "reward_model", "endpoint"]
    text: str
    rule: str = ""
    pattern: str = ""
    path: str = ""
    url: str = ""
    model: str = ""
    prompt_file: str = ""
    key_env: str = DEFAULT_KEY_ENV
    timeout_s: float = 60.0
    retries: int = 2
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """A short name for tables and reports (never the key)."""
        if self.kind == "rule":
            return self.rule
        if self.kind == "regex":
            return f"regex:{self.pattern}"
        if self.kind == "reward_model":
            return f"rm:{Path(self.path).name}"
        # user:password@ in a URL is a credential: keep it out of tables and reports.
        url = re.sub(r"^(https?://)[^/@]*@", r"\1", self.url)
        return f"{self.model}@{url}"


def _bad(text: str, what: str, hint: str) -> UserError:
    return UserError("Bad --judge value", [Problem(f"{what} (got {text!r})", field="--judge")], hint=hint)


SPEC_HINT = "use shorter, longer, regex:PATTERN, rm=FOLDER or url=http://HOST:PORT/v1,model=NAME"


def parse_judge_spec(text: str) -> JudgeSpec:
    """Parse a ``--judge`` spec; a :class:`UserError` names what is wrong and how to write it."""
    raw = (text or "").strip()
    if not raw:
        raise _bad(text, "empty judge", SPEC_HINT)
    if raw in RULES:
        return JudgeSpec(kind="rule", text=raw, rule=raw)
    if raw.startswith("regex:"):
        pattern = raw[len("regex:") :]
        if not pattern:
            raise _bad(text, "regex: needs a pattern", "for example regex:\\bOslo\\b")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _bad(text, f"the pattern does not compile: {exc}", "check the regular expression") from None
        return JudgeSpec(kind="regex", text=raw, pattern=pattern)
    if raw.startswith(("rm=", "reward-model=")):
        path = raw.split("=", 1)[1].strip()
        if not path:
            raise _bad(text, "rm= needs a folder", "rm=/path/to/reward-model")
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise _bad(text, f"{folder} is not a folder", "give the folder of a sequence-classification model")
        if not (folder / "config.json").is_file():
            raise _bad(text, f"{folder} has no config.json", "give the folder of a saved AutoModelForSequenceClassification")
        return JudgeSpec(kind="reward_model", text=raw, path=str(folder))
    if "url=" in raw:
        parts: dict[str, str] = {}
        for piece in raw.split(","):
            key, sep, value = piece.partition("=")
            key = key.strip()
            if not sep or key not in ENDPOINT_KEYS:
                raise _bad(text, f"unknown part {piece.strip()!r}", f"the parts are {', '.join(ENDPOINT_KEYS)}")
            parts[key] = value.strip()
        url, model = parts.get("url", ""), parts.get("model", "")
        if not re.match(r"^https?://[^\s/]+", url):
            raise _bad(text, "url must start with http:// or https://", "url=http://127.0.0.1:8000/v1")
        if not model:
            raise _bad(text, "model= is missing", "name the model the endpoint serves, e.g. model=llama3")
        try:
            timeout = float(parts.get("timeout", "60"))
            retries = int(parts.get("retries", "2"))
        except ValueError:
            raise _bad(text, "timeout must be seconds and retries a whole number", "timeout=60,retries=2") from None
        if not 0 < timeout <= 3600 or not 0 <= retries <= 10:
            raise _bad(text, "timeout must be in (0, 3600] s and retries in 0..10", "timeout=60,retries=2")
        prompt_file = parts.get("prompt", "")
        if prompt_file and not Path(prompt_file).expanduser().is_file():
            raise _bad(text, f"prompt file {prompt_file} does not exist", "give a judge prompt file or leave prompt= out")
        key_env = parts.get("key_env", DEFAULT_KEY_ENV) or DEFAULT_KEY_ENV
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key_env):
            raise _bad(text, "key_env must name an environment variable", "key_env=OPENAI_API_KEY")
        return JudgeSpec(kind="endpoint", text=raw, url=url.rstrip("/"), model=model, prompt_file=prompt_file,
                         key_env=key_env, timeout_s=timeout, retries=retries)
    raise _bad(text, "not a judge spec", SPEC_HINT)


def words(text: str) -> int:
    """Whitespace-separated words: the length measure of rules, evaluation and pair labelling."""
    return len(text.split())


class RuleJudge:
    """``shorter``/``longer`` by words, or ``regex:`` (the matching answer wins)."""

    def __init__(self, spec: JudgeSpec) -> None:
        if spec.kind not in ("rule", "regex"):
            raise ValueError(f"not a rule spec: {spec.text}")
        self.spec = spec
        self.name = spec.label
        self._pattern = re.compile(spec.pattern) if spec.kind == "regex" else None

    def compare(self, prompt: str, a: str, b: str) -> Verdict:
        if self._pattern is not None:
            ma, mb = bool(self._pattern.search(a)), bool(self._pattern.search(b))
            if ma == mb:
                return Verdict("tie", "both match" if ma else "neither matches")
            return Verdict("a" if ma else "b", "matches the pattern")
        wa, wb = words(a), words(b)
        if wa == wb:
            return Verdict("tie", f"both {wa} words")
        a_wins = wa < wb if self.spec.rule == "shorter" else wa > wb
        return Verdict("a" if a_wins else "b", f"{wa} vs {wb} words")


_FLIP: dict[Winner, Winner] = {"a": "b", "b": "a", "tie": "tie"}


def judge_both_orders(judge: Judge, prompt: str, a: str, b: str) -> tuple[Verdict, Verdict, Verdict]:
    """Ask (a, b) then (b, a); returns (combined, first order, second order mapped back to a/b).

    Agreement keeps the winner; disagreement is a tie (the judge preferred a position, not an answer);
    either order without a verdict makes the whole comparison "no verdict".
    """
    first = judge.compare(prompt, a, b)
    swapped = judge.compare(prompt, b, a)
    second = Verdict(_FLIP[swapped.winner] if swapped.winner else None, swapped.reason)
    if first.winner is None or second.winner is None:
        why = first.reason if first.winner is None else second.reason
        why = why[len("no verdict: "):] if why.startswith("no verdict: ") else why
        return Verdict(None, f"no verdict: {why}"), first, second
    if first.winner == second.winner:
        return Verdict(first.winner, first.reason), first, second
    if "tie" in (first.winner, second.winner):
        return Verdict("tie", "the two orders disagree (a tie one way, a winner the other)"), first, second
    return Verdict("tie", "the judge preferred whichever answer came first" if first.winner == "a"
                   else "the judge preferred whichever answer came second"), first, second
