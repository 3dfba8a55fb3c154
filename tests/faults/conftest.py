"""Fault-injection tests (marker ``faults``, run by ``make faults``, left out of ``make test``).

Each test starts real ``stepflow worker`` processes (their own process groups) and injects a real fault: a
SIGKILL of a worker, a Temporal dev server stopped and restarted, a PostgreSQL database refusing connections.
The figures they measure are printed at the end of the run.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault-injection figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
