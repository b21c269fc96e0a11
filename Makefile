# Two commands: `make quickstart` (set up + evaluate the shipped checkpoint) and `make test`;
# `make lint` runs ruff and mypy (configured in pyproject.toml) as CI does.
# Then `source .venv/bin/activate` puts `probekit` on the PATH for the README's tour (or call
# .venv/bin/probekit).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Extra `probekit eval` options for `make quickstart`, e.g. EVAL_ARGS="--limit 200 --quiet".
EVAL_ARGS ?=

.PHONY: setup quickstart test lint benchmarks clean

setup: $(STAMP)

# CPU torch first (a bare `torch` requirement would pull a multi-GB CUDA build), then the rest
# under the same constraints. The editable install is a path entry (editable_mode=compat), not
# an import hook: a script run beside the clone, whose folder is also named `probekit`, then
# still imports the package instead of that folder.
$(STAMP): pyproject.toml constraints.txt Makefile
	python3 -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e ".[dev]" --config-settings editable_mode=compat
	touch $(STAMP)

quickstart: setup
	$(VENV)/bin/probekit eval boxes-gpt2-tiny --tasks boxes --out results/ $(EVAL_ARGS)
	@echo "next: source $(VENV)/bin/activate   # puts probekit on the PATH; then probekit --help"

# One process per core (pytest-xdist; a test file stays on one worker, so its fixtures are made
# once), one OpenMP thread per process: more threads would only contend for the same cores.
test: setup
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -n auto --dist loadfile

# ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade) and mypy on probekit/; both come with
# the dev extra. No formatter runs: the code keeps its own layout.
lint: setup
	$(VENV)/bin/ruff check probekit tests/test_house.py
	$(VENV)/bin/mypy

benchmarks: setup
	for b in benchmarks/*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) results .pytest_cache
