"""``stepflow grants``: add, list and remove, with the errors a typo gets (no Temporal needed)."""

from __future__ import annotations

from tests.cli.conftest import Cli


async def test_grants_are_added_listed_and_removed(cli: Cli) -> None:
    assert (await cli("grants", "add", "--tenant", "acme", "--role", "member", "--tool", "echo")).code == 0
    assert (await cli("grants", "add", "--tenant", "acme", "--user", "bob", "--tool", "*")).code == 0
    again = await cli("grants", "add", "--tenant", "acme", "--user", "bob", "--tool", "*")
    assert again.code == 0, "granting twice changes nothing"
    listed = (await cli("grants", "list", "--json")).json()
    assert [(g["tenant_id"], g["tool_id"], g["subject"]) for g in listed] == [
        ("acme", "*", "user:bob"),
        ("acme", "echo", "role:member"),
    ]
    assert (await cli("grants", "list", "--tenant", "globex", "--json")).json() == []
    removed = await cli("grants", "remove", "--tenant", "acme", "--user", "bob", "--tool", "*", "--json")
    assert removed.code == 0 and removed.json()["removed"]["subject"] == "user:bob"
    missing = await cli("grants", "remove", "--tenant", "acme", "--user", "bob", "--tool", "*")
    assert missing.code == 6 and "no such grant" in missing.stderr


async def test_a_grant_names_exactly_one_subject(cli: Cli) -> None:
    neither = await cli("grants", "add", "--tenant", "acme", "--tool", "echo")
    both = await cli("grants", "add", "--tenant", "acme", "--tool", "echo", "--user", "u", "--role", "member")
    for result in (neither, both):
        assert result.code == 6 and "exactly one of --user and --role" in result.stderr
    bad_role = await cli("grants", "add", "--tenant", "acme", "--tool", "echo", "--role", "owner")
    assert bad_role.code == 2, "typer refuses a role that is not admin, member or viewer"
