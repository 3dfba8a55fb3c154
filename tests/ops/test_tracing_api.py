"""The tracing API on its own (no Temporal): off by default, spans and the execution they are about."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stepflow.config import TracingSettings
from stepflow.models import ExecutionContext, ExecutionRequest
from stepflow.observability import tracing


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    tracing.reset()
    spans = InMemorySpanExporter()
    tracing.configure(exporter=spans)
    try:
        yield spans
    finally:
        tracing.reset()


def test_tracing_is_off_unless_an_exporter_is_named() -> None:
    for settings in (TracingSettings(), TracingSettings(traces_exporter="none"), TracingSettings(sdk_disabled=True)):
        tracing.reset()
        try:
            assert tracing.configure(settings) is None
            assert tracing.interceptors() == []
        finally:
            tracing.reset()


def test_otlp_is_chosen_by_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "stepflow-worker-eu")
    tracing.reset()
    try:
        provider = tracing.configure()
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "stepflow-worker-eu"
        assert [type(i).__name__ for i in tracing.interceptors()] == ["ExecutionTracingInterceptor"]
    finally:
        tracing.reset()


async def test_spans_carry_the_execution_they_are_about(exporter: InMemorySpanExporter) -> None:
    request = ExecutionRequest(tool_id="echo", context=ExecutionContext(tenant_id="acme"))

    @tracing.traced("check")
    async def check(request: ExecutionRequest) -> None:
        with tracing.span("inner"):
            pass

    @tracing.traced("write")
    async def write(execution_id: str, rows: list[int]) -> None:
        return None

    @tracing.traced("start")
    async def start(request: ExecutionRequest) -> None:
        await check(request)  # before the id is known: tool and tenant only
        tracing.bind_execution("exec-1", request)
        await write("exec-1", [1, 2])
        with tracing.span("nested"):  # nothing given: inherited from the baggage
            pass

    await start(request)
    await write("exec-2", [])
    spans = {span.name: dict(span.attributes or {}) for span in exporter.get_finished_spans()}
    everything = {"execution_id": "exec-1", "tool_id": "echo", "tenant_id": "acme"}
    assert spans["start"] == everything
    assert spans["write"] == {"execution_id": "exec-2"}  # the last one: outside start, no baggage is left
    assert spans["nested"] == everything
    assert spans["check"] == {"tool_id": "echo", "tenant_id": "acme"}
    assert spans["inner"] == {"tool_id": "echo", "tenant_id": "acme"}


def test_console_spans_go_to_stderr_so_that_json_output_stays_parsable(capsys: pytest.CaptureFixture[str]) -> None:
    tracing.reset()
    try:
        assert tracing.configure(TracingSettings(traces_exporter="console")) is not None
        with tracing.span("stepflow.visible"):
            pass
    finally:
        tracing.reset()  # flushes the batch
    captured = capsys.readouterr()
    assert "stepflow.visible" in captured.err
    assert captured.out == ""
