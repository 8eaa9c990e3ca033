"""Pair labelling: from candidates per prompt to a DPO dataset (``DIR/pairs.jsonl``) and its ``summary.json``.

Pure (stdlib and the core): the rules, the hand decisions, the drops, the output rows and the summary. A judge
(an endpoint or a reward model) is plugged in as a :class:`Labeller` built in ``dpo_tui.worker.pairs_label``.

Rules (``--rule``), parts joined with ``+`` (a ``+`` followed by a part name starts a new part)::

    shorter | longer        fewer / more words wins
    must:REGEX              a candidate must match REGEX (Python ``re.search``) to be chosen
    must-not:REGEX          a candidate must not match REGEX to be chosen
    words:MIN-MAX           a candidate within MIN..MAX words beats one outside

Candidates are ranked by a key compared in this fixed order, whatever the order of the parts: 1) every
``must``/``must-not`` satisfied, 2) inside the word window, 3) shorter/longer. The chosen answer is the best
candidate (the first in file order among equals) and the rejected one the worst (likewise), so for n > 2 the
pair carries the largest difference the rule sees. Equal keys for best and worst is a tie; a best candidate
that still breaks a ``must``/``must-not`` means no candidate may be chosen ("rule unmet").

Drops, each counted in the summary, in the order they are checked per prompt: a duplicate prompt (the same
messages as an earlier prompt; the first is kept), fewer than two usable candidates ("empty": a candidate with
0 words or finish ``cancelled`` is unusable), then the decision (tie, no verdict, rule unmet, and for hand
labels skipped / not labelled yet / a label naming an unknown candidate), then a near-duplicate pair: chosen
and rejected equal after normalising (case, punctuation, whitespace), or ``difflib.SequenceMatcher`` ratio of
the normalised texts >= :data:`NEAR_DUP_RATIO`. With exactly two usable candidates the near-duplicate check
runs before the decision, so a judge is never asked about two copies of one answer.
"""

from __future__ import annotations

import difflib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import Problem, UserError
from ..judge import words

NEAR_DUP_RATIO = 0.9
PAIRS_FILE = "pairs.jsonl"
SUMMARY_FILE = "summary.json"
BY = ("rule", "judge", "hand")
FORMATS = ("standard", "conversational")
DROP_REASONS = ("duplicate_prompt", "empty", "tie", "no_verdict", "rule_unmet", "near_duplicate", "skipped",
                "not_labelled", "bad_label")
RULE_HINT = "use shorter, longer, must:REGEX, must-not:REGEX or words:MIN-MAX, joined with + (e.g. must-not:(?i)great question+shorter)"


@dataclass(frozen=True)
class Candidate:
    id: str
    text: str
    tokens: int = 0
    finish: str = ""

    @property
    def words(self) -> int:
        return words(self.text)

    @property
    def usable(self) -> bool:
        return self.words > 0 and self.finish != "cancelled"


@dataclass(frozen=True)
class PromptRow:
    """One prompt and its candidates (a ``candidates.jsonl`` line, as plain values)."""

    index: int
    prompt: str
    messages: list[dict[str, str]]
    conversational: bool
    candidates: list[Candidate]

    @property
    def judge_prompt(self) -> str:
        """The text a judge sees: the prompt, else the last user turn."""
        if self.prompt:
            return self.prompt
        users = [m.get("content", "") for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else ""

    def prompt_messages(self) -> list[dict[str, str]]:
        return [dict(m) for m in self.messages] if self.messages else [{"role": "user", "content": self.prompt}]


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)


def row_from(obj: Any) -> PromptRow:
    """A :class:`PromptRow` from a ``candidates.jsonl`` line: a dict, or any object with the same attributes
    (the ``CandidateRow`` of :mod:`dpo_tui.core.pairs.candidates`)."""
    cands = [Candidate(str(_get(c, "id", f"c{i}")), str(_get(c, "text", "") or ""), int(_get(c, "tokens", 0) or 0),
                       str(_get(c, "finish", "") or ""))
             for i, c in enumerate(_get(obj, "candidates", None) or [])]
    messages = [{"role": str(_get(m, "role", "")), "content": str(_get(m, "content", ""))}
                for m in _get(obj, "messages", None) or []]
    return PromptRow(int(_get(obj, "index", 0)), str(_get(obj, "prompt", "") or ""), messages,
                     bool(_get(obj, "conversational", False)), cands)


# -- rules -----------------------------------------------------------------------------------------------------

_PART = re.compile(r"\+(?=(?:shorter|longer|must:|must-not:|words:))")


def _bad_rule(text: str, what: str) -> UserError:
    return UserError("Bad --rule value", [Problem(f"{what} (got {text!r})", field="--rule")], hint=RULE_HINT)


@dataclass(frozen=True)
class Rule:
    spec: str
    length: Literal["shorter", "longer", ""] = ""
    must: tuple[re.Pattern[str], ...] = ()
    must_not: tuple[re.Pattern[str], ...] = ()
    window: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return f"rule {self.spec}"

    def allowed(self, c: Candidate) -> bool:
        """May ``c`` be chosen (every ``must`` matches, no ``must-not`` does)?"""
        return all(p.search(c.text) for p in self.must) and not any(p.search(c.text) for p in self.must_not)

    def key(self, c: Candidate) -> tuple[bool, bool, int]:
        w = c.words
        in_window = self.window is None or self.window[0] <= w <= self.window[1]
        length = -w if self.length == "shorter" else w if self.length == "longer" else 0
        return (self.allowed(c), in_window, length)

    def prefers(self, a: Candidate, b: Candidate) -> Literal["a", "b", "tie"]:
        ka, kb = self.key(a), self.key(b)
        return "tie" if ka == kb else "a" if ka > kb else "b"


def parse_rule(text: str) -> Rule:
    """Parse a ``--rule`` spec; every mistake is a :class:`UserError` naming the part."""
    raw = (text or "").strip()
    if not raw:
        raise _bad_rule(text, "empty rule")
    length: Literal["shorter", "longer", ""] = ""
    must: list[re.Pattern[str]] = []
    must_not: list[re.Pattern[str]] = []
    window: tuple[int, int] | None = None
    for part in _PART.split(raw):
        if part in ("shorter", "longer"):
            if length:
                raise _bad_rule(text, f"{length} and {part} together: choose one")
            length = "shorter" if part == "shorter" else "longer"
        elif part.startswith(("must:", "must-not:")):
            name, _, pattern = part.partition(":")
            if not pattern:
                raise _bad_rule(text, f"{name}: needs a pattern")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise _bad_rule(text, f"{name}:{pattern} does not compile: {exc}") from None
            (must if name == "must" else must_not).append(compiled)
        elif part.startswith("words:"):
            if window is not None:
                raise _bad_rule(text, "words: given twice")
            m = re.fullmatch(r"words:(\d+)-(\d+)", part)
            if not m or int(m.group(1)) > int(m.group(2)):
                raise _bad_rule(text, f"{part!r} must be words:MIN-MAX with whole numbers MIN <= MAX")
            window = (int(m.group(1)), int(m.group(2)))
        else:
            raise _bad_rule(text, f"unknown part {part!r}")
    return Rule(raw, length, tuple(must), tuple(must_not), window)


# -- decisions -------------------------------------------------------------------------------------------------

Outcome = Literal["pair", "tie", "no_verdict", "rule_unmet", "skipped", "not_labelled", "bad_label", "empty",
                  "near_duplicate"]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    chosen: Candidate | None = None
    rejected: Candidate | None = None
    reason: str = ""


@dataclass
class Labeller:
    """Who decides (or is compared): ``decide`` picks a pair among usable candidates; ``prefers`` says which of
    two candidates it prefers (``None``: no verdict), for the agreement figure."""

    name: str
    decide: Callable[[PromptRow, list[Candidate]], Decision]
    prefers: Callable[[PromptRow, Candidate, Candidate], Literal["a", "b", "tie"] | None]
    counts: dict[str, int] = field(default_factory=dict)


