# Two commands: `make quickstart` (set up + evaluate the shipped checkpoint) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup quickstart test benchmarks clean

setup: $(STAMP)

# CPU torch first (a bare `torch` requirement would pull a multi-GB CUDA build), then the rest
# under the same constraints.
$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

quickstart: setup
	$(VENV)/bin/probekit eval boxes-gpt2-tiny --tasks boxes --out results/

# One OpenMP thread per process: on a shared 2-core machine torch's spinning threads otherwise
# slow small probes down many times over.
test: setup
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q

benchmarks: setup
	for b in benchmarks/*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) results .pytest_cache
