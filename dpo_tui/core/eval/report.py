"""An evaluation's result: one versioned JSON file per (run, evaluation) in ``RUN/eval/``.

``dpo-tui eval`` (its worker) writes ``RUN/eval/EVAL_ID.json`` atomically when an evaluation ends;
the runs screen, compare, ``runs --json`` and the Eval view read the newest one. A report compares the
run's tuned adapter against the base on the same held-out material::

    behaviour   answer length in words and tokens (greedy answers; and all sampled answers when
                --samples N > 0), empty / truncated (hit max tokens) / looping answers, and the change
                tuned − base with a paired bootstrap confidence interval
    pairs       implicit-reward accuracy and mean margin on held-out pairs (adapter on/off in one model)
    judge       pairwise win rate of tuned over base, both orders, plus a length-controlled figure
    facts       the share of facts answered correctly by base and by tuned
    prompts     every prompt's greedy answers side by side, with the judge's verdict and the fact check

Unknown fields are ignored and missing optional sections read as None, so an older console reads a newer
report's common part. ``version`` changes only when a field changes meaning.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..fsutil import atomic_write_json

SCHEMA = "dpo-tui.eval"
VERSION = 1
EVAL_DIR = "eval"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Lengths(_Model):
    """Length statistics over one set of answers."""

    n: int = 0
    mean_words: float = 0.0
    median_words: float = 0.0
    p90_words: float = 0.0
    mean_tokens: float = 0.0
    median_tokens: float = 0.0
    p90_tokens: float = 0.0
    empty: int = 0
    """Answers with no words."""
    truncated: int = 0
    """Answers that hit max_new_tokens (finish reason ``length``)."""
    looping: int = 0
    """Answers that repeat an n-gram (see ``dpo_tui.core.eval.stats.is_looping``)."""


class Change(_Model):
    """tuned − base for one measure, with a paired bootstrap confidence interval of the difference."""

    base: float
    tuned: float
    diff: float
    rel: float | None = None
    """diff / base (None when base is 0)."""
    ci: tuple[float, float]
    """Confidence interval of ``diff`` (level ``ci_level``)."""
    ci_level: float = 0.95

    @property
    def ci_excludes_zero(self) -> bool:
        return self.ci[0] > 0 or self.ci[1] < 0


class Behaviour(_Model):
    base: Lengths
    tuned: Lengths
    sampled_base: Lengths | None = None
    sampled_tuned: Lengths | None = None
    words: Change
    """Mean words per greedy answer."""
    tokens: Change
    sampled_words: Change | None = None
    """Mean words over the N sampled answers per prompt (prompt-level means, paired by prompt)."""


class PairAccuracy(_Model):
    source: str
    """The pairs file, or ``eval split of RUN``."""
    n: int
    accuracy: float
    """Share of pairs whose chosen answer gets the higher implicit reward β·(log π − log π_ref)."""
    accuracy_ci: tuple[float, float]
    mean_margin: float
    """Mean of reward(chosen) − reward(rejected), at the run's β."""
    beta: float


class JudgeResult(_Model):
    name: str
    """The judge's label (``shorter``, ``rm:NAME``, ``MODEL@URL``); never a key."""
    n: int
    wins: int
    """Prompts where tuned beat base in both orders."""
    losses: int
    ties: int
    """Equal, or the two orders disagreed (position bias)."""
    no_verdict: int
    """Unusable judge answers (unparsable, timeout, HTTP error): left out of the rates."""
    win_rate: float | None
    """(wins + ties/2) / (wins + losses + ties); None when there is no verdict at all."""
    win_rate_ci: tuple[float, float] | None = None
    length_controlled_win_rate: float | None = None
    """Win rate with the length difference as a covariate (logistic fit), read at equal length."""


class Facts(_Model):
    source: str
    n: int
    base_correct: int
    tuned_correct: int
    change: Change
    """Share correct (0..1), tuned − base."""


class PromptRow(_Model):
    prompt: str
    base: str
    tuned: str
    base_words: int
    tuned_words: int
    base_finish: str = ""
    tuned_finish: str = ""
    verdict: Literal["tuned", "base", "tie"] | None = None
    """The judge's combined verdict (None: no judge, or no verdict)."""
    verdict_reason: str = ""
    expected: str | None = None
    """The fact's expected answer when this prompt came from the facts file."""
    base_ok: bool | None = None
    tuned_ok: bool | None = None


