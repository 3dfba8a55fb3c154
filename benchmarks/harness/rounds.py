"""Alternating rounds: every side measured once per round, the order rotated from one round to the next.

With two sides the rounds run A B, B A, A B ...; with three, A B C, B C A, C A B ... So neither side always
runs first (on a warmer server, or right after the other side's garbage), and whatever the machine does during
a round falls on every side of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

Measurement = dict[str, float]
"""One side's figures for one round: metric name -> value."""

Side = Callable[[], Awaitable[Measurement]]


async def alternate(rounds: int, sides: Mapping[str, Side]) -> dict[str, dict[str, list[float]]]:
    """Run each side once per round in rotating order; ``{side: {metric: [value per round]}}``."""
    names = list(sides)
    found: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            for metric, value in (await sides[name]()).items():
                found[name].setdefault(metric, []).append(value)
    return found
