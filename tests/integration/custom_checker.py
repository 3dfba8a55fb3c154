"""A permission checker of a user's own, for the STEPFLOW_PERMISSION_CHECKER test: members run echo only."""

from __future__ import annotations

from stepflow.db.reader import ProjectionReader
from stepflow.identity import Principal, Role

CALLS: list[str] = []


class EchoOnly:
    """Anyone of a tenant runs echo and nothing else; reads and cancels within the tenant."""

    async def can_execute_tool(self, principal: Principal, tool_id: str) -> bool:
        CALLS.append(tool_id)
        return tool_id == "echo" and principal.role is not Role.VIEWER

    async def can_read(self, principal: Principal, tenant_id: str) -> bool:
        return principal.may_see(tenant_id)

    async def can_cancel(self, principal: Principal, tenant_id: str) -> bool:
        return principal.may_see(tenant_id)


def checker(reader: ProjectionReader) -> EchoOnly:
    return EchoOnly()
