"""The demo's domain: commands, their streamed results, events and handlers. No web code.

Two streaming commands:

* ``ProcessOrders``: one ``OrderProcessed`` per order. Per order the handler emits two domain
  events (``OrderShipped``, ``InvoiceIssued``, handled in this process) and one notification
  event (``order_shipped``, published to the message broker). The warehouse refuses an order
  whose id starts with ``REJECT``: the handler raises ``OrderRejected``, a domain error whose
  message is meant for the client (the app lists it in ``SSESettings.safe_errors``), so the
  page shows which order was refused and why.
* ``ProcessFilesCommand``: the command of the "FastAPI Integration" page, one
  ``FileProcessed`` per file, with a ``FileScanned`` domain event and a ``file_processed``
  notification per file.

Under the mediator's default events policy (``before_item``) an item reaches the consumer
only after the events emitted for it are handled and published, so a result can list them as
done. Every handler records what it did in the :class:`Ledger`, which the app shows at
``GET /api/stats``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import typing

import pydantic

import cqrs

# An id the page or a client sends: short, non-empty text.
ItemId = typing.Annotated[str, pydantic.Field(min_length=1, max_length=64)]


@dataclasses.dataclass
class DemoSettings:
    """Knobs of the demo, shared by the handlers (bound in the DI container)."""

    item_delay: float = 0.4
    """Seconds of "work" per order or file, so that a person sees the progress bar fill."""


@dataclasses.dataclass
class Ledger:
    """What the handlers did, in this process: a test checks each item ran exactly once."""

    processed: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Order id -> how many times an order was processed."""
    files: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """File id -> how many times a file was processed."""
    handled: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """Order or file id -> the names of the domain events handled for it, in order."""

    def record_handled(self, item_id: str, event: cqrs.DomainEvent) -> None:
        self.handled.setdefault(item_id, []).append(type(event).__name__)


# -- orders -------------------------------------------------------------------------------


class OrderRejected(Exception):
    """The warehouse refused an order. Its message names the order and the reason, for the
    client: the stream ends with an ``error`` frame that carries it."""

    def __init__(self, order_id: str, reason: str) -> None:
        super().__init__(f"Order {order_id} was rejected: {reason}.")
        self.order_id = order_id
        self.reason = reason


class ProcessOrders(cqrs.Request):
    order_ids: list[ItemId] = pydantic.Field(min_length=1, max_length=100)


class OrderProcessed(cqrs.Response):
    order_id: str
    position: int
    total: int
    events: list[str]
    """The domain events handled for this order (before it was delivered)."""
    notifications: list[str]
    """The notification events published for this order."""


class OrderShipped(cqrs.DomainEvent, frozen=True):
    order_id: str


class InvoiceIssued(cqrs.DomainEvent, frozen=True):
    order_id: str
    amount: float


class OrderShippedNotice(cqrs.Response):
    """The payload of the ``order_shipped`` notification."""

    order_id: str


class _EventsMixin:
    """The events list a streaming handler exposes to the mediator."""

    def __init__(self) -> None:
        self._events: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        return self._events.copy()

    def clear_events(self) -> None:
        self._events.clear()


class ProcessOrdersHandler(
    _EventsMixin, cqrs.StreamingRequestHandler[ProcessOrders, OrderProcessed]
):
    def __init__(self, ledger: Ledger, settings: DemoSettings) -> None:
        super().__init__()
        self._ledger = ledger
        self._settings = settings

    async def handle(self, request: ProcessOrders) -> typing.AsyncIterator[OrderProcessed]:
        total = len(request.order_ids)
        for position, order_id in enumerate(request.order_ids, start=1):
            await asyncio.sleep(self._settings.item_delay)  # the work for one order
            if order_id.startswith("REJECT"):
                raise OrderRejected(order_id, "the warehouse has no stock for it")
            self._ledger.processed[order_id] += 1
            self._events.append(OrderShipped(order_id=order_id))
            self._events.append(InvoiceIssued(order_id=order_id, amount=10.0 * position))
            self._events.append(
                cqrs.NotificationEvent[OrderShippedNotice](
                    event_name="order_shipped",
                    topic="orders",
                    payload=OrderShippedNotice(order_id=order_id),
                )
            )
            yield OrderProcessed(
                order_id=order_id,
                position=position,
                total=total,
                events=["OrderShipped", "InvoiceIssued"],
                notifications=["order_shipped"],
            )


class SendShippingEmail(cqrs.EventHandler[OrderShipped]):
    def __init__(self, ledger: Ledger, settings: DemoSettings) -> None:
        self._ledger = ledger
        self._settings = settings

    async def handle(self, event: OrderShipped) -> None:
        await asyncio.sleep(self._settings.item_delay / 4)  # a slow side effect
        self._ledger.record_handled(event.order_id, event)


class BookInvoice(cqrs.EventHandler[InvoiceIssued]):
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def handle(self, event: InvoiceIssued) -> None:
        self._ledger.record_handled(event.order_id, event)


# -- files (the command of the "FastAPI Integration" page) --------------------------------


class ProcessFilesCommand(cqrs.Request):
    file_ids: list[ItemId]


class FileProcessed(cqrs.Response):
    """JSON-native fields only: the page's endpoint ``json.dumps`` ``result.model_dump()``."""

    file_id: str
    status: str
    position: int
    total: int


class FileScanned(cqrs.DomainEvent, frozen=True):
    file_id: str


class FileProcessedNotice(cqrs.Response):
    file_id: str


class ProcessFilesHandler(
    _EventsMixin, cqrs.StreamingRequestHandler[ProcessFilesCommand, FileProcessed]
):
    def __init__(self, ledger: Ledger, settings: DemoSettings) -> None:
        super().__init__()
        self._ledger = ledger
        self._settings = settings

    async def handle(self, request: ProcessFilesCommand) -> typing.AsyncIterator[FileProcessed]:
        total = len(request.file_ids)
        for position, file_id in enumerate(request.file_ids, start=1):
            await asyncio.sleep(self._settings.item_delay)
            self._ledger.files[file_id] += 1
            self._events.append(FileScanned(file_id=file_id))
            self._events.append(
                cqrs.NotificationEvent[FileProcessedNotice](
                    event_name="file_processed",
                    topic="files",
                    payload=FileProcessedNotice(file_id=file_id),
                )
            )
            yield FileProcessed(file_id=file_id, status="completed", position=position, total=total)


class IndexFile(cqrs.EventHandler[FileScanned]):
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def handle(self, event: FileScanned) -> None:
        self._ledger.record_handled(event.file_id, event)


# -- mappers --------------------------------------------------------------------------------


def commands_mapper(mapper: cqrs.RequestMap) -> None:
    mapper.bind(ProcessOrders, ProcessOrdersHandler)
    mapper.bind(ProcessFilesCommand, ProcessFilesHandler)


def domain_events_mapper(mapper: cqrs.EventMap) -> None:
    mapper.bind(OrderShipped, SendShippingEmail)
    mapper.bind(InvoiceIssued, BookInvoice)
    mapper.bind(FileScanned, IndexFile)
