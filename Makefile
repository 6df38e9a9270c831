# Two commands on a fresh machine: `make demo` runs a guest under vsnap, `make test` runs every
# test. Each creates .venv and installs vsnap with its dependencies first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv bench clean

$(BIN)/vsnap: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/vsnap

demo: venv
	$(BIN)/vsnap run --stats programs/hello.c
	$(BIN)/vsnap run programs/counter.c 5 /tmp/vsnap-demo-counter.log

test: venv
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/checkpoint.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
