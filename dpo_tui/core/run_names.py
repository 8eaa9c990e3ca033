"""Run ids that say what this run changed: ``…-tiny-chat-b0.1-r16-lr1e-4`` rather than five runs
all named ``…-tiny-chat-b0.1``. Pure: the caller passes the previous run's config."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from .numfmt import num

# (field, tag) in the order an operator usually varies them. β and the model are always in the id.
_TAGS: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("loss_type", str),
    ("method", str),
    ("lora_rank", lambda v: f"r{v}"),
    ("learning_rate", lambda v: f"lr{num(v, width=5)}"),
    ("max_length", lambda v: f"len{v}"),
    ("per_device_batch_size", lambda v: f"bs{v}"),
    ("max_steps", lambda v: f"s{v}"),
    ("num_epochs", lambda v: f"ep{num(v)}"),
    ("lora_alpha", lambda v: f"a{v}"),
    ("seed", lambda v: f"seed{v}"),
    ("dataset", lambda v: "data-" + Path(str(v).rstrip("/")).name),
)
MAX_TAGS = 3


def _clean(tag: str) -> str:
    return re.sub(r"[^a-z0-9.+-]+", "-", tag.lower()).strip("-")[:24]


def difference_tags(config: Any, previous: Any | None) -> list[str]:
    """Short tags for the settings ``config`` changes from ``previous`` (at most ``MAX_TAGS``); none
    without a previous run. Fields either config lacks are skipped."""
    if previous is None:
        return []
    tags = []
    for field, tag in _TAGS:
        mine, theirs = getattr(config, field, None), getattr(previous, field, None)
        if mine is None or mine == theirs or (field in ("lora_rank", "lora_alpha") and getattr(config, "method", "") == "full"):
            continue
        cleaned = _clean(tag(mine))
        if cleaned:
            tags.append(cleaned)
        if len(tags) == MAX_TAGS:
            break
    return tags


def run_id_for(config: Any, previous: Any | None, model_slug: str, now: datetime | None = None) -> str:
    """``timestamp-model-bβ[-what differs][-name]``."""
    now = now or datetime.now()
    parts = [now.strftime("%Y%m%d-%H%M%S"), model_slug, f"b{config.beta:g}", *difference_tags(config, previous)]
    if getattr(config, "name", ""):
        parts.append(config.name)
    return "-".join(parts)
