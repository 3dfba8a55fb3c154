"""OpenTelemetry traces across the whole path: the start, the workflow, the activity, the tool, the projection.

Off by default. ``OTEL_TRACES_EXPORTER=otlp`` (or ``console``) turns it on for every process that connects to
Temporal through :func:`stepflow.temporal.connect`; the standard ``OTEL_*`` variables configure the rest
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_PROTOCOL`` = ``http/protobuf`` or ``grpc``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ...), read by the
OpenTelemetry SDK itself.

Temporal's own :class:`~temporalio.contrib.opentelemetry.TracingInterceptor`, on the client and so on every worker
made from it, makes the spans of the start, the workflow, its activities and child workflows, and carries the
trace context in Temporal's headers. The product adds spans of its own (:func:`traced`, :func:`span`,
:func:`sandbox_spans`): the starter's checks, the tool run with its sandbox start and process, projection writes.

Every span carries ``execution_id``, ``tool_id`` and ``tenant_id``. The product's spans take them from their
arguments; Temporal's get them from OpenTelemetry baggage: the starter binds them (:func:`bind_execution`), and
each workflow run binds its own execution's (:class:`ExecutionTracingInterceptor`: a composite's steps are child
workflows, so their spans name the step, in the parent's trace). :class:`ExecutionAttributes`, a span processor,
copies the baggage (or the parent span's attributes) onto each span as it starts.
"""

from __future__ import annotations

import functools
import inspect
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import CarrierT, Setter, TextMapPropagator, default_setter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from temporalio import client as temporal_client
from temporalio import worker as temporal_worker
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor

from stepflow.config import TracingSettings, load_tracing_settings

P = ParamSpec("P")
R = TypeVar("R")

KEYS = ("execution_id", "tool_id", "tenant_id")
TRACER_NAME = "stepflow"
DEFAULT_SERVICE_NAME = "stepflow"

_tracer: trace.Tracer = trace.NoOpTracer()
_provider: TracerProvider | None = None
_configured = False


def execution_attributes(*values: Any, **named: Any) -> dict[str, str]:
    """``execution_id`` / ``tool_id`` / ``tenant_id`` found in the given objects (an ExecutionRequest, an activity
    input with ``execution_id`` and ``request``, ...) and keyword values."""
    found: dict[str, str] = {}
    for value in (*values, *named.values()):
        if value is None or isinstance(value, str | bytes | int | float):
            continue
        request = getattr(value, "request", value)
        for key, holder in (("execution_id", value), ("tool_id", request), ("execution_id", request)):
            if isinstance(item := getattr(holder, key, None), str):
                found.setdefault(key, item)
        tenant = getattr(getattr(request, "context", None), "tenant_id", None)
        if isinstance(tenant, str):
            found.setdefault("tenant_id", tenant)
    if isinstance(named.get("execution_id"), str):
        found["execution_id"] = named["execution_id"]
    return found


