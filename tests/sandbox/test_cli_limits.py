"""``stepflow run`` / ``start`` take a request's limits: --memory-mb, --cpu-limit, --cpu-seconds, --max-processes,
--max-output-bytes, --network; through the console script against a worker on the dev server."""

from __future__ import annotations

import pytest

from starter.cli.common import EXIT_CODES
from starter.cli.requests import build_limits, build_request
from stepflow.config import Settings
from stepflow.errors import InvalidParameters
from stepflow.models import Priority, ResourceLimits
from tests.cli.conftest import cli_environment, run_cli
from tests.conftest import running_worker
from tests.sandbox.helpers import requires_sandbox


def test_limit_options_become_the_requests_resource_limits():
    limits = build_limits(
        memory_mb=64, cpu_limit=0.5, cpu_seconds=3, max_processes=4, max_output_bytes=99, network=True
    )
    request = build_request("wc", None, None, priority=Priority.NORMAL, limits=limits)
    assert request.options.resource_limits == ResourceLimits(
        memory_mb=64, cpu_limit=0.5, cpu_seconds=3, max_processes=4, max_output_bytes=99, network=True
    )
    with pytest.raises(InvalidParameters, match="--cpu-limit must be positive, got 0"):
        build_limits(cpu_limit=0)


@pytest.mark.dev_server
@requires_sandbox
async def test_run_with_limits_through_the_console_script(dev_env, settings: Settings):
    env = cli_environment(settings, dev_env.client.service_client.config.target_host)
    async with running_worker(dev_env, settings):
        done = await run_cli(
            "run", "wc", "-p", "text=a b c", "--memory-mb", "64", "--cpu-limit", "0.5", "--max-processes", "4",
            "--json", env=env,
        )  # fmt: skip
        assert done.code == 0 and done.json()["output"] == {"lines": 1, "words": 3}, done
        refused = await run_cli("run", "echo", "-p", "m=1", "--memory-mb", "64", "--json", env=env)
        assert refused.code == EXIT_CODES["ResourceLimitExceeded"], refused
        assert 'isolation=\\"sandbox\\"' in refused.stdout or 'isolation="sandbox"' in refused.stdout, refused
        bad = await run_cli("start", "wc", "-p", "text=x", "--max-output-bytes", "-1", "--json", env=env)
        assert bad.code == EXIT_CODES["InvalidParameters"] and "--max-output-bytes must be positive" in bad.stdout
