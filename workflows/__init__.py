"""Temporal workflow definitions: deterministic code only."""

from workflows.tool_execution import ToolExecutionWorkflow

__all__ = ["ToolExecutionWorkflow"]
