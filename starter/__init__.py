"""The client side: the Executor API over Temporal and the projection, the dev server, and the CLI."""

from starter.executor import ExecutionNotFound, Executor, execution_id_for

__all__ = ["ExecutionNotFound", "Executor", "execution_id_for"]