def rule_decide(rule: Rule, cands: list[Candidate]) -> Decision:
    best = max(cands, key=rule.key)  # max/min keep the first of equals: file order breaks ties
    worst = min(cands, key=rule.key)
    if rule.key(best) == rule.key(worst):
        return Decision("tie", reason="the rule ranks every candidate the same")
    if not rule.allowed(best):
        return Decision("rule_unmet", reason="no candidate satisfies must/must-not")
    return Decision("pair", best, worst)


def rule_labeller(rule: Rule) -> Labeller:
    return Labeller(rule.name, lambda row, cands: rule_decide(rule, cands), lambda row, a, b: rule.prefers(a, b))


@dataclass(frozen=True)
class HandLabel:
    """A hand decision (``labels.jsonl``, replayed): ``decision`` a/b/tie/skip, ids, edited texts by id."""

    decision: str
    chosen: str | None = None
    rejected: str | None = None
    edited: dict[str, str] = field(default_factory=dict)


def hand_from(obj: Any) -> HandLabel:
    """A :class:`HandLabel` from a dict or a ``HandDecision`` of :mod:`dpo_tui.core.pairs.queue`."""
    edited = _get(obj, "edited", None) or {}
    return HandLabel(str(_get(obj, "decision", "")), _get(obj, "chosen", None), _get(obj, "rejected", None),
                     {str(k): str(v) for k, v in dict(edited).items()})


def hand_decide(label: HandLabel | None, cands: list[Candidate]) -> Decision:
    if label is None:
        return Decision("not_labelled")
    if label.decision == "tie":
        return Decision("tie", reason="tie by hand")
    if label.decision not in ("a", "b"):
        return Decision("skipped")
    by_id = {c.id: c for c in cands}
    chosen, rejected = by_id.get(label.chosen or ""), by_id.get(label.rejected or "")
    if chosen is None or rejected is None or chosen.id == rejected.id:
        return Decision("bad_label", reason=f"labels name {label.chosen!r}/{label.rejected!r}")
    return Decision("pair", chosen, rejected)


# -- drops -----------------------------------------------------------------------------------------------------

def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def near_duplicate(a: str, b: str, threshold: float = NEAR_DUP_RATIO) -> bool:
    """Equal after :func:`normalise`, or a SequenceMatcher ratio >= ``threshold`` (cheap upper bounds first)."""
    na, nb = normalise(a), normalise(b)
    if na == nb:
        return True
    sm = difflib.SequenceMatcher(None, na, nb, autojunk=False)
    return sm.real_quick_ratio() >= threshold and sm.quick_ratio() >= threshold and sm.ratio() >= threshold


def _prompt_key(row: PromptRow) -> str:
    return json.dumps(row.prompt_messages() if row.messages else row.prompt.strip(), sort_keys=True, ensure_ascii=False)


# -- the labelling pass ----------------------------------------------------------------------------------------

@dataclass
class LabelResult:
    records: list[dict[str, Any]]
    summary: dict[str, Any]


def pair_record(row: PromptRow, chosen: Candidate, rejected: Candidate, fmt: str) -> dict[str, Any]:
    if fmt == "conversational":
        return {"prompt": row.prompt_messages(), "chosen": [{"role": "assistant", "content": chosen.text}],
                "rejected": [{"role": "assistant", "content": rejected.text}]}
    prompt = row.prompt or row.judge_prompt
    if prompt and not prompt[-1].isspace():
        prompt += "\n"  # the trainer joins standard texts as they are ("Hi?Hello"); the bundled pairs do the same
    return {"prompt": prompt, "chosen": chosen.text, "rejected": rejected.text}


def output_format(rows: list[PromptRow], fmt: str | None) -> str:
    """``fmt`` when given, else conversational when any prompt is (one dataset holds one shape)."""
    if fmt:
        return fmt
    return "conversational" if any(r.conversational for r in rows) else "standard"


