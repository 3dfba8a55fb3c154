"""A tool's output must fit in what Temporal accepts as an activity result; past that it is a clear limit error.

Temporal refuses a payload above the namespace's blob size limit (``limit.blobSize.error``, 2 MiB by default):
the worker would fail the attempt with a raw ``PayloadsTooLarge``. Every tool's output is measured here first, as
the converter encodes it (JSON), and refused with ``ResourceLimitExceeded`` naming ``max_output_bytes`` and the
cap: the namespace's limit (read once per worker from ``DescribeNamespace``) less :data:`ENVELOPE_BYTES` for what
travels around the output in the same payload.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pydantic_core

from stepflow.errors import ResourceLimitExceeded

DEFAULT_BLOB_LIMIT = 2 * 1024 * 1024
ENVELOPE_BYTES = 16 * 1024
_limits: dict[str, int] = {}


async def payload_cap() -> int:
    """The largest encoded output this worker's namespace accepts (the default limit outside an activity)."""
    from temporalio import activity
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    if not activity.in_activity():
        return DEFAULT_BLOB_LIMIT - ENVELOPE_BYTES
    namespace = activity.info().namespace
    if namespace not in _limits:
        limit = 0
        with contextlib.suppress(Exception):  # an older server without limits: Temporal's default applies
            response = await activity.client().workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace)
            )
            limit = response.namespace_info.limits.blob_size_limit_error
        _limits[namespace] = limit if limit > 0 else DEFAULT_BLOB_LIMIT
    return _limits[namespace] - ENVELOPE_BYTES


def encoded_size(output: Any) -> int:
    """The output's size as the data converter encodes it (JSON)."""
    return len(pydantic_core.to_json(output))


async def check_output(output: Any, tool_id: str) -> None:
    """ResourceLimitExceeded when ``output`` is larger than Temporal accepts as a result."""
    cap = await payload_cap()
    size = encoded_size(output)
    if size > cap:
        raise ResourceLimitExceeded(
            f"max_output_bytes: the output of tool {tool_id!r} is {size} bytes once encoded, above {cap} bytes, the "
            "most this engine's Temporal namespace accepts as a result (its blob size limit less "
            f"{ENVELOPE_BYTES} bytes of envelope); return less, or write large results elsewhere and return a "
            "reference to them"
        )
