"""The benchmarks of the suite, in the order the table shows them.

Each is a module with a ``measure(context) -> list[Row]`` coroutine; ``shared`` says it measures on the suite's
shared dev server (one server, both sides, started once); ``default`` that a run without ``--only`` includes it.
To add one (the API round trip, when the API exists), write its module beside the others and list it here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from benchmarks import latency, memory, parallel, projection_writer, sandbox, sequential, shapes, throughput
from benchmarks.harness.context import Context
from benchmarks.harness.stats import Row


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its name on the command line, its title, how to measure it, whether it uses the shared server."""

    key: str
    title: str
    measure: Callable[[Context], Awaitable[list[Row]]]
    shared: bool
    default: bool = True  # in the run without --only


SUITE: tuple[Benchmark, ...] = (
    Benchmark("throughput", throughput.NAME, throughput.measure, shared=True),
    Benchmark("latency", latency.NAME, latency.measure, shared=True),
    Benchmark("sequential", sequential.NAME, sequential.measure, shared=True),
    Benchmark("parallel", parallel.NAME, parallel.measure, shared=True),
    Benchmark("memory", memory.NAME, memory.measure, shared=False),  # a fresh server per side and round
    Benchmark("sandbox", sandbox.NAME, sandbox.measure, shared=True),
    Benchmark("writer", projection_writer.NAME, projection_writer.measure, shared=False),
    Benchmark("shapes", shapes.NAME, shapes.measure, shared=True, default=False),  # prototypes for the gaps
)
