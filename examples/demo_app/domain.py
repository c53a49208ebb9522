"""The demo's domain: commands, their streamed results, events and handlers. No web code.

Two streaming commands:

* ``ProcessOrders``: one ``OrderProcessed`` per order. Per order the handler writes, in one
  transaction (the item's unit of work), the order's ``Shipment`` row and its
  ``order_shipped`` notification into the transactional outbox, commits, then emits two
  domain events (``OrderShipped``, ``InvoiceIssued``, handled in this process) and yields the
  item. The warehouse refuses an order whose id starts with ``REJECT``: the handler raises
  ``OrderRejected`` inside the transaction, so neither the shipment nor the notification is
  stored; the error's message is meant for the client (the app lists it in
  ``SSESettings.safe_errors``), so the page shows which order was refused and why.
* ``ProcessFilesCommand``: the command of the "FastAPI Integration" page, one
  ``FileProcessed`` per file, with a ``FileScanned`` domain event and a ``file_processed``
  notification (through the outbox too) per file.

The notifications leave the outbox through the app's relay, which publishes them to the
message broker, and reach the notification service's consumer (:func:`notifications_mapper`:
``NotifyCustomer``, ``NotifyUploader``), which runs behind an inbox, so each runs once per
notification however often it is delivered.

Under the mediator's default events policy (``before_item``) an item reaches the client
only after the domain events emitted for it are handled, so a result can list them as done.
Every handler records what it did in the :class:`Ledger`, which the app shows at
``GET /api/stats``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import typing

import pydantic
from examples.demo_app.store import Shipment, UnitOfWork

import cqrs

# An id the page or a client sends: short, non-empty text.
ItemId = typing.Annotated[str, pydantic.Field(min_length=1, max_length=64)]


@dataclasses.dataclass
class DemoSettings:
    """Knobs of the demo, shared by the handlers (bound in the DI container)."""

    item_delay: float = 0.4
    """Seconds of "work" per order or file, so that a person sees the progress bar fill (a
    notification's consumer takes a quarter of it)."""
    topic_prefix: str = "demo-"
    """Prefixed to the notification topics (``demo-orders``, ``demo-files``), so that several
    demos, or tests, can share one broker."""

    def topic(self, name: str) -> str:
        """The topic ``name`` with the prefix."""
        return f"{self.topic_prefix}{name}"


@dataclasses.dataclass
class Ledger:
    """What the handlers did, in this process: a test checks each item ran exactly once."""

    processed: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Order id -> how many times an order was processed."""
    files: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """File id -> how many times a file was processed."""
    handled: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """Order or file id -> the names of the domain events handled for it, in order."""
    written: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Order or file id -> notifications committed to the outbox for it."""
    published: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Order or file id -> notifications for it that the relay published and the broker
    confirmed."""
    consumed: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Order or file id -> runs of the notification consumer's handler for it."""

    def record_handled(self, item_id: str, event: cqrs.DomainEvent) -> None:
        self.handled.setdefault(item_id, []).append(type(event).__name__)

    def notifications(self) -> dict[str, dict[str, int]]:
        """Item id -> ``{"written", "published", "consumed"}`` counts of its notifications."""
        ids = self.written.keys() | self.published.keys() | self.consumed.keys()
        return {
            item_id: {
                "written": self.written[item_id],
                "published": self.published[item_id],
                "consumed": self.consumed[item_id],
            }
            for item_id in sorted(ids)
        }


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
    """The notification events committed to the outbox for this order (the relay publishes
    them right after)."""


class OrderShipped(cqrs.DomainEvent, frozen=True):
    order_id: str


class InvoiceIssued(cqrs.DomainEvent, frozen=True):
    order_id: str
    amount: float


class OrderShippedNotice(cqrs.Response):
    """The payload of the ``order_shipped`` notification."""

    order_id: str


class OrderShippedNotification(cqrs.NotificationEvent[OrderShippedNotice]):
    """Tells the notification service that an order shipped (it e-mails the customer)."""

    event_name: str = "order_shipped"


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
    def __init__(self, ledger: Ledger, settings: DemoSettings, work: UnitOfWork) -> None:
        super().__init__()
        self._ledger = ledger
        self._settings = settings
        self._work = work

    async def handle(self, request: ProcessOrders) -> typing.AsyncIterator[OrderProcessed]:
        total = len(request.order_ids)
        for position, order_id in enumerate(request.order_ids, start=1):
            await asyncio.sleep(self._settings.item_delay)  # the work for one order
            # The item's unit of work: the shipment and its notification commit together,
            # before the item is yielded (never yield inside the transaction).
            async with self._work.begin() as (session, outbox):
                session.add(Shipment(order_id=order_id, position=position))
                outbox.add(
                    OrderShippedNotification(
                        topic=self._settings.topic("orders"),
                        payload=OrderShippedNotice(order_id=order_id),
                    )
                )
                if order_id.startswith("REJECT"):  # rolls back the shipment and its notice
                    raise OrderRejected(order_id, "the warehouse has no stock for it")
            self._ledger.processed[order_id] += 1
            self._ledger.written[order_id] += 1
            self._events.append(OrderShipped(order_id=order_id))
            self._events.append(InvoiceIssued(order_id=order_id, amount=10.0 * position))
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


class FileProcessedNotification(cqrs.NotificationEvent[FileProcessedNotice]):
    """Tells the notification service that a file was processed."""

    event_name: str = "file_processed"


class ProcessFilesHandler(
    _EventsMixin, cqrs.StreamingRequestHandler[ProcessFilesCommand, FileProcessed]
):
    def __init__(self, ledger: Ledger, settings: DemoSettings, work: UnitOfWork) -> None:
        super().__init__()
        self._ledger = ledger
        self._settings = settings
        self._work = work

    async def handle(self, request: ProcessFilesCommand) -> typing.AsyncIterator[FileProcessed]:
        total = len(request.file_ids)
        for position, file_id in enumerate(request.file_ids, start=1):
            await asyncio.sleep(self._settings.item_delay)
            async with self._work.begin() as (_, outbox):
                outbox.add(
                    FileProcessedNotification(
                        topic=self._settings.topic("files"),
                        payload=FileProcessedNotice(file_id=file_id),
                    )
                )
            self._ledger.files[file_id] += 1
            self._ledger.written[file_id] += 1
            self._events.append(FileScanned(file_id=file_id))
            yield FileProcessed(file_id=file_id, status="completed", position=position, total=total)


class IndexFile(cqrs.EventHandler[FileScanned]):
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def handle(self, event: FileScanned) -> None:
        self._ledger.record_handled(event.file_id, event)


# -- the notification service: the consumer's handlers ---------------------------------------


class NotifyCustomer(cqrs.EventHandler[OrderShippedNotification]):
    """Runs behind the inbox: once per notification, however often it is delivered."""

    def __init__(self, ledger: Ledger, settings: DemoSettings) -> None:
        self._ledger = ledger
        self._settings = settings

    async def handle(self, event: OrderShippedNotification) -> None:
        await asyncio.sleep(self._settings.item_delay / 4)  # texting the customer
        self._ledger.consumed[event.payload.order_id] += 1


class NotifyUploader(cqrs.EventHandler[FileProcessedNotification]):
    """Runs behind the inbox too."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def handle(self, event: FileProcessedNotification) -> None:
        self._ledger.consumed[event.payload.file_id] += 1


NOTIFICATIONS = cqrs.OutboxedEventMap()
"""The notification events the outbox stores (the demo's own registry, not the process's)."""
NOTIFICATIONS.register("order_shipped", OrderShippedNotification)
NOTIFICATIONS.register("file_processed", FileProcessedNotification)

NOTIFICATION_TYPES: dict[str, type[cqrs.NotificationEvent[typing.Any]]] = {
    "order_shipped": OrderShippedNotification,
    "file_processed": FileProcessedNotification,
}
"""What the consumer decodes a message into, by its name."""


def notified_item(payload: object) -> str | None:
    """The order or file id a published notification (its message body) is about."""
    if isinstance(payload, dict):
        inner = typing.cast(dict[str, typing.Any], payload).get("payload")
        if isinstance(inner, dict):
            inner = typing.cast(dict[str, typing.Any], inner)
            item_id = inner.get("order_id") or inner.get("file_id")
            return item_id if isinstance(item_id, str) else None
    return None


# -- mappers --------------------------------------------------------------------------------


def commands_mapper(mapper: cqrs.RequestMap) -> None:
    mapper.bind(ProcessOrders, ProcessOrdersHandler)
    mapper.bind(ProcessFilesCommand, ProcessFilesHandler)


def domain_events_mapper(mapper: cqrs.EventMap) -> None:
    mapper.bind(OrderShipped, SendShippingEmail)
    mapper.bind(InvoiceIssued, BookInvoice)
    mapper.bind(FileScanned, IndexFile)


def notifications_mapper(mapper: cqrs.EventMap) -> None:
    """The notification service's handlers (the consumer's ``EventMediator``)."""
    mapper.bind(OrderShippedNotification, NotifyCustomer)
    mapper.bind(FileProcessedNotification, NotifyUploader)