class ExecutionAttributes(SpanProcessor):
    """Copies ``execution_id`` / ``tool_id`` / ``tenant_id`` onto every span that starts without them: from the
    baggage of its parent context, else from its parent span when that is one of this process."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        have = span.attributes or {}
        parent = trace.get_current_span(parent_context)
        inherited = parent.attributes if isinstance(parent, ReadableSpan) and parent.attributes else {}
        for key in KEYS:
            if key in have:
                continue
            value = baggage.get_baggage(key, parent_context) or inherited.get(key)
            if value is not None:
                span.set_attribute(key, str(value))


class _ExecutionPropagator(TextMapPropagator):
    """The workflow's propagator plus this execution's baggage in every header it writes."""

    def __init__(self, inner: TextMapPropagator, attributes: Mapping[str, str]) -> None:
        self._inner = inner
        self._attributes = dict(attributes)

    def extract(self, carrier: CarrierT, context: Context | None = None, getter: Any = None) -> Context:
        if getter is None:
            return self._inner.extract(carrier, context)
        return self._inner.extract(carrier, context, getter)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        current = context if context is not None else otel_context.get_current()
        for key, value in self._attributes.items():
            current = baggage.set_baggage(key, value, current)
        self._inner.inject(carrier, current, setter)

    @property
    def fields(self) -> set[str]:
        return self._inner.fields


class _ExecutionWorkflowInterceptor(TracingWorkflowInboundInterceptor):
    """Binds the workflow's execution (its input's ``execution_id`` and request) to the spans it makes."""

    async def execute_workflow(self, input: temporal_worker.ExecuteWorkflowInput) -> Any:
        attributes = execution_attributes(*input.args)
        if attributes:
            self.text_map_propagator = _ExecutionPropagator(self.text_map_propagator, attributes)
        return await super().execute_workflow(input)


class ExecutionTracingInterceptor(TracingInterceptor):
    """Temporal's tracing interceptor, whose workflow spans carry their execution's attributes."""

    def workflow_interceptor_class(
        self, input: temporal_worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)
        return _ExecutionWorkflowInterceptor


def _exporter(settings: TracingSettings) -> SpanExporter | None:
    kind = settings.traces_exporter
    if settings.sdk_disabled or kind in (None, "none"):
        return None
    if kind == "console":  # on stderr: stdout is for the CLI's output (--json)
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    protocol = settings.exporter_otlp_traces_protocol or settings.exporter_otlp_protocol or "http/protobuf"
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def configure(
    settings: TracingSettings | None = None, *, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Set up tracing from the ``OTEL_*`` settings (or send spans to ``exporter``, synchronously: tests).

    Idempotent: the first call decides. Returns the provider, None when tracing is off.
    """
    global _tracer, _provider, _configured
    if _configured:
        return _provider
    _configured = True
    chosen = exporter or _exporter(settings or load_tracing_settings())
    if chosen is None:
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "unknown_service")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    _provider = TracerProvider(resource=resource)
    _provider.add_span_processor(ExecutionAttributes())
    _provider.add_span_processor(SimpleSpanProcessor(chosen) if exporter else BatchSpanProcessor(chosen))
    _tracer = _provider.get_tracer(TRACER_NAME)
    return _provider


def reset() -> None:
    """Flush and turn tracing off again (tests)."""
    global _tracer, _provider, _configured
    if _provider is not None:
        _provider.shutdown()
    _tracer, _provider, _configured = trace.NoOpTracer(), None, False


def interceptors() -> list[temporal_client.Interceptor]:
    """The client interceptors for :func:`stepflow.temporal.connect` (configures tracing on first use)."""
    provider = configure()
    if provider is None:
        return []
    return [ExecutionTracingInterceptor(provider.get_tracer("temporalio"))]


@contextmanager
def span(name: str, *subjects: Any, **attributes: Any) -> Iterator[trace.Span]:
    """A product span, current while the block runs; ``subjects`` give execution_id / tool_id / tenant_id."""
    found = {**execution_attributes(*subjects), **{k: str(v) for k, v in attributes.items() if v is not None}}
    with _tracer.start_as_current_span(name, attributes=found) as current:
        yield current


def traced(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate a coroutine function: each call runs in a span ``name`` carrying the execution attributes of its
    arguments (an ``execution_id`` string, a request, an activity input)."""

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if _provider is None:
                return await function(*args, **kwargs)
            bound = signature.bind_partial(*args, **kwargs).arguments
            bound.pop("self", None)
            with _tracer.start_as_current_span(name, attributes=execution_attributes(**bound)):
                return await function(*args, **kwargs)

        return wrapper

    return decorate


def bind_execution(execution_id: str, *subjects: Any) -> None:
    """Name the execution the current span is about, and put it in the baggage Temporal's spans inherit.

    Call it inside a span (:func:`traced`): the baggage is dropped when that span's context is left.
    """
    if _provider is None:
        return
    attributes = {**execution_attributes(*subjects), "execution_id": execution_id}
    trace.get_current_span().set_attributes(attributes)
    current = otel_context.get_current()
    for key, value in attributes.items():
        current = baggage.set_baggage(key, value, current)
    otel_context.attach(current)


def sandbox_spans(wall_ms: float, start_seconds: float | None) -> None:
    """Record a finished sandboxed command as two spans under the current one: ``stepflow.sandbox.start`` (the
    launcher setting up namespaces and mounts) and ``stepflow.sandbox.process`` (the tool's process)."""
    if _provider is None:
        return
    ended = time.time_ns()
    began = ended - int(wall_ms * 1_000_000)
    ready = began + int((start_seconds or 0.0) * 1_000_000_000)
    for name, start, end in (("stepflow.sandbox.start", began, ready), ("stepflow.sandbox.process", ready, ended)):
        _tracer.start_span(name, start_time=start).end(end_time=end)


__all__ = [
    "ExecutionAttributes",
    "ExecutionTracingInterceptor",
    "bind_execution",
    "configure",
    "interceptors",
    "reset",
    "sandbox_spans",
    "span",
    "traced",
]
