"""``python -m benchmarks [--quick] [--json FILE] [--markdown FILE] [--only NAME ...] [--rounds N] ...``.

Starts its own dev server (``stepflow server``'s command line), a product worker and a bare worker, runs each
benchmark's sides in alternating rounds and prints one table; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import logging
import os
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from benchmarks.harness.context import Context, Skipped
from benchmarks.harness.processes import ROOT
from benchmarks.harness.report import machine, markdown, print_report, write_json
from benchmarks.harness.stage import stage
from benchmarks.harness.stats import Row
from benchmarks.parallel import fan_out
from benchmarks.product_tools import write_tool_file
from benchmarks.sequential import STEPS
from benchmarks.suite import SUITE
from stepflow.logging import configure_logging

SLOTS = 200  # the workers' activity slots in the shared stage


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, two rounds: the whole suite in a minute")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table to FILE as Markdown")
    parser.add_argument("--only", nargs="+", choices=[b.key for b in SUITE], metavar="NAME", help="run only these")
    parser.add_argument("--rounds", type=int, help="rounds per benchmark (default: 5, 3 for memory and writer)")
    parser.add_argument(
        "--without-server-settings",
        action="store_true",
        help="run the dev server with Temporal's defaults instead of stepflow server's settings",
    )
    parser.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep it (logs, databases)")
    return parser.parse_args(argv)


def compile_sources() -> None:
    """Write bytecode caches, as an installed package has them (this environment may set PYTHONDONTWRITEBYTECODE:
    without caches every worker would compile the project at start)."""
    sys.dont_write_bytecode = False
    for package in ("workflows", "activities", "stepflow", "starter", "worker", "benchmarks"):
        compileall.compile_dir(ROOT / package, quiet=1)


async def run(context: Context, selected: list[str]) -> tuple[list[Row], dict[str, str]]:
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    benchmarks = [b for b in SUITE if b.key in selected]
    async with AsyncExitStack() as stack:
        if any(b.shared for b in benchmarks):
            context.shared = await stack.enter_async_context(
                stage(context.directory / "shared", context.tool_file, tuned=context.tuned, slots=SLOTS)
            )
        for benchmark in benchmarks:
            started = time.monotonic()
            print(f"{benchmark.title} ...", file=sys.stderr, flush=True)
            try:
                rows += await benchmark.measure(context)
            except Skipped as reason:
                skipped[benchmark.title] = str(reason)
            print(f"{benchmark.title}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return rows, skipped


async def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    configure_logging(level=logging.WARNING)
    compile_sources()
    postgres_url = os.environ.get("STEPFLOW_TEST_POSTGRES_URL")
    selected = args.only or [b.key for b in SUITE if b.default]
    with tempfile.TemporaryDirectory(prefix="stepflow-bench-") as scratch:
        directory = args.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        context = Context(args.quick, not args.without_server_settings, directory, args.rounds, postgres_url)
        write_tool_file(context.tool_file, chain_steps=STEPS, fan_steps=fan_out(context))
        meta: dict[str, Any] = {**machine(), "quick": args.quick, "server_settings": context.tuned}
        started = time.monotonic()
        rows, skipped = await run(context, selected)
        meta.update(seconds=round(time.monotonic() - started), load_average_after=os.getloadavg())
    print_report(rows, skipped, meta)
    if args.json:
        write_json(args.json, rows, skipped, meta)
    if args.markdown:
        args.markdown.write_text(markdown(rows, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
