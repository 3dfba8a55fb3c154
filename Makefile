# On a fresh machine:
#   make demo   install into .venv, start a Temporal dev server and a worker, run one execution of each outcome
#   make test   install into .venv, then ruff, ruff format --check, mypy and pytest (all but the fault tests)
#   make faults the fault-injection tests (tests/faults, marker `faults`): workers killed, servers stopped
# The install step re-runs only when pyproject.toml changed (stamp file .venv/.installed).
# `make test` also installs Debian's chromium (for the Web UI test in tests/e2e) when it is missing, and
# libseccomp2 (the sandbox's seccomp filter, loaded through PyPI's pyseccomp) when no libseccomp.so.2 is found.

PYTHON ?= python3
CHROMIUM := /usr/bin/chromium
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test faults lint typecheck pytest install clean libseccomp

demo: $(STAMP)
	$(BIN)/stepflow demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

pytest: $(STAMP) libseccomp | $(CHROMIUM)
	$(BIN)/pytest -m "not faults" $(PYTEST_ARGS)

# slow suite: fault injection. `stepflow worker` processes SIGKILLed mid-tool, the Temporal server stopped
# and restarted, the projection database closed (PostgreSQL, when STEPFLOW_TEST_POSTGRES_URL is set); a few
# minutes, printing what it measured (docs/reliability.md).
faults: $(STAMP) libseccomp
	$(BIN)/pytest -m faults tests/faults $(PYTEST_ARGS)

libseccomp:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2'; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp2 >/dev/null; \
		else \
			echo "note: libseccomp.so.2 is missing and cannot be installed here: the sandbox runs without seccomp"; \
		fi; \
	fi

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "note: $(CHROMIUM) is missing and cannot be installed here: the Web UI test is skipped"; \
	fi

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .stepflow .mypy_cache .pytest_cache .ruff_cache *.egg-info
