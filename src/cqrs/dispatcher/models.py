"""Dispatch results (4.x path); ``SagaDispatchResult`` comes with sagas."""

from cqrs._internal.dispatch.dispatchers import RequestDispatchResult as RequestDispatchResult

__all__ = ["RequestDispatchResult"]
