"""executor=client is recognised by its class, without importing Dask."""

from __future__ import annotations

from stagewidget.engine.cluster import DaskExecutor, is_dask_client
from stagewidget.engine.executors import resolve_executor


class Client:  # stands in for distributed.Client
    pass


Client.__module__ = "distributed.client"


class GatewayClient(Client):  # a subclass from another package
    pass


class NotDask:
    pass


def test_a_distributed_client_and_its_subclasses_are_recognised() -> None:
    assert is_dask_client(Client()) and is_dask_client(GatewayClient())
    assert not is_dask_client(NotDask()) and not is_dask_client("thread")


def test_a_client_resolves_to_a_dask_executor_on_it() -> None:
    client = GatewayClient()
    executor = resolve_executor(client)
    assert isinstance(executor, DaskExecutor) and executor.client is client
