"""Column planning and row shapes: which column is the prompt/chosen/rejected/system, and the small helpers
that recognise a row's shape (HH-RLHF transcripts, message lists, chat-template markers)."""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
class Plan:
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


def make_plan(keys: Iterable[str], column_map: dict[str, str]) -> Plan:
    keyset = list(keys)
    present = set(keyset)
    plan = Plan()
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


SPACE = " \n\t\r"
ROLE_CONTENT = operator.itemgetter("role", "content")
_HH_SPLIT = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
TEMPLATE_MARKERS = ("<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>",
                     "[INST]", "<start_of_turn>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<s>", "</s>")


def is_hh(text: str) -> bool:
    return (text.startswith("\n\nHuman:") or text.startswith("Human:")) and "\n\nAssistant:" in text


def parse_hh(text: str) -> list[dict[str, str]]:
    pieces = _HH_SPLIT.split(text)
    # pieces: [before, role, content, role, content, ...]
    msgs = []
    for i in range(1, len(pieces) - 1, 2):
        role = "user" if pieces[i] == "Human" else "assistant"
        msgs.append({"role": role, "content": pieces[i + 1].strip()})
    return msgs


def value_kind(v: Any) -> str:
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


def type_name(v: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(v), type(v).__name__)


def common_prefix(a: list, b: list) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    # when one side is a prefix of the other, TRL's extract_prompt leaks the last shared message into both
    # completions; here the shorter side is simply empty and reported as such
    return i

