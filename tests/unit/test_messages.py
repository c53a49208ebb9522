"""Request, response and event models: the 4.x contract plus our documented deviations."""

import copy
import dataclasses
import enum
import os
import pickle
import subprocess
import sys
import textwrap
import types
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cqrs._internal import messages
from cqrs._internal.messages import (
    DEFAULT_OUTPUT_TOPIC,
    DCDomainEvent,
    DCEvent,
    DCNotificationEvent,
    DCRequest,
    DCResponse,
    DomainEvent,
    Event,
    IDomainEvent,
    IEvent,
    INotificationEvent,
    IRequest,
    IResponse,
    NotificationEvent,
    PydanticDomainEvent,
    PydanticEvent,
    PydanticNotificationEvent,
    PydanticRequest,
    PydanticResponse,
    Request,
    Response,
    _camel,
)

SRC = Path(messages.__file__).resolve().parents[3]
NOTIFICATION_FIELDS = ["payload", "event_id", "event_timestamp", "event_name", "topic"]


# -- models used across tests ---------------------------------------------------------------


class CreateOrder(Request):
    order_id: uuid.UUID
    placed_at: datetime
    items: list[str] = pydantic.Field(default_factory=list)


class OrderCreated(Response):
    order_id: uuid.UUID


class OrderProcessedEvent(DomainEvent, frozen=True):
    order_id: str


class PlainDomainEvent(DomainEvent):
    order_id: str


class OrderPayload(pydantic.BaseModel):
    order_id: str
    total_cents: int


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Line:
    sku_code: str
    unit_price: Decimal


@dataclasses.dataclass(frozen=True)
class DCOrder:
    order_id: str
    customer_id: uuid.UUID
    lines: list[Line] = dataclasses.field(default_factory=list[Line])
    shipped_at: datetime | None = None


@dataclasses.dataclass
class DCCreateOrder(DCRequest):
    order_id: str
    line_items: list[Line]


@dataclasses.dataclass
class DCOrderCreated(DCResponse):
    order_id: str


@dataclasses.dataclass(frozen=True)
class DCOrderPlaced(DCDomainEvent):
    order_id: uuid.UUID
    placed_at: datetime
    color: Color
    ship_on: date
    cutoff: time
    tags: tuple[str, ...] = ()
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class DCOrderNotification(DCNotificationEvent[DCOrder]):
    """Binds the payload type through the generic base."""


@dataclasses.dataclass(frozen=True)
class DCAnnotatedNotification(DCNotificationEvent[Any]):
    """Binds the payload type by re-annotating the field."""

    payload: DCOrder = dataclasses.field(hash=False)


def make_dc_order() -> DCOrder:
    return DCOrder(
        order_id="o-1",
        customer_id=uuid.uuid4(),
        lines=[Line("sku_1", Decimal("9.99")), Line("sku_2", Decimal("1.50"))],
    )


# -- interfaces -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interface", [IRequest, IResponse, IEvent, IDomainEvent, INotificationEvent]
)
def test_interfaces_cannot_be_instantiated(interface: type) -> None:
    with pytest.raises(TypeError, match="abstract"):
        interface()


def test_subclass_missing_from_dict_cannot_be_instantiated() -> None:
    class Half(IRequest):
        def to_dict(self) -> dict[str, Any]:
            return {}

    with pytest.raises(TypeError, match="from_dict"):
        Half()  # type: ignore[abstract]


def test_aliases_are_the_pydantic_classes() -> None:
    assert Request is PydanticRequest
    assert Response is PydanticResponse
    assert Event is PydanticEvent
    assert DomainEvent is PydanticDomainEvent
    assert NotificationEvent is PydanticNotificationEvent


def test_package_exports() -> None:
    assert sorted(messages.__all__) == sorted(
        [
            "Request",
            "IRequest",
            "DCRequest",
            "PydanticRequest",
            "ReqT",
            "ResT",
            "Response",
            "IResponse",
            "DCResponse",
            "PydanticResponse",
            "Event",
            "IEvent",
            "DCEvent",
            "PydanticEvent",
            "DomainEvent",
            "IDomainEvent",
            "DCDomainEvent",
            "PydanticDomainEvent",
            "NotificationEvent",
            "INotificationEvent",
            "DCNotificationEvent",
            "PydanticNotificationEvent",
            "PayloadT",
            "DEFAULT_OUTPUT_TOPIC",
        ]
    )
    for name in messages.__all__:
        assert hasattr(messages, name)


