"""Reading the type arguments a class gave to a generic base class, and matching them.

:func:`get_generic_args_for_origin` is the 4.x helper (``cqrs.generic_utils``).
:func:`resolve_type_args` and :func:`type_accepts` are what the maps use to check that a
handler was written for the message type it is bound to: the first follows type variables
through intermediate generic classes, the second understands ``Any``, type variables, unions,
``Annotated``, typing generic aliases and pydantic's parametrised models. Both are lenient:
a form they cannot judge (a ``Literal``, an unresolvable forward reference, a protocol)
counts as a match, so that they only reject what is certainly wrong.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, ForwardRef, TypeVar, cast, get_args, get_origin

import typing_extensions

__all__ = ["describe_type", "get_generic_args_for_origin", "resolve_type_args", "type_accepts"]

_ANY: tuple[Any, ...] = (typing.Any, typing_extensions.Any)
_UNIONS: tuple[Any, ...] = (typing.Union, types.UnionType)
_ANNOTATED: tuple[Any, ...] = (typing.Annotated, typing_extensions.Annotated)
_MAX_DEPTH = 8


def get_generic_args_for_origin(
    klass: type[Any],
    origin_classes: tuple[type[Any], ...] | type[Any],
    min_args: int = 1,
) -> tuple[Any, ...] | None:
    """Return the type arguments ``klass`` passed to one of ``origin_classes``.

    Walks the class's MRO and looks at each class's ``__orig_bases__`` (the bases as written,
    e.g. ``RequestHandler[CreateUser, UserCreated]``). Returns the first argument tuple with at
    least ``min_args`` entries whose origin is a subclass of one of ``origin_classes``, or
    ``None`` when the class never parametrised such a base.
    """
    origins = origin_classes if isinstance(origin_classes, tuple) else (origin_classes,)
    for cls in klass.__mro__:
        for base in cls.__dict__.get("__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, origins):
                args = get_args(base)
                if len(args) >= min_args:
                    return args
    return None


def resolve_type_args(klass: type[Any], generic_base: type[Any]) -> tuple[Any, ...] | None:
    """Return the arguments ``klass`` gives to the parameters of ``generic_base``.

    Type variables are followed through intermediate generic classes: with
    ``class Base(RequestHandler[R, S])`` and ``class Handler(Base[Ping, Pong])`` the result
    for ``RequestHandler`` is ``(Ping, Pong)``. A parameter that no class fills stays a
    ``TypeVar``. Pydantic's parametrised models (``NotificationEvent[Payload]``) count as
    parametrisations of their generic model. Returns ``None`` when ``klass`` never
    parametrised ``generic_base`` (it is not a subclass, or only the bare class was used).
    Never raises for odd bases; those are skipped.
    """
    return _search(klass, generic_base, {}, 0)


def type_accepts(declared: Any, actual: Any, namespace: Mapping[str, Any] | None = None) -> bool:
    """True unless a message of type ``actual`` certainly does not fit ``declared``.

    ``declared`` is what a handler was written for (a class, ``Any``, a ``TypeVar``, a union,
    ``Annotated[...]``, a generic alias such as ``NotificationEvent[Payload]``, a forward
    reference resolved in ``namespace``); ``actual`` is the bound message type. A subclass
    fits its base class; a parametrised generic fits its bare class and the other way round
    (the bare class leaves its arguments open); two parametrisations of one generic fit when
    their arguments do. Forms this function cannot judge fit. Never raises.
    """
    if isinstance(declared, type) and isinstance(actual, type):
        try:
            if issubclass(actual, declared):
                return True
        except TypeError:
            pass
    return _accepts(declared, actual, namespace, 0)


def describe_type(tp: Any) -> str:
    """A short readable name for ``tp``: ``Ping``, ``Ping | Pong``, ``~T``, ``Any``."""
    if tp is Ellipsis:
        return "..."
    if tp in _ANY:
        return "Any"
    if isinstance(tp, type):
        return tp.__qualname__.rpartition("<locals>.")[2]
    if isinstance(tp, TypeVar):
        return f"~{tp.__name__}"
    if isinstance(tp, ForwardRef):
        return repr(tp.__forward_arg__)
    origin = get_origin(tp)
    if origin in _UNIONS:
        return " | ".join(describe_type(arg) for arg in get_args(tp))
    if origin in _ANNOTATED:
        return describe_type(get_args(tp)[0])
    if isinstance(origin, type):
        return f"{describe_type(origin)}[{', '.join(describe_type(a) for a in get_args(tp))}]"
    return repr(tp).replace("typing.", "")


def _search(
    cls: type[Any], target: type[Any], names: dict[Any, Any], depth: int
) -> tuple[Any, ...] | None:
    if depth > _MAX_DEPTH * 4:
        return None
    parametrised = _pydantic_parametrised(cls)
    if parametrised is not None:
        origin, args = parametrised
        args = _substitute(args, names)
        if origin is target:
            return args or None
        if _is_subclass(origin, target):
            return _search(origin, target, _name_parameters(origin, args), depth + 1)
    bases: tuple[Any, ...] = cls.__dict__.get("__orig_bases__", cls.__bases__)
    for base in bases:
        origin = get_origin(base)
        args: tuple[Any, ...] = ()
        if origin is None:
            origin = base
        else:
            args = _substitute(get_args(base), names)
        if not isinstance(origin, type) or not _is_subclass(origin, target):
            continue
        if origin is target:
            return args or None
        found = _search(origin, target, _name_parameters(origin, args), depth + 1)
        if found is not None:
            return found
    return None


def _pydantic_parametrised(cls: type[Any]) -> tuple[type[Any], tuple[Any, ...]] | None:
    """``(generic model, arguments)`` for a pydantic ``Model[Args]`` class, else ``None``."""
    metadata: Any = cls.__dict__.get("__pydantic_generic_metadata__")
    if not isinstance(metadata, Mapping):
        return None
    origin: Any = cast(Mapping[str, Any], metadata).get("origin")
    if not isinstance(origin, type):
        return None
    return origin, tuple(cast(Mapping[str, Any], metadata).get("args", ()))


def _name_parameters(origin: type[Any], args: tuple[Any, ...]) -> dict[Any, Any]:
    parameters: tuple[Any, ...] = getattr(origin, "__parameters__", ())
    if not args or len(parameters) != len(args):
        return {}
    return dict(zip(parameters, args, strict=True))


def _substitute(args: tuple[Any, ...], names: dict[Any, Any]) -> tuple[Any, ...]:
    if not names:
        return args
    return tuple(_substitute_one(arg, names) for arg in args)


def _substitute_one(arg: Any, names: dict[Any, Any]) -> Any:
    if isinstance(arg, TypeVar):
        return names.get(arg, arg)
    free: tuple[Any, ...] = getattr(arg, "__parameters__", ())
    if not free or (isinstance(arg, type) and _pydantic_parametrised(arg) is None):
        return arg
    try:
        return cast(Any, arg)[tuple(names.get(parameter, parameter) for parameter in free)]
    except Exception:
        return arg


def _accepts(declared: Any, actual: Any, namespace: Mapping[str, Any] | None, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        return True
    declared = _strip_annotated(declared)
    actual = _strip_annotated(actual)
    if declared in _ANY or actual in _ANY or _same(declared, actual):
        return True
    if isinstance(declared, str | ForwardRef):
        resolved = _resolve_reference(declared, namespace)
        return True if resolved is None else _accepts(resolved, actual, namespace, depth + 1)
    if isinstance(declared, TypeVar):
        if declared.__constraints__:
            return any(_accepts(c, actual, namespace, depth + 1) for c in declared.__constraints__)
        bound: Any = declared.__bound__
        return bound is None or _accepts(bound, actual, namespace, depth + 1)
    if isinstance(actual, TypeVar):
        return True
    if get_origin(declared) in _UNIONS:
        return any(_accepts(arg, actual, namespace, depth + 1) for arg in get_args(declared))
    if get_origin(actual) in _UNIONS:
        return all(_accepts(declared, arg, namespace, depth + 1) for arg in get_args(actual))
    declared_class, declared_args = _split(declared)
    actual_class, actual_args = _split(actual)
    if declared_class is None or actual_class is None:
        return True
    if not _is_subclass(actual_class, declared_class):
        return False
    if not declared_args:
        return True
    if isinstance(actual, type):
        found = resolve_type_args(actual, declared_class)
    elif actual_class is declared_class:
        found = actual_args or None
    else:
        found = resolve_type_args(actual_class, declared_class)
    if found is None or len(found) != len(declared_args):
        return True
    return all(
        _accepts(want, have, namespace, depth + 1)
        for want, have in zip(declared_args, found, strict=True)
    )


def _same(left: Any, right: Any) -> bool:
    try:
        return bool(left is right or left == right)
    except Exception:
        return False


def _strip_annotated(tp: Any) -> Any:
    while get_origin(tp) in _ANNOTATED:
        tp = get_args(tp)[0]
    return tp


def _split(tp: Any) -> tuple[type[Any] | None, tuple[Any, ...]]:
    """``(class, arguments)`` of a class, a pydantic ``Model[Args]`` or a typing alias;
    ``(None, ())`` for a form that has no class to compare."""
    if isinstance(tp, type):
        parametrised = _pydantic_parametrised(tp)
        return parametrised if parametrised is not None else (tp, ())
    origin = get_origin(tp)
    if isinstance(origin, type):
        return origin, get_args(tp)
    return None, ()


def _resolve_reference(reference: str | ForwardRef, namespace: Mapping[str, Any] | None) -> Any:
    """The object a forward reference names in ``namespace`` (dotted names only), or None."""
    name = reference if isinstance(reference, str) else reference.__forward_arg__
    if namespace is None or not all(part.isidentifier() for part in name.split(".")):
        return None
    head, *rest = name.split(".")
    found: Any = namespace.get(head)
    for part in rest:
        found = getattr(found, part, None)
    return found


def _is_subclass(cls: Any, base: Any) -> bool:
    """``issubclass`` that says True when the check itself is impossible (protocols...)."""
    try:
        return issubclass(cls, base)
    except TypeError:
        return True
