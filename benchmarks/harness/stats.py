"""What a benchmark reports: a :class:`Row` of per-round values for a subject and its baseline, and their summary.

Every figure is kept per round. A row's ratio is the median of the rounds' ratios (subject / baseline of the
same round), so drift that falls on a whole round (other processes on the machine, a server warming up) falls on
both sides of that ratio alike.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, linearly interpolated."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no samples")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """Median and range of a list of per-round values."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        return cls(statistics.median(values), min(values), max(values))

    @property
    def spread(self) -> float:
        """Half the range, relative to the median (0.05 = the rounds lie within about ±5 %)."""
        return (self.high - self.low) / 2 / self.median if self.median else 0.0


@dataclass
class Row:
    """One line of the table: a metric measured on a subject and on its baseline, once per round each."""

    benchmark: str
    metric: str
    subject: str
    baseline: str
    subject_values: list[float] = field(default_factory=list)
    baseline_values: list[float] = field(default_factory=list)
    goal: str = ""
    note: str = ""

    @property
    def subject_summary(self) -> Summary:
        return Summary.of(self.subject_values)

    @property
    def baseline_summary(self) -> Summary:
        return Summary.of(self.baseline_values)

    @property
    def ratios(self) -> list[float]:
        """Subject / baseline of each round."""
        return [s / b for s, b in zip(self.subject_values, self.baseline_values, strict=True) if b]

    @property
    def ratio(self) -> Summary | None:
        ratios = self.ratios
        return Summary.of(ratios) if ratios else None

    def as_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "benchmark": self.benchmark,
            "metric": self.metric,
            "subject": self.subject,
            "baseline": self.baseline,
            "subject_values": self.subject_values,
            "baseline_values": self.baseline_values,
            "subject_median": self.subject_summary.median,
            "baseline_median": self.baseline_summary.median,
            "ratio_median": None if ratio is None else ratio.median,
            "ratios": self.ratios,
            "goal": self.goal,
            "note": self.note,
        }
