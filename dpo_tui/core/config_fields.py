"""What kind of value each ``RunConfig`` field holds, read from its type annotation.

The CLI turns it into a flag (``--lora-rank 16``, ``--no-gradient-checkpointing``, ``--gpus 0,1``)
and the console's form into a widget (checkbox, select, text box), so a field added to
``RunConfig`` shows up in both the same way.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from .config import TRL_LOSS_TYPES, RunConfig

Kind = Literal["bool", "choice", "list", "dict", "text"]


@dataclass(frozen=True)
class FieldKind:
    name: str
    kind: Kind
    choices: tuple[str, ...] = ()
    closed: bool = False
    """The choices are the type itself (a ``Literal``): anything else is refused at once. ``loss_type``
    offers TRL's loss types but leaves the check to the config's own validator."""
    item_type: type = str
    """The type of a list's items."""
    scalar: type | None = None
    """``int``, ``float`` or ``str`` for a plain text value; None for anything a flag cannot take as one string."""
    optional: bool = False
    """None is allowed (an empty text box means None)."""


def _kind(name: str, annotation: Any) -> FieldKind:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = origin in (typing.Union, types.UnionType) and len(args) < len(typing.get_args(annotation))
    if optional and len(args) == 1:
        annotation = args[0]
        origin = typing.get_origin(annotation)
        args = list(typing.get_args(annotation))
    if name == "loss_type":
        return FieldKind(name, "choice", TRL_LOSS_TYPES, scalar=str)
    if annotation is bool:
        return FieldKind(name, "bool")
    if origin is typing.Literal:
        return FieldKind(name, "choice", tuple(str(a) for a in args), closed=True, scalar=str)
    if origin is list:
        return FieldKind(name, "list", item_type=args[0] if args else str)
    if origin is dict:
        return FieldKind(name, "dict")
    scalar = annotation if annotation in (int, float, str) else None
    return FieldKind(name, "text", scalar=scalar, optional=optional)


def field_kind(name: str) -> FieldKind:
    """The kind of ``RunConfig.<name>`` (KeyError for an unknown field)."""
    return _kind(name, RunConfig.model_fields[name].annotation)
