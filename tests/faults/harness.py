"""What the fault-injection tests share: ``stepflow worker`` processes to kill, settings, row checks, figures.

- :class:`WorkerProcess`: a real ``stepflow worker`` in its own session (so its process group can be killed
  whole, as a crashed host or an OOM kill would), with the probe tools loaded and its output in a log file.
- :func:`fault_settings`: the engine's default settings (heartbeat timeout, retries...) on the test's own task
  queue and database; requests carry no options, as a new user's would.
- :func:`projection_counts`: the rows, log lines and metrics of some executions, to find anything written twice;
  :func:`mended_rows`: how many rows a worker's reconciler mended, from its log.
- :data:`FIGURES`: what the tests measured (delays after a fault, rows mended), printed after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from stepflow.config import ExecutorSettings, Settings, TemporalSettings, load_settings
from stepflow.db.projection import Projection
from stepflow.db.schema import execution_logs, execution_metrics, executions
from tests.cli.conftest import STEPFLOW, cli_environment
from tests.faults import probe_tools

REPOSITORY = Path(__file__).resolve().parents[2]

FIGURES: list[str] = []
"""Lines of measurements, printed in the run's terminal summary (tests/faults/conftest.py)."""


def report(line: str) -> None:
    """Keep a measurement for the summary (and print it, for ``-s`` runs)."""
    FIGURES.append(line)
    print(line)


def spread(seconds: Sequence[float], *, unit: str = "s") -> str:
    """``min / median / max`` of some durations (in seconds), shown in ``unit`` (s or ms), for a figure line."""
    scale, digits = (1000, 0) if unit == "ms" else (1, 1)
    low, middle, high = (value * scale for value in (min(seconds), statistics.median(seconds), max(seconds)))
    return f"{low:.{digits}f} / {middle:.{digits}f} / {high:.{digits}f} {unit} (min / median / max)"


def fault_settings(tmp_path: Path, address: str, *, database_url: str | None = None) -> Settings:
    """The default engine settings, on ``address``, a task queue of the test's own and its database."""
    return load_settings(
        data_dir=tmp_path,
        database_url=database_url,
        executor=ExecutorSettings(),
        temporal=TemporalSettings(address=address, task_queue=f"faults-{uuid.uuid4().hex[:12]}", env_config=False),
    )


def worker_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """``stepflow worker``'s environment: the settings, the probe tools, the repository importable."""
    return cli_environment(
        settings,
        settings.temporal.address,
        STEPFLOW_TOOL_MODULES=probe_tools.PROBE_MODULE,
        PYTHONPATH=str(REPOSITORY),
        **extra,
    )


@dataclass
class WorkerProcess:
    """A ``stepflow worker`` process, leader of its own process group."""

    settings: Settings
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                STEPFLOW,
                "worker",
                env=worker_environment(self.settings, **self.extra_env),
                cwd=REPOSITORY,
                start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return self

    async def polling(self, client: Client, *, within: float = 60.0) -> None:
        """Wait until this process polls both the workflow and the activity task queue."""
        identity = f"{self.pid}@"
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            assert self.process is not None and self.process.returncode is None, self.failure("exited at start")
            kinds = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
            if all(identity in pollers for pollers in [await _pollers(client, self.settings, kind) for kind in kinds]):
                return
            await asyncio.sleep(0.2)
        raise AssertionError(self.failure(f"did not poll within {within:.0f}s"))

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and anything it started, with no chance to clean up."""
        os.killpg(self.pid, signal.SIGKILL)

    async def stop(self, *, within: float = 30.0) -> None:
        """SIGTERM (graceful shutdown), SIGKILL after ``within`` seconds; nothing if it has exited."""
        if self.process is None:
            return
        if self.process.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                await asyncio.wait_for(self.process.wait(), within)
            except ProcessLookupError:
                pass
            except TimeoutError:
                self.kill()
        await self.process.wait()

    def failure(self, what: str) -> str:
        tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:] if self.log_path.exists() else ""
        return f"stepflow worker {what}; its log ends:\n{tail}"


async def _pollers(client: Client, settings: Settings, kind: TaskQueueType.ValueType) -> str:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=settings.temporal.task_queue), task_queue_type=kind
        )
    )
    return " ".join(poller.identity for poller in response.pollers)


@dataclass
class ProjectionCounts:
    """Rows of some executions: their statuses, log messages and metric names, each with its count."""

    rows: Counter[str]
    statuses: dict[str, str]
    errors: dict[str, str | None]
    messages: dict[str, Counter[str]]
    seqs: dict[str, Counter[str]]
    metrics: dict[str, Counter[str]]
    attempts: dict[str, float]


async def projection_counts(projection: Projection, ids: Sequence[str]) -> ProjectionCounts:
    """Everything the projection holds for ``ids`` (in a few queries)."""
    counts = ProjectionCounts(Counter(), {}, {}, {i: Counter() for i in ids}, {i: Counter() for i in ids}, {}, {})
    counts.metrics = {i: Counter() for i in ids}
    async with projection.engine.connect() as connection:
        query = select(executions.c.id, executions.c.status, executions.c.error_message)
        for row in await connection.execute(query.where(executions.c.id.in_(ids))):
            counts.rows[row.id] += 1
            counts.statuses[row.id], counts.errors[row.id] = row.status, row.error_message
        query = select(execution_logs.c.execution_id, execution_logs.c.message, execution_logs.c.metadata)
        for row in await connection.execute(query.where(execution_logs.c.execution_id.in_(ids))):
            counts.messages[row.execution_id][row.message] += 1
            counts.seqs[row.execution_id][_seq(row.metadata)] += 1
        query = select(
            execution_metrics.c.execution_id, execution_metrics.c.metric_name, execution_metrics.c.metric_value
        )
        for row in await connection.execute(query.where(execution_metrics.c.execution_id.in_(ids))):
            counts.metrics[row.execution_id][row.metric_name] += 1
            if row.metric_name == "attempts":
                counts.attempts[row.execution_id] = row.metric_value
    return counts


def _seq(metadata: Any) -> str:
    return str(metadata.get("seq")) if isinstance(metadata, dict) else repr(metadata)


def seconds_after(moment: datetime, ends: Sequence[datetime | None]) -> list[float]:
    """How long after ``moment`` each of ``ends`` came (all must be set)."""
    assert all(end is not None for end in ends), "an execution has no close time"
    return [(end - moment).total_seconds() for end in ends if end is not None]


def mended_rows(log_path: Path) -> int:
    """Rows the worker's reconciler mended, from its log lines."""
    mended = 0
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "projection rows mended from Temporal":
                mended += int(entry["count"])
    return mended
