"""Connecting to Temporal with the shared data converter, and a clear error when nobody answers."""

from __future__ import annotations

from temporalio.client import Client

from stepflow.config import TemporalSettings
from stepflow.converter import DATA_CONVERTER
from stepflow.errors import InternalError


async def connect(settings: TemporalSettings) -> Client:
    """A client for ``settings.address`` / ``namespace``; InternalError saying how to start a server otherwise."""
    try:
        return await Client.connect(settings.address, namespace=settings.namespace, data_converter=DATA_CONVERTER)
    except RuntimeError as exc:
        raise InternalError(
            f"cannot reach the Temporal server at {settings.address} (namespace {settings.namespace!r}): {exc}. "
            "Start one with `stepflow server` (or `stepflow dev` for a server and a worker), "
            "or point STEPFLOW_TEMPORAL_ADDRESS at a running one."
        ) from None