def test_type_variables() -> None:
    assert messages.ReqT.__bound__ is IRequest
    assert messages.ReqT.__contravariant__
    assert messages.ResT.__bound__ == IResponse | None
    assert messages.ResT.__covariant__


def test_marker_hierarchy() -> None:
    domain = OrderProcessedEvent(order_id="1")
    notification = NotificationEvent[dict[str, int]](event_name="n", payload={})
    dc_domain = DCDomainEvent()
    dc_notification = DCNotificationEvent[dict[str, int]]("n", {})

    for event in (domain, dc_domain):
        assert isinstance(event, IDomainEvent)
        assert isinstance(event, IEvent)
        assert not isinstance(event, INotificationEvent)
    for event in (notification, dc_notification):
        assert isinstance(event, INotificationEvent)
        assert isinstance(event, IEvent)
        assert not isinstance(event, IDomainEvent)
    assert isinstance(CreateOrder(order_id=uuid.uuid4(), placed_at=datetime.now(UTC)), IRequest)
    assert isinstance(OrderCreated(order_id=uuid.uuid4()), IResponse)


# -- pydantic requests and responses --------------------------------------------------------


def test_pydantic_request_is_mutable_and_round_trips() -> None:
    order_id = uuid.uuid4()
    request = CreateOrder.from_dict(order_id=str(order_id), placed_at="2024-05-01T12:30:00Z")

    assert request.order_id == order_id
    assert request.placed_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    request.items = ["a"]
    assert request.to_dict() == {
        "order_id": order_id,
        "placed_at": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "items": ["a"],
    }
    assert CreateOrder.from_dict(**request.to_dict()) == request


def test_pydantic_request_from_dict_rejects_bad_input() -> None:
    with pytest.raises(pydantic.ValidationError):
        CreateOrder.from_dict(order_id="not-a-uuid", placed_at="2024-05-01")


def test_pydantic_response_round_trips() -> None:
    response = OrderCreated(order_id=uuid.uuid4())
    assert response.model_dump() == {"order_id": response.order_id}
    assert OrderCreated.from_dict(**response.to_dict()) == response


# -- pydantic events ------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", [OrderProcessedEvent, PlainDomainEvent])
def test_domain_event_is_frozen(event_type: type[OrderProcessedEvent]) -> None:
    event = event_type(order_id="1")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        event.order_id = "2"  # type: ignore[misc]
    assert event.model_dump() == {"order_id": "1"}
    assert event.to_dict() == {"order_id": "1"}
    assert event_type.from_dict(order_id="1") == event
    assert hash(event) == hash(event_type(order_id="1"))


def test_domain_event_base_has_no_fields() -> None:
    assert PydanticDomainEvent.model_fields == {}
    assert list(OrderProcessedEvent.model_fields) == ["order_id"]


def test_notification_event_fields_and_defaults() -> None:
    before = datetime.now(UTC)
    event = NotificationEvent[OrderPayload](
        event_name="order_created", payload=OrderPayload(order_id="1", total_cents=5)
    )
    after = datetime.now(UTC)

    assert list(PydanticNotificationEvent.model_fields) == NOTIFICATION_FIELDS
    assert type(event) is NotificationEvent[OrderPayload]
    assert issubclass(type(event), NotificationEvent)
    assert event.event_name == "order_created"
    assert event.payload == OrderPayload(order_id="1", total_cents=5)
    assert event.event_id.version == 4
    assert event.event_timestamp.tzinfo is UTC
    assert before <= event.event_timestamp <= after
    assert (
        event.topic
        == DEFAULT_OUTPUT_TOPIC
        == os.environ.get("DEFAULT_OUTPUT_TOPIC", "output_topic")
    )


def test_notification_event_ids_are_unique() -> None:
    events = [NotificationEvent[int](event_name="n", payload=i) for i in range(50)]
    assert len({event.event_id for event in events}) == 50


