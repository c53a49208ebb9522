"""Reading the type arguments a class gave to a generic base class."""

from __future__ import annotations

from typing import Any, get_args, get_origin

__all__ = ["get_generic_args_for_origin"]


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
