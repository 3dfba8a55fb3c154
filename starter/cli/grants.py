"""``stepflow grants add | list | remove``: which tools a tenant's users or roles may run.

The default permission checker denies a member every tool it was not granted (:mod:`stepflow.identity`);
admins (the local CLI, operators) run everything and viewers nothing. Grants live in the projection's
``tool_grants`` table, so these commands need the database, not Temporal.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from starter import console
from starter.cli import common
from stepflow.errors import InvalidParameters
from stepflow.identity import Role
from stepflow.models import ToolGrant

grants_app = typer.Typer(help="Grant tools to a tenant's users or roles (deny unless granted).", no_args_is_help=True)

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant whose callers get the grant.")]
UserOpt = Annotated[str | None, typer.Option("--user", help="Grant to this user of the tenant.")]
RoleOpt = Annotated[Role | None, typer.Option("--role", help="Grant to every principal of the tenant with this role.")]
ToolOpt = Annotated[str, typer.Option("--tool", help="The tool id, or * for every tool.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a human view.")]


def _grant(tenant: str, user: str | None, role: Role | None, tool: str) -> ToolGrant:
    if (user is None) == (role is None):
        raise InvalidParameters("give exactly one of --user and --role, e.g. --user alice or --role member")
    subject = f"user:{user}" if user is not None else f"role:{role.value if role else ''}"
    try:
        return ToolGrant(tenant_id=tenant, tool_id=tool, subject=subject)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidParameters(f"invalid grant: {problems}") from None


@grants_app.command("add")
def add(tenant: TenantOpt, tool: ToolOpt, user: UserOpt = None, role: RoleOpt = None, as_json: JsonOpt = False) -> None:
    """Let a user (or every principal with a role) of a tenant run a tool."""

    async def body() -> int:
        grant = _grant(tenant, user, role, tool)
        async with common.projection() as projection:
            await projection.writer.add_grant(grant)
        if as_json:
            common.print_json(grant)
        else:
            console.stdout.print(f"granted: {_describe(grant)}")
        return 0

    common.run(body(), as_json=as_json)


@grants_app.command("remove")
def remove(
    tenant: TenantOpt, tool: ToolOpt, user: UserOpt = None, role: RoleOpt = None, as_json: JsonOpt = False
) -> None:
    """Withdraw a grant (exit 6 when there was none)."""

    async def body() -> int:
        grant = _grant(tenant, user, role, tool)
        async with common.projection() as projection:
            removed = await projection.writer.remove_grant(grant)
        if not removed:
            raise InvalidParameters(f"no such grant: {_describe(grant)}; `stepflow grants list` shows them")
        if as_json:
            common.print_json({"removed": grant})
        else:
            console.stdout.print(f"removed: {_describe(grant)}")
        return 0

    common.run(body(), as_json=as_json)


@grants_app.command("list")
def list_grants(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's grants.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the grants, by tenant, tool and subject."""

    async def body() -> int:
        async with common.projection() as projection:
            found = await projection.reader.list_grants(tenant)
        if as_json:
            common.print_json(found)
            return 0
        table = Table(title="tool grants")
        for column in ("tenant", "tool", "granted to", "since (UTC)"):
            table.add_column(column, overflow="fold")
        for grant in found:
            since = grant.created_at.strftime("%Y-%m-%d %H:%M:%S") if grant.created_at else ""
            table.add_row(grant.tenant_id, grant.tool_id, grant.subject, since)
        if not found:
            table.caption = "no grants: members may run no tool (admins run every tool)"
        console.stdout.print(table)
        return 0

    common.run(body(), as_json=as_json)


def _describe(grant: ToolGrant) -> str:
    tool = "every tool" if grant.tool_id == "*" else f"tool {grant.tool_id!r}"
    return f"{grant.subject} of tenant {grant.tenant_id!r} may run {tool}"


def register(app: typer.Typer) -> None:
    """Add ``stepflow grants ...`` to ``app``."""
    app.add_typer(grants_app, name="grants")
