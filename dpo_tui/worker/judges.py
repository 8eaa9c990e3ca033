"""Build a judge from its spec: rules here, the endpoint client and the reward model by kind.

The spec grammar and the rule judges are in :mod:`dpo_tui.core.judge` (pure); this is the one place that
turns any spec into a :class:`dpo_tui.core.judge.Judge`, for evaluation and for pair labelling alike.
"""

from __future__ import annotations

from ..core.errors import UserError
from ..core.judge import Judge, JudgeSpec, RuleJudge, parse_judge_spec


def build_judge(spec: JudgeSpec | str) -> Judge:
    if isinstance(spec, str):
        spec = parse_judge_spec(spec)
    if spec.kind in ("rule", "regex"):
        return RuleJudge(spec)
    raise UserError(f"The {spec.kind.replace('_', ' ')} judge is not available in this build", hint="use shorter, longer or regex:")
