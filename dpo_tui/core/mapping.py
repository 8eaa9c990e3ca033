"""``FIELD=COLUMN`` column mappings, as ``--map`` (``train``, ``ladder``, ``data``) and the form's column map take them."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import Problem, UserError

EXPECTED = "expected FIELD=COLUMN, e.g. prompt=question"


def parse_map(items: Iterable[str] | str | None, source: str = "--map") -> dict[str, str]:
    """``["prompt=question", "system=sys"]`` (or ``"prompt=q, chosen=good"``) → ``{"prompt": "question", ...}``.

    Each item may hold several pairs separated by commas; blank pairs are skipped. A pair without
    ``=``, or with an empty side, raises a :class:`UserError` naming it (``source`` says where it
    was typed: ``--map`` or the form's ``column_map``): a silently dropped mapping would train on
    the wrong columns.
    """
    if isinstance(items, str):
        items = [items]
    out: dict[str, str] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise UserError(f"bad {source} {part.strip()!r}: {EXPECTED}", problems=[Problem(EXPECTED, field=source)])
            out[key.strip()] = value.strip()
    return out
