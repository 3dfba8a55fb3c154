"""Seeing the tree from the console script: ``status`` shows a composite's steps, ``list --parent`` lists them."""

from __future__ import annotations

import pytest

from tests.cli.conftest import cli_environment, run_cli
from tests.conftest import running_worker


@pytest.mark.dev_server
async def test_status_and_list_parent_show_the_steps(dev_env, settings):
    env = cli_environment(settings, dev_env.client.service_client.config.target_host)
    async with running_worker(dev_env, settings):
        ran = await run_cli("run", "fan-out-in", "-p", "text=hi", "-p", "seconds=0", "--json", env=env)
        assert ran.code == 0, ran
        body = ran.json()
        assert body["output"] == {"text": "hi!", "slept": 0.0, "summary": "hi! after 0.0s"}
        parent_id = body["execution_id"]

        status = await run_cli("status", parent_id, "--json", env=env)
        assert status.code == 0, status
        assert status.json()["status"] == "completed"
        steps = {row["execution_id"]: row["status"] for row in status.json()["steps"]}
        assert steps == {f"{parent_id}.{step}": "completed" for step in ("start", "wait", "shout", "join")}

        listed = await run_cli("list", "--parent", parent_id, "--json", env=env)
        assert listed.code == 0, listed
        assert {row["execution_id"] for row in listed.json()} == set(steps)
        assert {row["parent_execution_id"] for row in listed.json()} == {parent_id}

        human = await run_cli("status", parent_id, env={**env, "COLUMNS": "200"})
        assert human.code == 0, human
        assert "steps" in human.stdout and "shout" in human.stdout and "echo 1.0.0" in human.stdout

        leaf = await run_cli("status", f"{parent_id}.shout", "--json", env=env)
        assert leaf.code == 0, leaf
        assert "steps" not in leaf.json()
