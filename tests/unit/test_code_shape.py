"""The codebase stays easy to read: no product module over 400 lines, no function over 60 (migrations aside)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("stepflow", "workflows", "activities", "worker", "starter")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _product_modules() -> list[Path]:
    return [
        path for package in PRODUCT for path in sorted((ROOT / package).rglob("*.py")) if "migrations" not in path.parts
    ]


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _product_modules() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for path in _product_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    assert long == {}
