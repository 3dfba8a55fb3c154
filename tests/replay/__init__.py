"""Replay tests: committed histories of ToolExecutionWorkflow must replay with the current code."""
