"""Custom search attributes: how executions are found and filtered in the Temporal Web UI.

``stepflow server`` and ``temporal-dev.yml`` register the same keys; :data:`DEV_SERVER_ARGS` is that list. What
an execution starts with is :func:`stepflow.workflow_start.initial_search_attributes`.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

TOOL_ID = SearchAttributeKey.for_keyword("StepflowToolId")
TENANT_ID = SearchAttributeKey.for_keyword("StepflowTenantId")
USER_ID = SearchAttributeKey.for_keyword("StepflowUserId")
STATUS = SearchAttributeKey.for_keyword("StepflowStatus")

ALL_KEYS: tuple[SearchAttributeKey[str], ...] = (TOOL_ID, TENANT_ID, USER_ID, STATUS)

DEV_SERVER_ARGS: tuple[str, ...] = tuple(
    arg for key in ALL_KEYS for arg in ("--search-attribute", f"{key.name}=Keyword")
)


async def register(client: Client, namespace: str) -> None:
    """Register the keys on a server that lacks them (the dev server registers them at start)."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in ALL_KEYS},
        )
    )