class EvalSettings(_Model):
    prompts_file: str
    prompts: int
    pairs_file: str | None = None
    facts_file: str | None = None
    judge: str | None = None
    samples: int = 0
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0


class EvalReport(_Model):
    schema_: str = Field(default=SCHEMA, alias="schema")
    version: int = VERSION
    id: str
    run_id: str
    checkpoint: str = "final"
    """Which weights were evaluated: ``final`` or a checkpoint folder name."""
    base_model: str
    adapter_path: str
    beta: float | None = None
    created_at: float
    elapsed_s: float | None = None
    device: str = ""
    settings: EvalSettings
    behaviour: Behaviour
    pairs: PairAccuracy | None = None
    judge: JudgeResult | None = None
    facts: Facts | None = None
    prompts: list[PromptRow] = []
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def summary(self) -> dict[str, Any]:
        """The few numbers the runs list, compare and ``runs --json`` show."""
        b = self.behaviour
        out: dict[str, Any] = {
            "eval_id": self.id,
            "words_base": b.words.base,
            "words_tuned": b.words.tuned,
            "words_change": b.words.rel,
            "words_ci": list(b.words.ci),
            "words_ci_excludes_zero": b.words.ci_excludes_zero,
            "pair_accuracy": self.pairs.accuracy if self.pairs else None,
            "pair_margin": self.pairs.mean_margin if self.pairs else None,
            "facts_base": self.facts.change.base if self.facts else None,
            "facts_tuned": self.facts.change.tuned if self.facts else None,
            "win_rate": self.judge.win_rate if self.judge else None,
            "lc_win_rate": self.judge.length_controlled_win_rate if self.judge else None,
            "judge": self.judge.name if self.judge else None,
        }
        return out


class UnreadableReport(Exception):
    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path, self.why = path, why


def eval_dir(run_path: Path) -> Path:
    return Path(run_path) / EVAL_DIR


def report_path(run_path: Path, eval_id: str) -> Path:
    return eval_dir(run_path) / f"{eval_id}.json"


def write_report(run_path: Path, report: EvalReport) -> Path:
    """Atomically write ``RUN/eval/ID.json`` (readers see the old file or the whole new one)."""
    folder = eval_dir(run_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = report_path(run_path, report.id)
    atomic_write_json(path, report.to_json())
    return path


MAX_REPORT_BYTES = 64 << 20


def read_report(path: Path) -> EvalReport:
    """One report; :class:`UnreadableReport` says why not (never a raw exception)."""
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise UnreadableReport(path, f"larger than {MAX_REPORT_BYTES >> 20} MiB; not an evaluation report")
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except UnicodeDecodeError:
        raise UnreadableReport(path, "not UTF-8 text") from None
    except ValueError as exc:
        raise UnreadableReport(path, f"not valid JSON ({exc})") from None
    except RecursionError:
        raise UnreadableReport(path, "nested too deeply; not an evaluation report") from None
    except OSError as exc:
        raise UnreadableReport(path, exc.strerror or str(exc)) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UnreadableReport(path, f"not a {SCHEMA} report")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise UnreadableReport(path, f"report version {data.get('version')!r} is newer than this dpo-tui reads ({VERSION})")
    try:
        return EvalReport.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise UnreadableReport(path, f"{where}: {first.get('msg')}") from None


def list_reports(run_path: Path) -> tuple[list[EvalReport], list[UnreadableReport]]:
    """All readable reports of a run, oldest first, and the unreadable ones with why."""
    folder = eval_dir(run_path)
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except OSError:
        return [], []
    good, bad = [], []
    for path in files:
        try:
            good.append(read_report(path))
        except UnreadableReport as exc:
            bad.append(exc)
    good.sort(key=lambda r: (r.created_at, r.id))
    return good, bad


def latest_report(run_path: Path) -> EvalReport | None:
    good, _bad = list_reports(run_path)
    return good[-1] if good else None


def new_eval_id(now: float | None = None) -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
