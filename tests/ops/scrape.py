"""Reading a ``/metrics`` page the way Prometheus does: its own text parser, samples keyed by name and labels."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """One scrape: every sample's value by (sample name, labels), and the family names served."""

    values: Mapping[tuple[str, frozenset[tuple[str, str]]], float]
    families: frozenset[str]

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the series does not exist (yet)."""
        return self.values.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(value for (sample, have), value in self.values.items() if sample == name and wanted <= have)

    def sample_names(self) -> set[str]:
        return {name for name, _ in self.values}


def parse(text: str) -> Scrape:
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            values[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(values, frozenset(families))


async def scrape(url: str) -> Scrape:
    """GET the page from a thread (the endpoint's collectors call back into this event loop)."""

    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    return parse(await asyncio.to_thread(get))