def test_notification_event_validates_payload() -> None:
    event = NotificationEvent[OrderPayload](
        event_name="n",
        payload={"order_id": "1", "total_cents": "7"},  # pyright: ignore[reportArgumentType]
    )
    assert event.payload == OrderPayload(order_id="1", total_cents=7)
    with pytest.raises(pydantic.ValidationError):
        NotificationEvent[OrderPayload](
            event_name="n",
            payload={"order_id": "1"},  # pyright: ignore[reportArgumentType]
        )
    with pytest.raises(pydantic.ValidationError):
        NotificationEvent[int](payload=1)  # type: ignore[call-arg]


def test_notification_event_is_frozen_and_hashes_by_id() -> None:
    event = NotificationEvent[dict[str, int]](event_name="n", payload={"a": 1})
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        event.topic = "other"  # type: ignore[misc]
    assert hash(event) == hash(event.event_id)
    assert event in {event}


def test_notification_event_round_trips_through_dict() -> None:
    event = NotificationEvent[OrderPayload](
        event_name="n", payload=OrderPayload(order_id="1", total_cents=5), topic="orders"
    )
    data = event.to_dict()
    assert data["event_id"] == event.event_id
    assert data["payload"] == {"order_id": "1", "total_cents": 5}
    assert NotificationEvent[OrderPayload].from_dict(**data) == event

    as_json = event.model_dump(mode="json")
    restored = NotificationEvent[OrderPayload].from_dict(**as_json)
    assert restored == event
    assert restored.event_timestamp.tzinfo is not None


def test_notification_event_reads_attributes() -> None:
    source = types.SimpleNamespace(
        payload=1,
        event_id=uuid.uuid4(),
        event_timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        event_name="n",
        topic="t",
    )
    event = NotificationEvent[int].model_validate(source)
    assert event.event_id == source.event_id
    assert event.topic == "t"


@pytest.mark.parametrize(
    "event",
    [
        NotificationEvent[int](event_name="n", payload=1),
        DCNotificationEvent[int]("n", 1),
    ],
    ids=["pydantic", "dataclass"],
)
def test_proto_is_not_implemented(event: INotificationEvent[int]) -> None:
    with pytest.raises(NotImplementedError, match=r"override proto\(\)"):
        event.proto()
    with pytest.raises(NotImplementedError, match=r"override from_proto\(\)"):
        type(event).from_proto(object())


def test_notification_subclass_keeps_hash_and_proto_override() -> None:
    class Created(NotificationEvent[OrderPayload], frozen=True):
        def proto(self) -> str:
            return f"proto:{self.payload.order_id}"

    event = Created(event_name="n", payload=OrderPayload(order_id="9", total_cents=1))
    assert event.proto() == "proto:9"
    assert hash(event) == hash(event.event_id)


