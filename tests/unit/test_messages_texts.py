"""Where 4.x has a fixed phrase, our message starts with it and gives its advice after it.

Code written for 4.x matches on these phrases (``pytest.raises(ValueError, match=r"^...")``,
log filters, alerting), so the phrase comes first, verbatim.
"""

from __future__ import annotations

from typing import Any

import pytest

from cqrs._internal.errors import ContainerError
from cqrs.container.di import DIContainer
from cqrs.container.protocol import Container

NOT_ATTACHED = "External container not attached"


class Handler:
    pass


# -- External container not attached ----------------------------------------------------------


async def test_di_container_used_before_attach() -> None:
    container = DIContainer()
    with pytest.raises(ContainerError, match=rf"^{NOT_ATTACHED}: DIContainer") as info:
        await container.resolve(Handler)
    assert isinstance(info.value, ValueError)
    assert "attach_external_container(di.Container())" in str(info.value)
    with pytest.raises(ValueError, match=rf"^{NOT_ATTACHED}"):
        container.external_container
    with pytest.raises(ValueError, match=rf"^{NOT_ATTACHED}"):
        container.open_scope()


async def test_dishka_container_used_before_attach() -> None:
    pytest.importorskip("dishka")
    from cqrs.container.dishka import DishkaCQRSContainer

    container = DishkaCQRSContainer()
    with pytest.raises(ContainerError, match=rf"^{NOT_ATTACHED}: DishkaCQRSContainer") as info:
        await container.resolve(Handler)
    assert "attach_external_container(make_async_container(...))" in str(info.value)
    with pytest.raises(ValueError, match=rf"^{NOT_ATTACHED}"):
        container.external_container
    with pytest.raises(ValueError, match=rf"^{NOT_ATTACHED}"):
        container.open_scope()


async def test_dependency_injector_container_used_before_attach() -> None:
    pytest.importorskip("dependency_injector")
    from cqrs.container.dependency_injector import DependencyInjectorCQRSContainer

    container = DependencyInjectorCQRSContainer()
    with pytest.raises(ContainerError, match=rf"^{NOT_ATTACHED}: DependencyInjector") as info:
        await container.resolve(Handler)
    assert "while resolving Handler" in str(info.value)
    assert "attach_external_container(container)" in str(info.value)
    with pytest.raises(ValueError, match=rf"^{NOT_ATTACHED}"):
        container.external_container


# -- Provider for type X not found --------------------------------------------------------------


async def test_missing_provider_names_the_plain_type_name() -> None:
    containers = pytest.importorskip("dependency_injector.containers")
    providers = pytest.importorskip("dependency_injector.providers")
    from cqrs.container.dependency_injector import DependencyInjectorCQRSContainer

    class Registered:
        pass

    class Missing:  # qualname: test_missing_provider_names_the_plain_type_name.<locals>.Missing
        pass

    class Application(containers.DeclarativeContainer):  # type: ignore[misc]
        registered = providers.Factory(Registered)

    container = DependencyInjectorCQRSContainer()
    container.attach_external_container(Application())
    with pytest.raises(ValueError, match=r"^Provider for type Missing not found") as info:
        await container.resolve(Missing)
    message = str(info.value)
    assert "<locals>" not in message
    assert "Provided types: Registered." in message
    assert "providers.Factory(Missing)" in message


# -- Method not implemented -------------------------------------------------------------------


class HalfContainer(Container[Any]):
    """Subclasses the protocol explicitly and implements nothing."""


async def test_container_protocol_members_not_overridden() -> None:
    container = HalfContainer()  # pyright: ignore[reportAbstractUsage]
    with pytest.raises(
        NotImplementedError, match=r"^Method not implemented: HalfContainer\.resolve"
    ):
        await container.resolve(Handler)
    with pytest.raises(
        NotImplementedError, match=r"^Method not implemented: HalfContainer\.attach"
    ):
        container.attach_external_container(object())
    with pytest.raises(NotImplementedError, match=r"^Method not implemented: HalfContainer\.ext"):
        container.external_container
