"""Configuration: every ``STEPFLOW_*`` value in the spec's units, and a bad value named in a ConfigError."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from stepflow.config import load_settings
from stepflow.errors import ConfigError
from tests.workflows import probe_tools
from worker.build import build_registry


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No STEPFLOW_* variable of the machine running the tests leaks in."""
    import os

    for name in list(os.environ):
        if name.startswith("STEPFLOW_"):
            monkeypatch.delenv(name)
    yield monkeypatch


def test_defaults_work_on_a_fresh_machine() -> None:
    settings = load_settings()
    assert settings.executor.default_timeout_delta == timedelta(seconds=300)
    assert settings.executor.retry_delay_delta == timedelta(seconds=1)
    assert settings.executor.max_retry_count == 3
    assert settings.executor.max_concurrent_executions == 100
    assert settings.scheduler.queue_size == 1000
    assert settings.worker_pool.min_workers <= settings.worker_pool.max_workers
    assert settings.temporal.address == "127.0.0.1:7233"
    assert settings.temporal.namespace == "default"
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url.endswith("/.stepflow/stepflow.db")


def test_spec_units_default_timeout_in_seconds_retry_delay_in_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPFLOW_EXECUTOR_DEFAULT_TIMEOUT", "90")
    monkeypatch.setenv("STEPFLOW_EXECUTOR_RETRY_DELAY", "250")
    monkeypatch.setenv("STEPFLOW_EXECUTOR_MAX_RETRY_COUNT", "7")
    monkeypatch.setenv("STEPFLOW_EXECUTOR_MAX_CONCURRENT_EXECUTIONS", "12")
    monkeypatch.setenv("STEPFLOW_WORKER_POOL_IDLE_TIMEOUT", "30")
    monkeypatch.setenv("STEPFLOW_SCHEDULER_ENABLE_PRIORITY_QUEUE", "false")
    settings = load_settings()
    assert settings.executor.default_timeout_delta == timedelta(seconds=90)
    assert settings.executor.retry_delay_delta == timedelta(milliseconds=250)
    assert settings.executor.max_retry_count == 7
    assert settings.executor.max_concurrent_executions == 12
    assert settings.worker_pool.idle_timeout == 30
    assert settings.scheduler.enable_priority_queue is False


def test_temporal_data_dir_and_database_url_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STEPFLOW_TEMPORAL_ADDRESS", "temporal.internal:7234")
    monkeypatch.setenv("STEPFLOW_TEMPORAL_NAMESPACE", "tools")
    monkeypatch.setenv("STEPFLOW_TEMPORAL_TASK_QUEUE", "stepflow-eu")
    monkeypatch.setenv("STEPFLOW_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert (settings.temporal.address, settings.temporal.namespace, settings.temporal.task_queue) == (
        "temporal.internal:7234",
        "tools",
        "stepflow-eu",
    )
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{(tmp_path / 'stepflow.db').resolve()}"
    monkeypatch.setenv("STEPFLOW_DATABASE_URL", "postgresql+asyncpg://u:p@db/stepflow")
    assert load_settings().resolved_database_url == "postgresql+asyncpg://u:p@db/stepflow"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STEPFLOW_EXECUTOR_DEFAULT_TIMEOUT", "five minutes"),
        ("STEPFLOW_EXECUTOR_DEFAULT_TIMEOUT", "0"),
        ("STEPFLOW_EXECUTOR_RETRY_DELAY", "-5"),
        ("STEPFLOW_EXECUTOR_MAX_RETRY_COUNT", "-1"),
        ("STEPFLOW_EXECUTOR_MAX_CONCURRENT_EXECUTIONS", "0"),
        ("STEPFLOW_SCHEDULER_QUEUE_SIZE", "lots"),
        ("STEPFLOW_SCHEDULER_ENABLE_FAIR_SCHEDULING", "perhaps"),
        ("STEPFLOW_WORKER_POOL_MAX_WORKERS", "0"),
        ("STEPFLOW_WORKER_POOL_IDLE_TIMEOUT", "-1"),
        ("STEPFLOW_TEMPORAL_NAMESPACE", ""),
        ("STEPFLOW_TEMPORAL_UI_PORT", "70000"),
        ("STEPFLOW_LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert variable in str(error.value)
    assert error.value.kind == "ConfigError"


def test_min_workers_above_max_workers_names_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPFLOW_WORKER_POOL_MIN_WORKERS", "20")
    monkeypatch.setenv("STEPFLOW_WORKER_POOL_MAX_WORKERS", "10")
    with pytest.raises(ConfigError, match=r"STEPFLOW_WORKER_POOL_MIN_WORKERS.*STEPFLOW_WORKER_POOL_MAX_WORKERS"):
        load_settings()


def test_tool_modules_are_comma_separated_and_loaded_by_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPFLOW_TOOL_MODULES", f" {probe_tools.PROBE_MODULE} , ,stepflow.tools.builtin,")
    settings = load_settings()
    assert settings.tool_modules == [probe_tools.PROBE_MODULE, "stepflow.tools.builtin"]
    registry = build_registry(settings)
    assert registry.resolve("probe-count").id == "probe-count"
    assert registry.resolve("echo").id == "echo"


def test_an_unknown_tool_module_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPFLOW_TOOL_MODULES", "no_such_package.tools")
    with pytest.raises(ConfigError, match=r"'no_such_package\.tools' \(STEPFLOW_TOOL_MODULES\) cannot be imported"):
        build_registry(load_settings())
