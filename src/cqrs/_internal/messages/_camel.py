"""Dataclass <-> camelCase dict conversion for the dataclass event family.

``DCEvent.to_dict()`` and ``DCEvent.from_dict()`` go through this module. The wire shape is
the one python-cqrs 4.x produced: field names in camelCase, nested dataclasses as nested
dicts, UUIDs as 32-character hex strings, dates and times as ISO 8601 strings, enums as their
values. Reading accepts camelCase or snake_case keys and rebuilds the values that the field
annotations describe (UUID, datetime, nested dataclasses, lists of them, ``X | None``...).

Field annotations are resolved once per class with ``typing.get_type_hints`` and cached.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple, TypeVar
from uuid import UUID

from pydantic import BaseModel

__all__ = ["from_camel_dict", "to_camel", "to_camel_dict", "to_snake"]

_T = TypeVar("_T")


def to_camel(name: str) -> str:
    """Return the camelCase form of a snake_case identifier: ``"order_id"`` -> ``"orderId"``.

    Leading underscores are kept (``"_x_y"`` -> ``"_xY"``). A part that starts with a digit
    has no upper-case form, so ``"a_1"`` -> ``"a1"`` cannot be converted back; such names are
    still found by ``from_camel_dict`` because it looks fields up by their converted names.
    """
    head = len(name) - len(name.lstrip("_"))
    first, *rest = name[head:].split("_")
    return name[:head] + first + "".join(part[:1].upper() + part[1:] for part in rest)


def to_snake(name: str) -> str:
    """Return the snake_case form of a camelCase identifier: ``"orderId"`` -> ``"order_id"``.

    Every upper-case letter after the first character starts a new lower-case part, so
    PascalCase works too (``"OrderId"`` -> ``"order_id"``) and acronyms split per letter
    (``"userID"`` -> ``"user_i_d"``). Names already in snake_case come back unchanged.
    """
    head = len(name) - len(name.lstrip("_"))
    body = name[head:]
    return (
        name[:head]
        + body[:1].lower()
        + "".join(f"_{char.lower()}" if char.isupper() else char for char in body[1:])
    )


class _Field(NamedTuple):
    name: str
    camel: str
    type: Any
    init: bool


class _Plan(NamedTuple):
    fields: tuple[_Field, ...]
    by_key: dict[str, _Field]


_plans: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _plans.get(cls)
    if plan is None:
        plan = _plans[cls] = _build_plan(cls)
    return plan


def _build_plan(cls: type) -> _Plan:
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):
        # An annotation that cannot be evaluated (a name local to a function, under
        # ``from __future__ import annotations``) leaves the class's fields uncoerced.
        hints = {}
    bindings = _typevar_bindings(cls)
    fields: list[_Field] = []
    for f in dataclasses.fields(cls):
        tp = hints.get(f.name, f.type if not isinstance(f.type, str) else Any)
        if isinstance(tp, TypeVar):
            tp = bindings.get(tp, Any)
        fields.append(_Field(f.name, to_camel(f.name), tp, f.init))
    by_key: dict[str, _Field] = {}
    for f in fields:
        by_key.setdefault(f.camel, f)
    for f in fields:
        by_key[f.name] = f
    return _Plan(tuple(fields), by_key)


def _typevar_bindings(cls: type) -> dict[Any, Any]:
    """Map the type variables of ``cls``'s generic bases to what subclasses bound them to.

    ``class Created(DCNotificationEvent[Order])`` binds ``PayloadT`` to ``Order``.
    """
    bindings: dict[Any, Any] = {}
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            params: tuple[Any, ...] = getattr(typing.get_origin(base), "__parameters__", ())
            for param, arg in zip(params, typing.get_args(base), strict=False):
                bindings.setdefault(
                    param, bindings.get(arg, arg) if isinstance(arg, TypeVar) else arg
                )
    return {param: arg for param, arg in bindings.items() if not isinstance(arg, TypeVar)}


def to_camel_dict(obj: Any) -> dict[str, Any]:
    """Return dataclass instance ``obj`` as a JSON-ready dict with camelCase keys.

    Recurses into nested dataclasses, lists, tuples, sets and dicts (dict keys are kept as
    they are). UUID -> ``uuid.hex``; datetime, date, time -> ``isoformat()``; Enum -> its
    value; Decimal -> ``str``; pydantic models -> ``model_dump(mode="json")``. Anything else is
    returned unchanged. Raises ``TypeError`` if ``obj`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"to_camel_dict() expects a dataclass instance, got {type(obj).__name__}")
    return {f.camel: _dump(getattr(obj, f.name)) for f in _plan(type(obj)).fields}


def _dump(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, UUID):
        return value.hex
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_camel_dict(value)
    if isinstance(value, Mapping):
        items = typing.cast(Mapping[Any, Any], value).items()
        return {key: _dump(item) for key, item in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [_dump(item) for item in typing.cast(list[Any], value)]
    return value


def from_camel_dict(cls: type[_T], data: Mapping[str, Any]) -> _T:
    """Build dataclass ``cls`` from ``data`` whose keys are camelCase or snake_case.

    Values are converted by the field's annotation where that is unambiguous: UUID from a hex
    or dashed string, datetime/date/time from an ISO string, Enum and Decimal from their
    values, nested dataclasses and pydantic models from dicts, and the items of ``list``,
    ``tuple``, ``set``, ``dict`` and ``X | None`` annotations. A field typed by a bare type
    variable (``payload: PayloadT``) is coerced only when a subclass bound the variable
    (``class E(DCNotificationEvent[Order])``); otherwise its value is kept as given.
    Unknown keys and fields declared with ``init=False`` are ignored.

    Raises ``TypeError`` when a required field is missing (from the dataclass constructor),
    ``ValueError`` when a value cannot be converted (a malformed UUID or ISO string), and
    pydantic's ``ValidationError`` for an invalid nested pydantic model.
    """
    by_key = _plan(cls).by_key
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        f = by_key.get(key) or by_key.get(to_snake(key))
        if f is not None and f.init:
            kwargs[f.name] = _load(value, f.type)
    return cls(**kwargs)


def _load(value: Any, tp: Any) -> Any:
    if value is None or tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is None:
        return _load_plain(value, tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _load(value, args[0])
    if origin is typing.Union or origin is types.UnionType:
        options = [arg for arg in args if arg is not type(None)]
        return _load(value, options[0]) if len(options) == 1 else value
    if origin in (list, set, frozenset, tuple) and isinstance(
        value, list | tuple | set | frozenset
    ):
        items = list(typing.cast(Collection[Any], value))
        if origin is not tuple:
            item_types = [args[0] if args else Any] * len(items)
        elif len(args) == 2 and args[1] is Ellipsis:
            item_types = [args[0]] * len(items)
        elif len(args) == len(items):
            item_types = list(args)
        else:
            item_types = [Any] * len(items)
        loaded = (_load(item, item_tp) for item, item_tp in zip(items, item_types, strict=True))
        return typing.cast(Callable[[Iterable[Any]], Any], origin)(loaded)
    if origin is dict and isinstance(value, Mapping) and len(args) == 2:
        pairs = typing.cast(Mapping[Any, Any], value).items()
        return {_load(key, args[0]): _load(item, args[1]) for key, item in pairs}
    return typing.cast(Any, value)


def _load_plain(value: Any, tp: Any) -> Any:
    if isinstance(value, Mapping):
        fields = typing.cast(Mapping[str, Any], value)
        if dataclasses.is_dataclass(tp):
            return from_camel_dict(typing.cast(type[Any], tp), fields)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp.model_validate(fields)
        return fields
    if isinstance(value, str):
        if tp is UUID:
            return UUID(value)
        if tp is datetime:
            return datetime.fromisoformat(value)
        if tp is date:
            return date.fromisoformat(value)
        if tp is time:
            return time.fromisoformat(value)
    if isinstance(tp, type) and issubclass(tp, Enum | Decimal):
        return value if isinstance(value, tp) else tp(value)
    return value
