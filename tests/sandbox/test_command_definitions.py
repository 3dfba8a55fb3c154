"""Command tool definitions: parsing, parameter validation, argv rendering, refusal, metrics, bounded lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stepflow.errors import ConfigError, ExecutionFailed, InvalidParameters, ResourceLimitExceeded
from stepflow.models import ExecutionContext, ResourceLimits
from stepflow.registry import ToolRegistry
from stepflow.sandbox.streams import TRUNCATED, LineBudget, LineSplitter
from stepflow.tools import command
from stepflow.tools.command import CommandTool, parse_command_tool
from stepflow.tools.loader import load_tool_file
from tests.sandbox.helpers import TOOLS_FILE, requires_sandbox

BUILTIN = Path(command.__file__).with_name("builtin_commands.toml")


def tool(**table: Any) -> CommandTool:
    return parse_command_tool({"id": "t", "kind": "command", "argv": ["prog"], **table}, Path("t.toml"))


class Context:
    """A ToolContext outside Temporal that keeps what the tool logs and records."""

    execution_id = "x"
    attempt = 1
    context = ExecutionContext(environment={"FROM_CONTEXT": "1"})
    resource_limits = ResourceLimits()
    cancel_grace = 0.5

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []
        self.metrics: dict[str, float] = {}
        self.progress: Any = None
        outer = self

        class Logger:
            def __getattr__(self, level: str) -> Any:
                return lambda event, **kw: outer.lines.append((level, event, kw))

        self.logger = Logger()

    def report_progress(self, progress: Any) -> None:
        self.progress = progress

    def record_metric(self, name: str, value: float, unit: str | None = None) -> None:
        self.metrics[name] = value


def test_builtin_and_test_tool_files_load():
    builtin = {definition.id: definition for definition in load_tool_file(BUILTIN)}
    assert {"wc", "print"} <= set(builtin) and all(d.kind == "command" for d in builtin.values())
    assert builtin["wc"].parameters_schema["required"] == ["text"]
    registry = ToolRegistry([*builtin.values(), *load_tool_file(TOOLS_FILE)])
    assert registry.resolve("test-argv").info().parameters_schema["properties"]["flag"] == {"type": "integer"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"argv": "prog {x}"}, "argv must be a non-empty list"),
        ({"argv": []}, "argv must be a non-empty list"),
        ({"argv": ["{x}"], "parameters": {"x": {}}}, "argv[0] must be a literal"),
        ({"output": "xml"}, "output must be"),
        ({"env": "PATH"}, "env must be a list"),
        ({"shell": True}, "unknown keys"),
        ({"parameters": {"x": {"type": "list"}}}, "type must be one of"),
        ({"parameters": {"x": {"pattern": "a"}}}, "unknown keys"),
        ({"limits": {"memory_mb": -1}}, "limits"),
    ],
)
def test_bad_definitions_are_refused(table: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        tool(**table)


def test_a_bad_tool_file_is_a_config_error_naming_file_and_tool(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text('[[tool]]\nid = "oops"\nkind = "command"\nargv = "sh -c x"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml, tool 'oops': argv must be"):
        load_tool_file(path)


def test_parameters_are_validated_with_clear_messages():
    definition = tool(
        parameters={
            "name": {"type": "string", "required": True, "max_length": 5},
            "count": {"type": "integer", "minimum": 1, "maximum": 3, "default": 2},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "on": {"type": "boolean"},
        }
    )
    assert definition.validate_parameters({"name": "x"}) == {"name": "x", "count": 2}
    with pytest.raises(InvalidParameters) as raised:
        definition.validate_parameters({"count": True, "mode": "c", "extra": 1, "on": "yes"})
    message = raised.value.message
    for part in ("extra: not a parameter", "name: required", "count: expected integer", "mode: must be one of"):
        assert part in message, message
    assert "on: expected boolean" in message
    with pytest.raises(InvalidParameters, match="longer than 5"):
        definition.validate_parameters({"name": "toolong"})
    with pytest.raises(InvalidParameters, match="above the maximum"):
        definition.validate_parameters({"name": "x", "count": 4})
    with pytest.raises(InvalidParameters, match="NUL"):
        definition.validate_parameters({"name": "a\x00b"})


def test_placeholders_fill_whole_elements_and_absent_optionals_drop_theirs():
    definition = tool(
        argv=["prog", "--name={name}", "{name}", "{ awk braces }", "{undeclared}", "--n={count}", "{on}"],
        stdin="hello {name}\n",
        parameters={"name": {"required": True}, "count": {"type": "integer"}, "on": {"type": "boolean"}},
    )
    nasty = "a b; rm -rf / $(x) 'q\"\n"
    assert definition.render_argv({"name": nasty, "on": False}) == [
        "prog",
        f"--name={nasty}",
        nasty,
        "{ awk braces }",
        "{undeclared}",
        "false",
    ]
    assert definition.render_stdin({"name": "w"}) == b"hello w\n"


def test_environment_is_the_allow_list_plus_the_context(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ALLOWED_ONE", "1")
    monkeypatch.setenv("SECRET_ONE", "s")
    definition = tool(env=["ALLOWED_ONE", "ABSENT_ONE"])
    assert definition.isolation.environment({"CTX": "c"}) == {"ALLOWED_ONE": "1", "CTX": "c"}


async def test_a_machine_that_cannot_sandbox_refuses_command_tools(monkeypatch: pytest.MonkeyPatch):
    from stepflow.tools import sandboxed

    monkeypatch.setattr(sandboxed, "sandbox_unavailable", lambda: "no namespaces on this machine")
    with pytest.raises(ResourceLimitExceeded, match="cannot run with its limits enforced: no namespaces"):
        await tool().run({}, Context())
    with pytest.raises(ResourceLimitExceeded):
        tool().check_resource_limits(ResourceLimits())


def test_python_tools_refuse_resource_limits():
    from stepflow.tools.builtin import echo

    definition = echo.__stepflow_tool__  # type: ignore[attr-defined]
    definition.check_resource_limits(ResourceLimits(network=True))  # no per-execution limit asked for
    with pytest.raises(ResourceLimitExceeded, match="Python tool"):
        definition.check_resource_limits(ResourceLimits(cpu_seconds=1))


@requires_sandbox
async def test_a_run_logs_each_line_and_records_cpu_and_rss():
    definition = parse_command_tool(
        {
            "id": "lines",
            "kind": "command",
            "argv": ["/usr/bin/python3", "-S", "-c", "import sys; print('a'); print('b', file=sys.stderr); print(3)"],
        },
        Path("t.toml"),
    )
    ctx = Context()
    assert await definition.run({}, ctx) == "a\n3\n"
    assert ("info", "a", {"stream": "stdout"}) in ctx.lines
    assert ("warning", "b", {"stream": "stderr"}) in ctx.lines
    assert ctx.metrics["cpu_time_ms"] > 0 and ctx.metrics["max_rss_kb"] > 1000
    as_json = parse_command_tool({"id": "j", "kind": "command", "argv": ["echo", "{x"], "output": "json"}, Path("t"))
    with pytest.raises(ExecutionFailed, match="did not write JSON"):
        await as_json.run({}, Context())


def test_line_splitter_bounds_lines():
    splitter = LineSplitter(max_chars=10)
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed(b"o\r\n") == ["two"]
    long = splitter.feed(b"x" * 100)
    assert long == ["x" * 10 + TRUNCATED]
    assert splitter.feed(b"yyy\nlast") == []  # the rest of the cut line is dropped
    assert splitter.close() == ["last"]
    assert LineSplitter().feed("é".encode()[:1] + b"\n") == ["\ufffd"]


def test_line_budget_passes_at_most_its_limit():
    seen: list[str] = []
    budget = LineBudget(lambda stream, line: seen.append(line), limit=3)
    for index in range(10):
        budget("stdout", str(index))
    assert seen == ["0", "1", "2"] and budget.close() == 7
