# Two commands on a fresh machine:
#   make demo   install into .venv, start a Temporal dev server and a worker, run one execution of each outcome
#   make test   install into .venv, then ruff, ruff format --check, mypy and pytest
# The install step re-runs only when pyproject.toml changed (stamp file .venv/.installed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest install clean

demo: $(STAMP)
	$(BIN)/stepflow demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .stepflow .mypy_cache .pytest_cache .ruff_cache *.egg-info
