# Two commands on a fresh machine: `make demo` runs a guest under vsnap, `make test` runs every
# test. Each creates .venv and installs vsnap with its dependencies first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv bench html clean

$(BIN)/vsnap: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/vsnap

# The main job: a guest runs, is checkpointed mid-way, and resumes in a fresh process; the two
# halves of its output and its log file equal one uninterrupted run's.
demo: venv
	$(BIN)/vsnap run --stats programs/hello.c
	rm -rf demo && mkdir -p demo/whole demo/split
	cd demo/whole && ../../$(BIN)/vsnap run ../../programs/counter.c 6 counter.log > out.txt
	cd demo/split && ../../$(BIN)/vsnap run --save-at 2500000 -o ../counter.img --exit \
		../../programs/counter.c 6 counter.log > out.txt
	$(BIN)/vsnap inspect demo/counter.img
	$(BIN)/vsnap inspect demo/counter.img fds
	cd demo/split && ../../$(BIN)/vsnap resume ../counter.img >> out.txt
	cat demo/split/out.txt
	cmp demo/whole/out.txt demo/split/out.txt && cmp demo/whole/counter.log demo/split/counter.log
	@echo "demo: checkpointed at instruction 2,500,000 and resumed in a fresh process;" \
		"output and counter.log equal an uninterrupted run's"

# The README's test command (and CI's, through .ci/run): the default tier, one worker per core;
# worksteal keeps both cores busy to the end although tests last from milliseconds to a minute.
test: venv
	$(BIN)/python -m pytest -n auto --dist worksteal

# The notebooks, executed, as HTML pages for reading without installing anything
# (build/html/index.html); the machine's paths in their outputs read <repo>, <tmp> and ~.
html: venv
	$(BIN)/python notebooks/_export.py --out build/html

bench: venv
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/checkpoint.py
	$(BIN)/python benchmarks/check.py
	$(BIN)/python benchmarks/fork.py
	$(BIN)/python benchmarks/procs.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build/html
