"""What an evaluation answers: the behaviour prompts, the facts and the held-out pairs of a plan.

Prompts come from the plan's prompts file, or, for :data:`~dpo_tui.core.eval.jobs.EVAL_SPLIT`, from the
first run's eval split. Each run's eval split is recomputed by the trainer's own loader
(:func:`dpo_tui.worker.train_setup.load_data`), so the rows are exactly those the trainer held out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.errors import UserError
from ...core.eval.jobs import EVAL_SPLIT, EvalPlan
from ...core.runs import Run

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Prompt:
    messages: Messages
    text: str
    expected: str | None = None
    match: str = "contains"


@dataclass(frozen=True)
class Pair:
    messages: Messages
    chosen: str
    rejected: str


class _Quiet:
    """The trainer's loader reports data warnings as run events; an evaluation has already been checked."""

    def emit(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def eval_split_rows(run_path: str) -> list[dict[str, Any]]:
    from ..train_failures import RunFailed
    from ..train_setup import load_data

    run = Run(Path(run_path))
    try:
        _train, evald, _n = load_data(run.config(), _Quiet())  # type: ignore[arg-type]
    except RunFailed as exc:
        raise UserError(f"Run {run.id}: cannot rebuild its eval split: {exc.message}", hint=exc.hint or None) from None
    return evald.to_list() if evald is not None else []


def _messages(prompt: Any) -> Messages:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt.strip()}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def _answer(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        return str(value[-1].get("content", ""))
    return ""


def _pairs_of(rows: list[dict[str, Any]]) -> list[Pair]:
    return [Pair(_messages(r["prompt"]), _answer(r["chosen"]), _answer(r["rejected"])) for r in rows]


def load_prompts(plan: EvalPlan) -> list[Prompt]:
    if plan.prompts_file == EVAL_SPLIT:
        rows = eval_split_rows(plan.targets[0].run_path)
        if not rows:
            raise UserError(f"Run {plan.targets[0].run_id} has an empty eval split", hint="give --prompts FILE")
        out = []
        for r in rows:
            msgs = _messages(r["prompt"])
            out.append(Prompt(msgs, msgs[-1]["content"]))
        return out
    from ...core.prompts_file import read_prompts

    return [Prompt(p.as_messages(), p.text) for p in read_prompts(plan.prompts_file)]


def load_facts(plan: EvalPlan) -> list[Prompt]:
    if not plan.facts_file:
        return []
    from ...core.eval.facts import read_facts

    return [Prompt([{"role": "user", "content": f.prompt}], f.prompt, f.expected, f.match)
            for f in read_facts(Path(plan.facts_file))]


def load_pairs(plan: EvalPlan) -> dict[str, list[Pair]]:
    """Held-out pairs per target name: the pairs file for all, or each run's own eval split."""
    if plan.pairs_file:
        from ...core.data import load_preference_data

        pairs = _pairs_of(load_preference_data(plan.pairs_file).rows)
        return {t.name: pairs for t in plan.targets}
    if plan.pairs_from_eval_split:
        return {t.name: _pairs_of(eval_split_rows(t.run_path)) for t in plan.targets}
    return {}


def pairs_source(plan: EvalPlan, run_id: str) -> str | None:
    if plan.pairs_file:
        return plan.pairs_file
    return f"eval split of {run_id}" if plan.pairs_from_eval_split else None
