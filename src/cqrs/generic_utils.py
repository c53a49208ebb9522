"""Reading generic arguments of handler classes (4.x path)."""

from cqrs._internal.generics import get_generic_args_for_origin as get_generic_args_for_origin

__all__ = ["get_generic_args_for_origin"]
