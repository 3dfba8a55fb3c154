"""What the Executor's principal may do: its requests bound to it, each start, read and cancel checked.

A request's tenant and user come from the principal: a member or viewer that names another tenant or user
is refused (PermissionDenied); an admin may act for anyone it names. Lists, logs and metrics are scoped to
the principal's tenant in the SQL query itself (an admin sees every tenant unless it names one).
"""

from __future__ import annotations

from stepflow.errors import PermissionDenied
from stepflow.identity import ExecutionPermissionChecker, Principal
from stepflow.models import ExecutionFilter, ExecutionRequest, MetricFilter


class Access:
    """One principal and the permission checker that answers for it."""

    def __init__(self, principal: Principal, permissions: ExecutionPermissionChecker) -> None:
        self.principal = principal
        self._permissions = permissions

    def bind(self, request: ExecutionRequest) -> ExecutionRequest:
        """The request with the principal's tenant and user (an admin's request is taken as it is)."""
        principal, context = self.principal, request.context
        if principal.is_admin:
            return request
        given = context.model_fields_set
        tenant = context.tenant_id if "tenant_id" in given else principal.tenant_id
        user = context.user_id if "user_id" in given else principal.user_id
        if (tenant, user) != (principal.tenant_id, principal.user_id):
            raise PermissionDenied(
                f"{principal} may not start executions as tenant {tenant!r}, user {user!r}: a request runs for "
                "its caller; leave context.tenant_id and context.user_id out"
            )
        bound = context.model_copy(update={"tenant_id": tenant, "user_id": user})
        return request.model_copy(update={"context": bound})

    async def check_start(self, request: ExecutionRequest) -> None:
        """PermissionDenied unless the principal may run the request's tool."""
        if not await self._permissions.can_execute_tool(self.principal, request.tool_id):
            hint = (
                "a viewer may not start executions"
                if self.principal.role.value == "viewer"
                else f"an admin can grant it: stepflow grants add --tenant {self.principal.tenant_id} "
                f"--user {self.principal.user_id} --tool {request.tool_id}"
            )
            raise PermissionDenied(f"{self.principal} may not run tool {request.tool_id!r}; {hint}")

    async def check_read(self, execution_id: str, tenant_id: str) -> None:
        if not await self._permissions.can_read(self.principal, tenant_id):
            raise PermissionDenied(f"{self.principal} may not read execution {execution_id}: another tenant's")

    async def check_cancel(self, execution_id: str, tenant_id: str) -> None:
        if not await self._permissions.can_cancel(self.principal, tenant_id):
            why = "a viewer may not cancel" if self.principal.may_see(tenant_id) else "another tenant's"
            raise PermissionDenied(f"{self.principal} may not cancel execution {execution_id}: {why}")

    def tenant_scope(self, tenant_id: str | None) -> str | None:
        """The tenant a list is restricted to: the principal's own (PermissionDenied for another); any for admin."""
        if self.principal.is_admin:
            return tenant_id
        if tenant_id is not None and tenant_id != self.principal.tenant_id:
            raise PermissionDenied(f"{self.principal} may not list executions of tenant {tenant_id!r}")
        return self.principal.tenant_id

    def executions(self, execution_filter: ExecutionFilter | None) -> ExecutionFilter:
        scoped = execution_filter or ExecutionFilter()
        return scoped.model_copy(update={"tenant_id": self.tenant_scope(scoped.tenant_id)})

    def metrics(self, metric_filter: MetricFilter | None) -> MetricFilter:
        scoped = metric_filter or MetricFilter()
        return scoped.model_copy(update={"tenant_id": self.tenant_scope(scoped.tenant_id)})
