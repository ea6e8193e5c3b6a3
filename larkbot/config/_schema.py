"""Helpers that read the shape of the settings models, shared by the loader and reports."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, SecretStr

__all__: list[str] = []

Key = tuple[str | int, ...]


def dotted(path: Key) -> str:
    """Render ``("agent", "profiles", 0, "name")`` as ``agent.profiles[0].name``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def shape_of(annotation: Any) -> tuple[str, type[BaseModel] | None, Any]:
    """Classify a field type as ``scalar``, ``model``, ``list`` or ``dict``.

    Returns the kind, the model class found inside (or ``None``) and the bare type:
    the item type of a list, the value type of a dict, the type itself otherwise.
    ``Optional`` and ``Annotated`` wrappers are looked through.
    """
    annotation = unwrap(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        item = unwrap(item)
        return "list", item if _is_model(item) else None, item
    if origin is dict:
        value = unwrap(typing.get_args(annotation)[1])
        return "dict", value if _is_model(value) else None, value
    if _is_model(annotation):
        return "model", annotation, annotation
    return "scalar", None, annotation


def unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``Optional`` from a type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def is_secret(annotation: Any) -> bool:
    """Whether a field holds a secret (its value must never be shown)."""
    return unwrap(annotation) is SecretStr


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
