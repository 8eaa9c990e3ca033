"""Build a judge from its spec: rules, the endpoint client or the reward model, by kind.

The spec grammar and the rule judges are in :mod:`dpo_tui.core.judge` (pure); the endpoint client is in
:mod:`dpo_tui.core.judge_endpoint` (stdlib only) and the reward model in :mod:`dpo_tui.worker.judge_rm`
(torch, imported only when a reward model is asked for). This is the one place that turns any spec into a
:class:`dpo_tui.core.judge.Judge`, for evaluation and for pair labelling alike.
"""

from __future__ import annotations

from ..core.judge import Judge, JudgeSpec, RuleJudge, parse_judge_spec
from ..core.judge_endpoint import EndpointJudge


def build_judge(spec: JudgeSpec | str, device: str = "auto") -> Judge:
    """The judge for ``spec``; a :class:`dpo_tui.core.errors.UserError` when it cannot be built.

    ``device`` only matters for a reward model (``auto``: the GPU when there is one).
    """
    if isinstance(spec, str):
        spec = parse_judge_spec(spec)
    if spec.kind in ("rule", "regex"):
        return RuleJudge(spec)
    if spec.kind == "endpoint":
        return EndpointJudge(spec)
    from .judge_rm import RewardModelJudge

    return RewardModelJudge(spec, device=device)
