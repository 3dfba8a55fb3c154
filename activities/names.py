"""Activity names, shared by the workflows that call them and the worker that registers them."""

RUN_AND_RECORD = "run_and_record"
PREPARE_EXECUTION = "prepare_execution"
FINISH_EXECUTION = "finish_execution"
RESOLVE_TOOL = "resolve_tool"