def test_default_output_topic_comes_from_environment() -> None:
    script = textwrap.dedent(
        """
        from cqrs._internal.messages import (
            DEFAULT_OUTPUT_TOPIC, DCNotificationEvent, NotificationEvent,
        )
        print(DEFAULT_OUTPUT_TOPIC)
        print(NotificationEvent[int](event_name="n", payload=1).topic)
        print(DCNotificationEvent("n", 1).topic)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "DEFAULT_OUTPUT_TOPIC": "custom-topic"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["custom-topic"] * 3
    assert result.stderr == ""


def test_import_loads_only_stdlib_pydantic_and_typing_extensions() -> None:
    # A stand-in for the ``cqrs`` package keeps its __init__ (other modules) out of the test.
    script = textwrap.dedent(
        f"""
        import sys, sysconfig, types
        before = set(sys.modules)
        pkg = types.ModuleType("cqrs")
        pkg.__path__ = [{str(SRC / "cqrs")!r}]
        sys.modules["cqrs"] = pkg
        import cqrs._internal.messages
        installed = (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])
        loaded = {{
            name.partition(".")[0]
            for name in set(sys.modules) - before
            if (getattr(sys.modules[name], "__file__", None) or "").startswith(installed)
        }}
        print(" ".join(sorted(loaded)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    pydantic_and_its_deps = {"pydantic", "pydantic_core", "annotated_types", "typing_inspection"}
    assert "pydantic" in result.stdout.split()
    assert set(result.stdout.split()) <= pydantic_and_its_deps | {"typing_extensions"}
    assert result.stderr == ""


# -- dataclass requests and responses -------------------------------------------------------


def test_dc_request_uses_snake_case_asdict() -> None:
    request = DCCreateOrder(order_id="o-1", line_items=[Line("sku_1", Decimal("2"))])
    request.order_id = "o-2"
    assert request.to_dict() == {
        "order_id": "o-2",
        "line_items": [{"sku_code": "sku_1", "unit_price": Decimal("2")}],
    }


def test_dc_request_from_dict_is_the_constructor() -> None:
    request = DCCreateOrder.from_dict(order_id="o-1", line_items=[])
    assert request == DCCreateOrder("o-1", [])
    raw = DCCreateOrder.from_dict(order_id=1, line_items="not coerced")
    assert raw.order_id == 1
    with pytest.raises(TypeError):
        DCCreateOrder.from_dict(orderId="o-1", line_items=[])


def test_dc_response_round_trips() -> None:
    response = DCOrderCreated("o-1")
    assert response.to_dict() == {"order_id": "o-1"}
    assert DCOrderCreated.from_dict(**response.to_dict()) == response


# -- dataclass events -----------------------------------------------------------------------


def test_dc_events_are_frozen_without_fields() -> None:
    assert dataclasses.fields(DCEvent) == ()
    assert dataclasses.fields(DCDomainEvent) == ()
    assert DCDomainEvent().to_dict() == {}
    event = DCOrderPlaced(uuid.uuid4(), datetime.now(UTC), Color.RED, date(2024, 1, 2), time(17, 0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.note = "x"  # type: ignore[misc]


def test_dc_domain_event_to_dict_is_camel_case_and_json_ready() -> None:
    order_id = uuid.uuid4()
    event = DCOrderPlaced(
        order_id=order_id,
        placed_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        color=Color.RED,
        ship_on=date(2024, 1, 3),
        cutoff=time(17, 30),
        tags=("a", "b"),
    )
    assert event.to_dict() == {
        "orderId": order_id.hex,
        "placedAt": "2024-01-02T03:04:05+00:00",
        "color": "red",
        "shipOn": "2024-01-03",
        "cutoff": "17:30:00",
        "tags": ["a", "b"],
        "note": None,
    }


@pytest.mark.parametrize("case", ["camel", "snake"])
def test_dc_domain_event_from_dict_coerces_by_annotation(case: str) -> None:
    event = DCOrderPlaced(
        order_id=uuid.uuid4(),
        placed_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        color=Color.RED,
        ship_on=date(2024, 1, 3),
        cutoff=time(17, 30),
        tags=("a",),
        note="hi",
    )
    data = event.to_dict()
    if case == "snake":
        data = {_camel.to_snake(key): value for key, value in data.items()}
    assert DCOrderPlaced.from_dict(**data) == event


def test_dc_from_dict_accepts_dashed_uuid_and_ignores_unknown_keys() -> None:
    order_id = uuid.uuid4()
    event = DCOrderPlaced.from_dict(
        OrderId=str(order_id),
        placedAt="2024-01-02T03:04:05Z",
        color="red",
        shipOn="2024-01-03",
        cutoff="17:30",
        unknownKey=1,
    )
    assert event.order_id == order_id
    assert event.placed_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert event.color is Color.RED


def test_dc_from_dict_failures() -> None:
    with pytest.raises(TypeError, match="missing"):
        DCOrderPlaced.from_dict(orderId=uuid.uuid4().hex)
    with pytest.raises(ValueError, match="hexadecimal"):
        DCOrderPlaced.from_dict(
            orderId="nope", placedAt="2024-01-02", color="red", shipOn="2024-01-03", cutoff="1:00"
        )


def test_dc_notification_event_fields_and_defaults() -> None:
    before = datetime.now(UTC)
    event = DCNotificationEvent("order_created", {"a": 1})
    after = datetime.now(UTC)

    assert [f.name for f in dataclasses.fields(DCNotificationEvent)] == [
        "event_name",
        "payload",
        "event_id",
        "event_timestamp",
        "topic",
    ]
    assert event.event_id.version == 4
    assert event.event_id != DCNotificationEvent[dict[str, int]]("order_created", {}).event_id
    assert event.event_timestamp.tzinfo is UTC
    assert before <= event.event_timestamp <= after
    assert event.topic == DEFAULT_OUTPUT_TOPIC
    assert hash(event) == hash(event.event_id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.topic = "x"  # type: ignore[misc]


def test_dc_notification_to_dict_shape() -> None:
    order = make_dc_order()
    event = DCNotificationEvent("order_created", order, topic="orders")
    data = event.to_dict()

    assert list(data) == ["eventName", "payload", "eventId", "eventTimestamp", "topic"]
    assert data["eventName"] == "order_created"
    assert data["eventId"] == event.event_id.hex
    assert len(data["eventId"]) == 32
    assert datetime.fromisoformat(data["eventTimestamp"]) == event.event_timestamp
    assert data["topic"] == "orders"
    assert data["payload"] == {
        "orderId": "o-1",
        "customerId": order.customer_id.hex,
        "lines": [
            {"skuCode": "sku_1", "unitPrice": "9.99"},
            {"skuCode": "sku_2", "unitPrice": "1.50"},
        ],
        "shippedAt": None,
    }


def test_dc_notification_untyped_payload_comes_back_as_given() -> None:
    event = DCNotificationEvent("order_created", make_dc_order())
    restored = DCNotificationEvent[Any].from_dict(**event.to_dict())

    assert restored.payload == event.to_dict()["payload"]
    assert restored.event_id == event.event_id
    assert restored.event_timestamp == event.event_timestamp
    assert restored.event_name == event.event_name


@pytest.mark.parametrize("event_type", [DCOrderNotification, DCAnnotatedNotification])
@pytest.mark.parametrize("case", ["camel", "snake"])
def test_dc_notification_typed_payload_round_trips(
    event_type: type[DCOrderNotification], case: str
) -> None:
    order = dataclasses.replace(make_dc_order(), shipped_at=datetime(2024, 2, 1, tzinfo=UTC))
    event = event_type("order_created", order)
    data = event.to_dict()
    if case == "snake":
        data = {_camel.to_snake(key): value for key, value in data.items()}

    restored = event_type.from_dict(**data)
    assert restored == event
    assert isinstance(restored.payload, DCOrder)
    assert restored.payload.lines[0] == Line("sku_1", Decimal("9.99"))


def test_dc_notification_subclass_hash_ignores_unhashable_payload() -> None:
    @dataclasses.dataclass(frozen=True)
    class Untyped(DCNotificationEvent[dict[str, list[int]]]):
        pass

    event = Untyped("n", {"a": [1]})
    same_id = Untyped("other", {"b": [2]}, event_id=event.event_id)
    assert hash(event) == hash(same_id)
    assert event != same_id
    assert event in {event}


def test_dc_payload_of_pydantic_model() -> None:
    @dataclasses.dataclass(frozen=True)
    class WithModel(DCNotificationEvent[OrderPayload]):
        pass

    event = WithModel("n", OrderPayload(order_id="1", total_cents=3))
    data = event.to_dict()
    assert data["payload"] == {"order_id": "1", "total_cents": 3}
    assert WithModel.from_dict(**data) == event


@pytest.mark.parametrize(
    "event",
    [
        OrderProcessedEvent(order_id="1"),
        NotificationEvent[OrderPayload](
            event_name="n", payload=OrderPayload(order_id="1", total_cents=1)
        ),
        DCOrderNotification("n", make_dc_order()),
    ],
    ids=["domain", "notification", "dc-notification"],
)
def test_events_survive_pickle_and_deepcopy(event: IEvent) -> None:
    assert pickle.loads(pickle.dumps(event)) == event
    assert copy.deepcopy(event) == event


# -- the camelCase converter ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("snake", "camel"),
    [
        ("x", "x"),
        ("order_id", "orderId"),
        ("a_b_c", "aBC"),
        ("event_timestamp", "eventTimestamp"),
        ("_private_name", "_privateName"),
        ("already", "already"),
    ],
)
def test_camel_and_snake_examples(snake: str, camel: str) -> None:
    assert _camel.to_camel(snake) == camel
    assert _camel.to_snake(camel) == snake


def test_to_snake_accepts_pascal_case() -> None:
    assert _camel.to_snake("OrderId") == "order_id"


snake_identifiers = st.lists(
    st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True), min_size=1, max_size=5
).map("_".join)


@given(snake_identifiers)
def test_snake_to_camel_round_trip(name: str) -> None:
    camel = _camel.to_camel(name)
    assert "_" not in camel
    assert _camel.to_snake(camel) == name


def test_converter_handles_containers_and_optionals() -> None:
    @dataclasses.dataclass(frozen=True)
    class Bag:
        by_id: dict[uuid.UUID, Line]
        maybe_lines: list[Line] | None
        pair: tuple[int, date]
        labels: frozenset[Color]
        amount: Annotated[Decimal, "money"]
        anything: Any
        elapsed: timedelta
        not_init: int = dataclasses.field(default=0, init=False)

    key = uuid.uuid4()
    bag = Bag(
        by_id={key: Line("s_1", Decimal("1"))},
        maybe_lines=[Line("s_2", Decimal("2"))],
        pair=(1, date(2024, 1, 1)),
        labels=frozenset({Color.RED}),
        amount=Decimal("3.5"),
        anything={"keep_me": 1},
        elapsed=timedelta(seconds=3),
    )
    data = _camel.to_camel_dict(bag)
    assert data == {
        "byId": {key: {"skuCode": "s_1", "unitPrice": "1"}},
        "maybeLines": [{"skuCode": "s_2", "unitPrice": "2"}],
        "pair": [1, "2024-01-01"],
        "labels": ["red"],
        "amount": "3.5",
        "anything": {"keep_me": 1},
        "elapsed": timedelta(seconds=3),
        "notInit": 0,
    }
    assert _camel.from_camel_dict(Bag, data) == bag
    assert _camel.from_camel_dict(Bag, {**data, "byId": {str(key): data["byId"][key]}}) == bag
    assert _camel.from_camel_dict(Bag, {**data, "maybeLines": None}).maybe_lines is None


def test_to_camel_dict_rejects_non_dataclass_instances() -> None:
    with pytest.raises(TypeError, match="dataclass instance"):
        _camel.to_camel_dict(Line)
    with pytest.raises(TypeError, match="dataclass instance"):
        _camel.to_camel_dict({"a": 1})


def _exec_module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(textwrap.dedent(source), module.__dict__)
    return module


def test_from_dict_resolves_postponed_annotations() -> None:
    module = _exec_module(
        "_cqrs_test_postponed_events",
        """
        from __future__ import annotations
        import dataclasses, uuid
        from cqrs._internal.messages import DCNotificationEvent

        @dataclasses.dataclass(frozen=True)
        class Payload:
            user_id: uuid.UUID

        @dataclasses.dataclass(frozen=True)
        class UserJoined(DCNotificationEvent[Payload]):
            pass
        """,
    )
    try:
        event = module.UserJoined("joined", module.Payload(uuid.uuid4()))
        assert module.UserJoined.from_dict(**event.to_dict()) == event
    finally:
        del sys.modules["_cqrs_test_postponed_events"]


def test_from_dict_without_resolvable_annotations_keeps_values() -> None:
    module = _exec_module(
        "_cqrs_test_unresolvable_events",
        """
        from __future__ import annotations
        import dataclasses
        from cqrs._internal.messages import DCDomainEvent

        def make():
            class Local:
                pass

            @dataclasses.dataclass(frozen=True)
            class Odd(DCDomainEvent):
                thing: Local
                when: datetime

            return Odd
        """,
    )
    try:
        odd = module.make()
        event = odd.from_dict(thing={"a": 1}, when="2024-01-01")
        assert event.thing == {"a": 1}
        assert event.when == "2024-01-01"
    finally:
        del sys.modules["_cqrs_test_unresolvable_events"]