def label_rows(rows: Iterable[PromptRow], by: str, decider: Labeller | None, *, compared: Labeller | None = None,
               hand: Mapping[int, HandLabel] | None = None, fmt: str = "standard") -> LabelResult:
    """Label every row; ``by`` is rule/judge (``decider`` decides) or hand (``hand`` decides, by index)."""
    drops = dict.fromkeys(DROP_REASONS, 0)
    seen: set[str] = set()
    records: list[dict[str, Any]] = []
    agree = disagree = undecided = 0
    empty_candidates = total = 0
    for row in rows:
        total += 1
        key = _prompt_key(row)
        if key in seen:
            drops["duplicate_prompt"] += 1
            continue
        seen.add(key)
        label = (hand or {}).get(row.index) if by == "hand" else None
        cands = row.candidates
        if label is not None and label.edited:
            cands = [Candidate(c.id, label.edited.get(c.id, c.text), c.tokens, c.finish) for c in cands]
        usable = [c for c in cands if c.usable]
        empty_candidates += len(cands) - len(usable)
        if by == "hand":
            decision = hand_decide(label, cands)
            if decision.chosen and decision.rejected and not (decision.chosen.usable and decision.rejected.usable):
                decision = Decision("empty")
        elif len(usable) < 2:
            decision = Decision("empty")
        elif len(usable) == 2 and near_duplicate(usable[0].text, usable[1].text):
            decision = Decision("near_duplicate")
        else:
            assert decider is not None
            decision = decider.decide(row, usable)
        if decision.outcome != "pair":
            drops[decision.outcome] += 1
            continue
        chosen, rejected = decision.chosen, decision.rejected
        assert chosen is not None and rejected is not None
        if near_duplicate(chosen.text, rejected.text):
            drops["near_duplicate"] += 1
            continue
        if compared is not None:
            view = compared.prefers(row, chosen, rejected)
            agree += view == "a"
            disagree += view == "b"
            undecided += view not in ("a", "b")
        records.append(pair_record(row, chosen, rejected, fmt))
    summary: dict[str, Any] = {
        "prompts": total, "pairs": len(records), "by": by, "format": fmt,
        "decided_by": "hand" if by == "hand" else decider.name if decider else None,
        "dropped": drops, "dropped_total": sum(drops.values()), "empty_candidates": empty_candidates,
        "agreement": None,
    }
    if compared is not None:
        judged = agree + disagree
        summary["agreement"] = {"with": compared.name, "agree": agree, "disagree": disagree,
                                "undecided": undecided, "compared": judged,
                                "share": round(agree / judged, 4) if judged else None}
    calls = [lab.counts for lab in (decider, compared) if lab is not None and lab.counts]
    summary["judge_calls"] = calls[0] if calls else None  # only a judge counts its calls, and one judge runs
    return LabelResult(records, summary)


# -- the folder: read, label, write, lint ----------------------------------------------------------------------

def check_folder(folder: Path, by: str) -> None:
    """Refuse a folder without the files ``by`` needs, before anything costly (a judge) is built."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder", hint="give the --out folder of dpo-tui pairs generate")
    if not (folder / "candidates.jsonl").is_file():
        raise UserError(f"{folder}: no candidates.jsonl", hint=f"generate candidates first: dpo-tui pairs generate ... --out {folder}")
    if by == "hand" and not (folder / "labels.jsonl").is_file():
        raise UserError(f"{folder}: no labels.jsonl: nothing was labelled by hand yet",
                        hint="label in the console (Pairs, l), or use --rule / --judge")


def read_rows(folder: Path) -> list[PromptRow]:
    """The folder's candidates (read by :func:`dpo_tui.core.pairs.candidates.read_candidates`)."""
    from .candidates import read_candidates

    check_folder(folder, "rule")
    rows = [row_from(r) for r in read_candidates(folder)]
    if not rows:
        raise UserError(f"{folder / 'candidates.jsonl'}: no prompt has candidates yet",
                        hint="wait for the generate job, or resume it: dpo-tui pairs resume DIR")
    return rows


