"""A module of Python-built composites, loaded through STEPFLOW_TOOL_MODULES by test_definitions."""

from stepflow.tools.composite import composite_tool

shout_twice = composite_tool(
    "shout-twice",
    parameters={"text": {"type": "string", "required": True}},
    steps=[
        {"id": "first", "tool": "echo", "parameters": {"text": "{{ input.text }}!"}},
        {"id": "second", "tool": "echo", "parameters": {"text": "{{ steps.first.output.text }}!"}},
    ],
    output="{{ steps.second.output.text }}",
)
