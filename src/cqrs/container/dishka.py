"""The adapter for dishka (4.x path; needs the extra)."""

from cqrs._internal.di.dishka import DishkaCQRSContainer as DishkaCQRSContainer

__all__ = ["DishkaCQRSContainer"]
