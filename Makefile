# papo: `make run` starts the server, `make test` runs every check. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: run test lint typecheck pytest bench bench-compare bench-resume screenshot clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime  ## start the server on localhost:8765 (make run ARGS="--port 9000")
	$(PY) server.py $(ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

pytest: $(VENV)/.dev
	$(VENV)/bin/pytest

test: lint typecheck pytest  ## ruff, mypy --strict and the whole test suite

$(VENV)/.bench: bench/requirements.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: $(VENV)/.bench  ## start the server, load it, print numbers, write docs/bench.png
	$(PY) bench/run.py $(ARGS)

bench-compare: $(VENV)/.runtime  ## durable vs --memory in ../shared/bench, three runs (ARGS="--variants durable,memory,redis")
	$(PY) bench/compare.py $(ARGS)

bench-resume: $(VENV)/.dev  ## time a resume of 10 000 missed messages across 50 rooms
	$(PY) bench/resume_rooms.py $(ARGS)

screenshot: $(VENV)/.dev  ## docs/screenshot.png: two people chatting in the browser
	$(PY) docs/screenshot.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
