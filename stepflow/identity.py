"""Who is calling: a principal (tenant, user, role), and the spec's ExecutionPermissionChecker.

Every Executor is bound to a principal; a request's tenant and user come from it, never from a field the
caller fills in (only an admin may act for another tenant or user). Roles:

=========  ===========================================================================================
admin      every tenant: operators and the local CLI; runs any tool, reads and cancels anything
member     its own tenant: runs the tools granted to it (or to its role), reads and cancels its tenant's
           executions
viewer     its own tenant, read only
=========  ===========================================================================================

:class:`ExecutionPermissionChecker` is the spec's interface; the default implementation,
:class:`GrantsPermissionChecker`, answers from the ``tool_grants`` table (deny unless granted; ``stepflow
grants add|list|remove``). ``STEPFLOW_PERMISSION_CHECKER=module:attribute`` plugs in another: the attribute
is called with the projection's reader and returns a checker.
"""

from __future__ import annotations

import importlib
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

from stepflow.errors import ConfigError

if TYPE_CHECKING:
    from stepflow.db.reader import ProjectionReader

_NAME = r"^[^\x00-\x1f\x7f]{1,200}$"  # printable, one line


class Role(StrEnum):
    """What a principal may do: see the table in :mod:`stepflow.identity`."""

    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Principal(BaseModel):
    """An authenticated caller: its tenant, its user id and its role."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(min_length=1, max_length=64, pattern=_NAME)
    user_id: str = Field(min_length=1, max_length=200, pattern=_NAME)
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_see(self, tenant_id: str) -> bool:
        """Whether this principal may read executions of ``tenant_id`` (its own tenant, or any for an admin)."""
        return self.is_admin or tenant_id == self.tenant_id

    def __str__(self) -> str:
        return f"{self.role.value} {self.user_id!r} of tenant {self.tenant_id!r}"


LOCAL_ADMIN = Principal(tenant_id="default", user_id="admin", role=Role.ADMIN)
"""The operator at this machine: the local CLI and the demo, which hold the Temporal and database connections
themselves. A request it starts runs for the tenant and user the request names (``--tenant``, ``--user``)."""


class ExecutionPermissionChecker(Protocol):
    """The spec's ExecutionPermissionChecker: asked before every start, read and cancel."""

    async def can_execute_tool(self, principal: Principal, tool_id: str) -> bool: ...
    async def can_read(self, principal: Principal, tenant_id: str) -> bool: ...
    async def can_cancel(self, principal: Principal, tenant_id: str) -> bool: ...


class GrantsPermissionChecker:
    """Roles as in the module's table; a member runs a tool only when ``tool_grants`` grants it (deny by default)."""

    def __init__(self, reader: ProjectionReader) -> None:
        self._reader = reader

    async def can_execute_tool(self, principal: Principal, tool_id: str) -> bool:
        if principal.is_admin:
            return True
        if principal.role is not Role.MEMBER:
            return False
        return await self._reader.has_grant(
            principal.tenant_id, tool_id, subjects=(f"user:{principal.user_id}", f"role:{principal.role.value}")
        )

    async def can_read(self, principal: Principal, tenant_id: str) -> bool:
        return principal.may_see(tenant_id)

    async def can_cancel(self, principal: Principal, tenant_id: str) -> bool:
        return principal.role is not Role.VIEWER and principal.may_see(tenant_id)


def load_permission_checker(reference: str | None, reader: ProjectionReader) -> ExecutionPermissionChecker:
    """The checker named by STEPFLOW_PERMISSION_CHECKER (``module:attribute``), else the grants checker."""
    if not reference:
        return GrantsPermissionChecker(reader)
    module_name, _, attribute = reference.partition(":")
    if not re.fullmatch(r"[\w.]+", module_name) or not re.fullmatch(r"[\w.]+", attribute):
        raise ConfigError(
            f"STEPFLOW_PERMISSION_CHECKER={reference!r} is not module:attribute, e.g. mycompany.auth:checker"
        )
    try:
        target = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"STEPFLOW_PERMISSION_CHECKER={reference!r} cannot be loaded: {exc}") from None
    checker = target(reader) if callable(target) else target
    for method in ("can_execute_tool", "can_read", "can_cancel"):
        if not callable(getattr(checker, method, None)):
            raise ConfigError(f"STEPFLOW_PERMISSION_CHECKER={reference!r} gave a checker without {method}()")
    return checker
