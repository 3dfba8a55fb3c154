"""Every setting does something: a ``Settings`` field that no product code reads is a documented lie.

The check reads the product's source (not the tests'): each field of each settings class must be read somewhere
outside ``stepflow/config.py``: as an attribute, by its name (``getattr(settings, "field")``), or through a
property of its class that is. It goes by names, so it can be fooled by a namesake; it cannot miss a field
that no code names at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pydantic_settings import BaseSettings

from stepflow import config

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("stepflow", "workflows", "activities", "worker", "starter")
CONFIG = ROOT / "stepflow" / "config.py"


def _attributes_read(paths: list[Path]) -> set[str]:
    """Attribute names read, and string constants (names given to ``getattr``), in the given files."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
    return names


def _properties(cls: type) -> dict[str, set[str]]:
    """Each property of ``cls`` defined in config.py, with the ``self.<field>`` names it reads."""
    tree = ast.parse(CONFIG.read_text(encoding="utf-8"))
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and any(
                    isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list
                ):
                    found[item.name] = {
                        sub.attr
                        for sub in ast.walk(item)
                        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "self"
                    }
    return found


def _settings_classes() -> list[type[BaseSettings]]:
    return [
        value
        for value in vars(config).values()
        if isinstance(value, type) and issubclass(value, BaseSettings) and value is not BaseSettings
    ]


def unused_settings() -> list[str]:
    sources = [path for package in PRODUCT for path in (ROOT / package).rglob("*.py") if path != CONFIG]
    read = _attributes_read(sources)
    unused = []
    for cls in _settings_classes():
        through = {field for prop, fields in _properties(cls).items() if prop in read for field in fields}
        for field in cls.model_fields:
            if field not in read and field not in through:
                unused.append(f"{cls.__name__}.{field}")
    return unused


def test_every_setting_is_read_by_the_product() -> None:
    assert unused_settings() == []


def test_the_check_sees_an_unread_setting() -> None:
    """The check can fail: a class with a field nobody reads is reported."""

    class ProbeSettings(BaseSettings):
        surely_nobody_reads_this_field: int = 1

    config.ProbeSettings = ProbeSettings  # type: ignore[attr-defined]
    try:
        assert unused_settings() == ["ProbeSettings.surely_nobody_reads_this_field"]
    finally:
        del config.ProbeSettings  # type: ignore[attr-defined]
