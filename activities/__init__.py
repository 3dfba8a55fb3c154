"""Activities: everything with side effects. Running tools, validating requests, writing the projection."""

from activities.names import FINISH_EXECUTION, PREPARE_EXECUTION, RESOLVE_TOOL, RUN_AND_RECORD

__all__ = ["FINISH_EXECUTION", "PREPARE_EXECUTION", "RESOLVE_TOOL", "RUN_AND_RECORD"]
