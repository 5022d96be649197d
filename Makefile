# The two commands a new user types: `make demo` (main job) and `make test` (test suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jaxnets demo --out runs/demo

# ruff, then the fast suite and the doctests of jaxnets/ (slow tests: `make test-slow`).
test: $(STAMP)
	$(VENV)/bin/ruff check jaxnets tests benchmarks examples
	$(PY) -m pytest -q -n 2 --dist loadfile --doctest-modules tests jaxnets

test-slow: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check jaxnets tests benchmarks examples

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs
