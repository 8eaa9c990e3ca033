"""``answers.jsonl``: the raw results of an evaluation job, one line per finished (section, index).

A line holds the answers of the base and of every target for one item, so a resumed job skips an item
found here and never answers it twice. A line cut by a kill is ignored when read and cut off before
the next append; the last line for a (section, index) wins.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...core.errors import UserError
from ...core.eval.jobs import ANSWERS_FILE, EvalPlan, check_answers_file
from ...core.eval.raw import Answer, PairScore, PromptResult
from ...core.fsutil import JSON_ERRORS
from ...core.judge import Verdict

Key = tuple[str, int]


def read_answers(job_dir: Path) -> dict[Key, dict[str, Any]]:
    """Every readable line by (section, index); damaged lines are skipped. A UserError for a file that is no
    answer log (a folder, a device, a FIFO, or too large to read; see :func:`check_answers_file`)."""
    out: dict[Key, dict[str, Any]] = {}
    check_answers_file(job_dir)
    try:
        data = (Path(job_dir) / ANSWERS_FILE).read_bytes()
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise UserError(f"Cannot read {Path(job_dir) / ANSWERS_FILE}: {exc.strerror or exc}") from None
    for raw in data.split(b"\n"):
        try:
            line = json.loads(raw)
            key = (str(line["section"]), int(line["index"]))
        except (KeyError, TypeError, OverflowError, *JSON_ERRORS):
            continue
        out[key] = line
    return out


class AnswerLog:
    """Appends lines, flushed and synced per chunk, after cutting a torn last line."""

    def __init__(self, job_dir: Path) -> None:
        path = Path(job_dir) / ANSWERS_FILE
        check_answers_file(job_dir)
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(path, "r+b") as fh:
                    fh.truncate(data.rfind(b"\n") + 1)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held for the job's life

    def append(self, lines: list[dict[str, Any]]) -> None:
        self._fh.write("".join(json.dumps(line, allow_nan=False) + "\n" for line in lines))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def answer_json(text: str, tokens: int, finish: str) -> dict[str, Any]:
    return {"text": text, "tokens": tokens, "finish": finish}


def _answer(obj: dict[str, Any]) -> Answer:
    return Answer(str(obj.get("text", "")), int(obj.get("tokens", 0)), str(obj.get("finish", "")))


def results_for(plan: EvalPlan, answers: dict[Key, dict[str, Any]], name: str, section: str) -> list[PromptResult]:
    """One target's :class:`PromptResult` list for ``prompts`` or ``facts``, in item order."""
    out = []
    for (sec, _i), line in sorted(answers.items()):
        if sec != section or name not in line.get("targets", {}):
            continue
        mine = line["targets"][name]
        verdict = mine.get("verdict")
        out.append(PromptResult(
            prompt=str(line.get("prompt", "")), base=_answer(line["base"]), tuned=_answer(mine["greedy"]),
            base_samples=[_answer(a) for a in line.get("base_samples", [])],
            tuned_samples=[_answer(a) for a in mine.get("samples", [])],
            verdict=Verdict(verdict.get("winner"), str(verdict.get("reason", ""))) if isinstance(verdict, dict) else None,
            expected=line.get("expected"), match=str(line.get("match") or "contains")))
    return out


def pair_scores(answers: dict[Key, dict[str, Any]], name: str) -> list[PairScore]:
    out = []
    for (sec, _i), line in sorted(answers.items()):
        mine = line.get("targets", {}).get(name) if sec == "pairs" else None
        if mine is not None:
            out.append(PairScore(float(mine["chosen_reward"]), float(mine["rejected_reward"])))
    return out
