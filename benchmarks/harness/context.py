"""What a benchmark is given: the run's choices (quick or full, server settings on or off), its directory, and the
shared stage for those that measure through a dev server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness.stage import Stage


class Skipped(Exception):
    """This benchmark cannot run on this machine; the message says why."""


@dataclass
class Context:
    """The run's settings, shared by every benchmark."""

    quick: bool
    tuned: bool
    directory: Path
    rounds_override: int | None = None
    postgres_url: str | None = None
    shared: Stage | None = None

    @property
    def tool_file(self) -> Path:
        """The suite's tool file (composites ``chain-N`` / ``fan-N``, command tool ``true``), written at start."""
        return self.directory / "benchmark-tools.toml"

    def pick(self, full: int, quick: int) -> int:
        """``full`` in a full run, ``quick`` under ``--quick``."""
        return quick if self.quick else full

    def rounds(self, full: int, quick: int = 2) -> int:
        """How many rounds: ``--rounds`` when given, else ``full`` or ``quick``."""
        return self.rounds_override or self.pick(full, quick)

    @property
    def stage(self) -> Stage:
        """The shared dev server with both sides (the suite starts it for benchmarks that ask for it)."""
        if self.shared is None:
            raise RuntimeError("this benchmark needs the shared stage, and it was not started")
        self.shared.check_workers()
        return self.shared
