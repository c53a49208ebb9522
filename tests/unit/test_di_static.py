"""StaticContainer: the container over a plain mapping."""

from __future__ import annotations

import abc
import asyncio
import functools
from unittest import mock

import pytest

from cqrs._internal.di import StaticContainer
from cqrs._internal.errors import ContainerError


class Repo:
    pass


class Handler:
    def __init__(self, repo: Repo) -> None:
        self.repo = repo


class Leaf:
    def __init__(self, label: str = "leaf") -> None:
        self.label = label


class Abstract(abc.ABC):
    @abc.abstractmethod
    def run(self) -> None: ...


async def test_registered_instance_is_returned_every_time() -> None:
    repo = Repo()
    container = StaticContainer({Repo: repo})
    assert await container.resolve(Repo) is repo
    assert await container.resolve(Repo) is repo


async def test_sync_and_async_factories_are_called_on_every_resolve() -> None:
    async def make_handler() -> Handler:
        return Handler(Repo())

    container = StaticContainer(
        {Repo: Repo, Handler: make_handler, Leaf: functools.partial(Leaf, "made")}
    )
    first, second = await container.resolve(Repo), await container.resolve(Repo)
    assert isinstance(first, Repo)
    assert first is not second
    handler = await container.resolve(Handler)
    assert isinstance(handler, Handler)
    assert handler is not await container.resolve(Handler)
    assert (await container.resolve(Leaf)).label == "made"


async def test_a_mock_is_an_instance_not_a_factory() -> None:
    double = mock.MagicMock()
    container = StaticContainer({Handler: double})
    assert await container.resolve(Handler) is double


async def test_unregistered_leaf_classes_are_auto_wired() -> None:
    container = StaticContainer()
    first = await container.resolve(Leaf)
    assert isinstance(first, Leaf)
    assert first is not await container.resolve(Leaf)


async def test_register_adds_and_replaces_registrations() -> None:
    container = StaticContainer()
    leaf = Leaf("registered")
    await container.resolve(Leaf)
    container.register(Leaf, leaf)
    assert await container.resolve(Leaf) is leaf
    container.register(Handler, lambda: Handler(Repo()))
    assert isinstance(await container.resolve(Handler), Handler)
    assert set(container.external_container) == {Leaf, Handler}


async def test_missing_type_error_names_it_lists_registrations_and_says_how_to_register() -> None:
    container = StaticContainer({Repo: Repo(), Leaf: Leaf})
    with pytest.raises(ContainerError) as info:
        await container.resolve(Handler)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "cannot resolve Handler" in message
    assert "constructor needs repo" in message
    assert "Registered types: Leaf, Repo" in message
    assert "container.register(Handler, instance_or_factory)" in message


async def test_abstract_classes_are_not_auto_wired() -> None:
    with pytest.raises(ContainerError, match="Abstract: it is not registered and it is abstract"):
        await StaticContainer().resolve(Abstract)


async def test_empty_container_says_nothing_is_registered() -> None:
    with pytest.raises(ContainerError, match="Registered types: none"):
        await StaticContainer().resolve(Handler)


def test_attach_replaces_the_mapping_and_works_across_event_loops() -> None:
    container = StaticContainer({Repo: Repo()})
    repo = Repo()
    container.attach_external_container({Repo: repo})
    assert dict(container.external_container) == {Repo: repo}
    assert asyncio.run(container.resolve(Repo)) is repo
    assert asyncio.run(container.resolve(Repo)) is repo
