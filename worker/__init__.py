"""The Temporal worker: registry, projection and Worker wiring, and the process that runs it."""

from worker.build import build_registry, build_worker, run_worker

__all__ = ["build_registry", "build_worker", "run_worker"]