def read_hand(folder: Path) -> dict[int, HandLabel]:
    """The folder's hand decisions (replayed by :func:`dpo_tui.core.pairs.queue.read_hand_labels`)."""
    from .queue import read_hand_labels

    check_folder(folder, "hand")
    return {int(i): hand_from(d) for i, d in read_hand_labels(folder).items()}


def write_output(folder: Path, result: LabelResult) -> Any:
    """Write ``pairs.jsonl`` atomically, lint it with the data check, and write ``summary.json``.

    Returns the lint :class:`~dpo_tui.core.data.DataReport`; its errors are in the summary, and the file stays
    (it is the operator's data: they may fix it by hand)."""
    from ..data import check_data, write_jsonl
    from ..fsutil import atomic_write_json

    out = folder / PAIRS_FILE
    write_jsonl(result.records, out)
    report = check_data(str(out))
    result.summary["output"] = str(out)
    result.summary["lint"] = {"ok": report.ok, "rows": report.rows_usable,
                              "errors": [f.to_json() for f in report.errors],
                              "warnings": [f.to_json() for f in report.warnings]}
    result.summary["created_at"] = time.time()
    try:
        atomic_write_json(folder / SUMMARY_FILE, result.summary)
    except OSError as exc:
        raise UserError(f"cannot write {folder / SUMMARY_FILE}: {exc.strerror or exc}",
                        hint=f"{out} was written; free space or fix the folder and run label again") from None
    return report


def label_folder(folder: Path | str, *, by: str, rule: Rule | None = None, judge: Labeller | None = None,
                 fmt: str | None = None) -> tuple[LabelResult, Any]:
    """Label a pairs folder and write its output. ``judge`` is a judge :class:`Labeller` (built in the worker).

    ``by`` judge with a rule: the judge decides, the rule is compared (agreement); by rule with a judge the
    other way round; by hand with one of them: that one is compared."""
    folder = Path(folder)
    rule_l = rule_labeller(rule) if rule is not None else None
    if by == "rule":
        decider, compared = rule_l, judge
    elif by == "judge":
        decider, compared = judge, rule_l
    else:
        decider, compared = None, rule_l or judge
    if by != "hand" and decider is None:
        raise UserError(f"--by {by} needs --{by}", hint=RULE_HINT if by == "rule" else "for example --judge shorter")
    rows = read_rows(folder)
    hand = read_hand(folder) if by == "hand" else None
    result = label_rows(rows, by, decider, compared=compared, hand=hand, fmt=output_format(rows, fmt))
    result.summary["rule"] = rule.spec if rule is not None else None
    result.summary["judge"] = judge.name if judge is not None else None
    return result, write_output(folder, result)


def render_summary(summary: Mapping[str, Any]) -> str:
    """The text the CLI prints (and the console shows) for a summary."""
    drops = {k: v for k, v in summary["dropped"].items() if v}
    lines = [f"{summary['pairs']} pairs from {summary['prompts']} prompts ({summary['format']}), decided by "
             f"{summary['decided_by']}"]
    lines.append("dropped: " + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in drops.items()) if drops else "none"))
    if summary.get("empty_candidates"):
        lines.append(f"unusable candidates (empty or cancelled): {summary['empty_candidates']}")
    if summary.get("judge_calls"):
        lines.append("judge: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary["judge_calls"].items()))
    ag = summary.get("agreement")
    if ag:
        share = f"{ag['share'] * 100:.1f}%" if ag["share"] is not None else "n/a"
        lines.append(f"agreement with {ag['with']}: {share} ({ag['agree']} of {ag['compared']}; "
                     f"{ag['undecided']} undecided)")
    lint = summary.get("lint")
    if lint:
        lines.append(f"data check: {'OK' if lint['ok'] else 'NOT USABLE'}, {lint['rows']} usable rows")
        for f in lint["errors"] + lint["warnings"]:
            lines.append(f"  {f['severity']}: line {f['line']}: {f['message']} ({f['code']})")
    if summary.get("output"):
        lines.append(f"wrote {summary['output']}")
    return "\n".join(lines)
