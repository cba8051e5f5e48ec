# Two commands do all set-up on a fresh machine:  make run  /  make test
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/stnas run $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

# the suite without the multi-process tests (marker slow)
test-fast: lint
	$(PY) -m pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)

# the product benchmarks (a few minutes on a CPU; results in benchmarks/results/);
# method studies are in experiments/ and are run one by one
bench: $(STAMP)
	$(PY) benchmarks/cost.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/supernet_overhead.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/latency_predictor.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
