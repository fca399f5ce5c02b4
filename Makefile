# latentbids: the two commands a fresh machine needs (see README.md).
#   make demo   set up .venv, simulate a small cohort, run latentbids on it
#   make test   set up .venv, run the whole test suite with coverage
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned here (and only here) to the CPU wheel that lies on this machine's disk;
# setup.cfg keeps a range so users get their CUDA build.
TORCH_PIN ?= torch==2.13.0
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export NIPYPE_NO_ET := 1
export PYTHONDONTWRITEBYTECODE := 1
DEMO_DIR ?= $(CURDIR)/demo_out

.PHONY: venv test demo lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

test: venv
	mkdir -p $(NUMBA_CACHE_DIR) $(MPLCONFIGDIR)
	$(PY) -m pytest --cov=latentbids --cov-report=term $(PYTEST_ARGS)

demo: venv
	mkdir -p $(NUMBA_CACHE_DIR) $(MPLCONFIGDIR)
	bash scripts/demo.sh "$(DEMO_DIR)"

lint: venv
	$(VENV)/bin/hadolint Dockerfile

clean:
	rm -rf $(VENV) .cache .pytest_cache .coverage $(DEMO_DIR)
