"""The demo: a dev server, a worker and one execution of each outcome (placeholder until built)."""

from __future__ import annotations


async def run_demo(*, keep_data: bool = False) -> int:
    """Run the demo; the exit code is 0 when every case ended as expected."""
    raise NotImplementedError
