"""One helper for 4.x module attributes that we keep only for compatibility."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["ModuleGetattr", "deprecated_attributes"]

ModuleGetattr = Callable[[str], Any]
"""The type of a module-level ``__getattr__`` (PEP 562)."""


def deprecated_attributes(
    module: str, attributes: dict[str, tuple[Callable[[], Any], str]]
) -> ModuleGetattr:
    """Build a module ``__getattr__`` serving deprecated attributes.

    ``attributes`` maps a name to ``(factory, advice)``. Reading the name warns with a
    ``DeprecationWarning`` that names ``module.name`` and gives ``advice``, then returns what
    the factory makes (called once; the value is cached). Unknown names raise AttributeError.
    """
    cache: dict[str, Any] = {}

    def __getattr__(name: str) -> Any:
        entry = attributes.get(name)
        if entry is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        factory, advice = entry
        warnings.warn(
            f"{module}.{name} is deprecated and kept only for python-cqrs 4.x code; {advice}",
            DeprecationWarning,
            stacklevel=2,
        )
        if name not in cache:
            cache[name] = factory()
        return cache[name]

    return __getattr__
