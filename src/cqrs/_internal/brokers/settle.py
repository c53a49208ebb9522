"""Settle-once bookkeeping of deliveries: the errors of settling twice or after a close.

Every broker's ``Delivery`` may be settled once (``ack``, ``nack`` or ``dead_letter``) and
only while its subscription is open; these build the ``DeliverySettledError`` each raises
otherwise, and the ``DeliveryLostError`` of a settlement whose connection is gone, with the
same words on every broker.
"""

from __future__ import annotations

from cqrs._internal.brokers.delivery import DeliveryLostError, DeliverySettledError

__all__ = ["already_settled", "claim", "settlement_lost", "subscription_closed"]


def already_settled(action: str) -> DeliverySettledError:
    """The error of ``action`` (``"ack"``, ``"nack"``, ``"dead-letter"``) on a delivery that
    was already settled."""
    return DeliverySettledError(
        f"Cannot {action} a delivery that was already settled; settle each once."
    )


def subscription_closed(action: str) -> DeliverySettledError:
    """The error of ``action`` on a delivery whose subscription was closed (the message went
    back to the broker)."""
    return DeliverySettledError(
        f"Cannot {action} a delivery after its subscription was closed; it went back to the "
        "broker and will be delivered again."
    )


def claim(action: str, *, settled: bool, closed: bool) -> None:
    """Check that a delivery may be settled by ``action`` now: raises
    :func:`already_settled`'s error if ``settled``, else :func:`subscription_closed`'s if its
    subscription is ``closed``. The caller marks the delivery settled after it returns."""
    if settled:
        raise already_settled(action)
    if closed:
        raise subscription_closed(action)


def settlement_lost(
    action: str, message_id: object, gone: str, exc: BaseException, again: str
) -> DeliveryLostError:
    """The error of ``action`` on message ``message_id`` when ``gone`` (what the message
    came on: "the channel it came on", "the connection to NATS") is gone, ``exc`` being the
    client's error; ``again`` says how the broker delivers the message again."""
    return DeliveryLostError(
        f"Could not {action} message {message_id}: {gone} is gone "
        f"({type(exc).__name__}: {exc}); {again}."
    )
