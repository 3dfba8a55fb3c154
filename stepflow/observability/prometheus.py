"""The ``/metrics`` endpoint of a worker (or API) process: the product's metrics and Temporal's, on one address.

:func:`serve` starts prometheus-client's HTTP server on ``STEPFLOW_METRICS_ADDRESS`` (nothing is served unless
it is set). Temporal's SDK exports its own worker metrics (task slots, poll and schedule-to-start latencies,
activity and workflow task outcomes, RPC errors: ``temporal_*``) through the Prometheus exporter of its Runtime,
the Rust core's own HTTP server. :func:`serve` binds that exporter to a loopback port the OS picks, and a
collector reads its page at each scrape and passes its families through, so one scrape of one address returns
both. :func:`stepflow.temporal.connect` creates every client on that Runtime (:func:`temporal_runtime`).

Why one address rather than two: one scrape target per process, one port to publish in Compose or Kubernetes, one
``up`` series to alert on, and both sets of metrics share the ``instance`` label the dashboard joins them on. The
alternatives cost more: the SDK's MetricBuffer would mean re-implementing its counters and histograms by hand,
its OpenTelemetry route would add an OpenTelemetry metrics pipeline just to feed Prometheus, and recording the
product's metrics through the SDK's meter would leave prometheus-client out. The price is one loopback HTTP
request per scrape.

The task queue's backlog is read the same way, at scrape time (:func:`watch_backlog`): one
``describe_task_queue`` per scrape, none when nobody scrapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import urllib.request
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from stepflow.config import MetricsSettings
from stepflow.observability.metrics import REGISTRY, label_tenants

log = structlog.get_logger(__name__)

BACKLOG_METRIC = "stepflow_task_queue_backlog"
_SCRAPE_TIMEOUT = 5.0


class TemporalSdkCollector(Collector):
    """The families of the SDK's Prometheus exporter, read from its loopback page at each scrape."""

    def __init__(self, url: str) -> None:
        self.url = url

    def describe(self) -> Iterable[Metric]:
        return []  # names are the SDK's; not read at registration

    def collect(self) -> Iterable[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=_SCRAPE_TIMEOUT) as response:
                text = response.read().decode()
        except OSError as exc:
            log.warning("Temporal SDK metrics unavailable", url=self.url, error=str(exc))
            return []
        return list(text_string_to_metric_families(text))


class BacklogCollector(Collector):
    """``stepflow_task_queue_backlog``: Temporal's approximate backlog of each watched task queue, read per scrape."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.readers: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {}

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            BACKLOG_METRIC,
            "Tasks waiting for a worker on the task queue (Temporal's statistics).",
            labels=["task_queue"],
        )
        if _running_loop() is self._loop:  # a collect on the loop's own thread could never get its answer
            return [family]
        for task_queue, read in list(self.readers.items()):
            try:
                backlog = asyncio.run_coroutine_threadsafe(read(), self._loop).result(_SCRAPE_TIMEOUT)
            except Exception as exc:  # a scrape must not fail because Temporal did not answer in time
                log.warning("task queue backlog unavailable", task_queue=task_queue, error=str(exc))
                continue
            family.add_metric([task_queue], backlog)
        return [family]


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@dataclass
class MetricsEndpoint:
    """A running endpoint: ``http://{address}/metrics``."""

    address: str
    server: WSGIServer
    thread: threading.Thread
    collectors: list[Collector] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def close(self) -> None:
        """Stop serving (tests; a worker serves until its process exits)."""
        global _endpoint, _backlog
        self.server.shutdown()
        self.server.server_close()
        for collector in self.collectors:
            with contextlib.suppress(KeyError):
                REGISTRY.unregister(collector)
        if _endpoint is self:
            _endpoint, _backlog = None, None


_runtime: Runtime | None = None
_sdk_url: str | None = None
_endpoint: MetricsEndpoint | None = None
_backlog: BacklogCollector | None = None


def _loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def temporal_runtime() -> Runtime | None:
    """The Runtime whose Prometheus exporter :func:`serve` reads, once it has run (None: the SDK's default)."""
    return _runtime


def _start_runtime() -> str:
    """Create the process's Temporal Runtime with its Prometheus exporter (once: it cannot be stopped)."""
    global _runtime, _sdk_url
    if _runtime is None or _sdk_url is None:
        address = f"127.0.0.1:{_loopback_port()}"
        exporter = PrometheusConfig(bind_address=address, counters_total_suffix=True, durations_as_seconds=True)
        _runtime = Runtime(telemetry=TelemetryConfig(metrics=exporter))
        _sdk_url = f"http://{address}/metrics"
    return _sdk_url


def serve(settings: MetricsSettings) -> MetricsEndpoint | None:
    """Serve ``/metrics`` on ``settings.address`` (None: metrics are off); call before connecting to Temporal."""
    global _endpoint, _backlog
    label_tenants(settings.tenants)
    if settings.address is None:
        return None
    if _endpoint is not None:
        return _endpoint
    host, _, port = settings.address.rpartition(":")
    sdk = TemporalSdkCollector(_start_runtime())
    server, thread = start_http_server(int(port), addr=host or "0.0.0.0", registry=REGISTRY)
    bound_port = server.server_address[1]
    _endpoint = MetricsEndpoint(f"{host or '0.0.0.0'}:{bound_port}", server, thread, [sdk])
    REGISTRY.register(sdk)
    loop = _running_loop()
    if loop is not None:  # outside an event loop there is no client to read the backlog with
        _backlog = BacklogCollector(loop)
        REGISTRY.register(_backlog)
        _endpoint.collectors.append(_backlog)
    log.info("metrics served", url=_endpoint.url)
    return _endpoint


def watch_backlog(client: Client, task_queue: str) -> None:
    """Report ``task_queue``'s backlog on the endpoint (read at scrape time); a no-op when metrics are off."""
    from stepflow.monitoring import queue_length

    if _endpoint is not None and _backlog is not None:
        _backlog.readers[task_queue] = lambda: queue_length(client, task_queue)


__all__ = ["MetricsEndpoint", "serve", "temporal_runtime", "watch_backlog"]
