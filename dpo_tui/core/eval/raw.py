"""What the evaluation worker measures, before statistics: answers, judge verdicts, pair rewards.

The worker (``dpo_tui.worker.eval``) fills these; :func:`dpo_tui.core.eval.build.build_report` turns them
into an :class:`dpo_tui.core.eval.report.EvalReport`. Keeping the arithmetic on this side of the
boundary makes it testable without a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..judge import Verdict


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: int
    finish: str
    """``eos``, ``stop``, ``length`` (hit max_new_tokens) or ``cancelled``."""


@dataclass
class PromptResult:
    """One held-out prompt: greedy answers of base and tuned, and their sampled answers (one per seed)."""

    prompt: str
    base: Answer
    tuned: Answer
    base_samples: list[Answer] = field(default_factory=list)
    tuned_samples: list[Answer] = field(default_factory=list)
    verdict: Verdict | None = None
    """The judge's combined verdict with ``a`` = tuned and ``b`` = base (both orders asked); None: no judge."""
    expected: str | None = None
    """For a facts prompt: the expected answer."""
    match: str = "contains"
    """For a facts prompt: how ``expected`` is matched (``contains``, ``regex`` or ``exact``)."""


@dataclass(frozen=True)
class PairScore:
    """Implicit rewards β·(log π_tuned − log π_base) of one held-out pair's two answers."""

    chosen_reward: float
    rejected_reward: float

    @property
    def margin(self) -> float:
        return self.chosen_reward - self.rejected_reward
