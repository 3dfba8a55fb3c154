"""The client side: the Executor API, the embedded dev server, the CLI and the demo."""

from starter.executor import Executor
from stepflow.errors import ExecutionNotFound
from stepflow.workflow_start import execution_id_for

__all__ = ["ExecutionNotFound", "Executor", "execution_id_for"]
