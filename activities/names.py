"""Activity names, shared by the workflows that call them and the worker that registers them."""

PREPARE_EXECUTION = "prepare_execution"
RUN_TOOL = "run_tool"
FINISH_EXECUTION = "finish_execution"
RUN_AND_RECORD = "run_and_record"
