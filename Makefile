# latentbids: the two commands a fresh machine needs (see README.md).
#   make demo   set up .venv, simulate a small cohort, run latentbids on it
#   make test   set up .venv, make lint (ruff, hadolint), the whole test suite with coverage, then make container-test
#   make check  the fast loop while changing code: every test not marked slow (<= 5 min on 2 cores)
#   make container-test   build the image with podman and run the demo inside it (CI does too)
#   make bench  time the participant-level steps as ratios to N4, record the CPU (BENCHMARKS.md)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every install is pinned by $(CONSTRAINTS), the file the image installs with too; its torch==2.13.0
# resolves to the CPU wheel that lies on this machine's disk (where it does not, pass
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu). setup.cfg keeps ranges for users.
CONSTRAINTS := constraints/pins.txt
TORCH_INDEX_URL ?=
PIP_INSTALL = $(PY) -m pip install --quiet -c $(CONSTRAINTS) $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib
export NIPYPE_NO_ET := 1
export PYTHONDONTWRITEBYTECODE := 1
DEMO_DIR ?= $(CURDIR)/demo_out

.PHONY: venv test check container-test demo bench lint clean

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip setuptools wheel
	$(PIP_INSTALL) -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

# Two pytest workers (CI has 2 cores); --dist loadfile keeps each file's tests, and so its module
# fixtures (the real runs several tests assert on), in one worker. The 30 slowest tests are listed.
PYTEST_WORKERS ?= 2
test: venv lint
	mkdir -p $(NUMBA_CACHE_DIR) $(MPLCONFIGDIR)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=30 --cov=latentbids --cov-report=term $(PYTEST_ARGS)
	$(if $(SKIP_CONTAINER_TEST),@echo "make container-test skipped (SKIP_CONTAINER_TEST is set)",$(MAKE) --no-print-directory container-test)

# The fast loop: the tests not marked slow (pytest -m slow lists the others: real pipelines, real
# training, calibration sweeps). No coverage, no container; CI runs everything through make test.
check: venv
	mkdir -p $(NUMBA_CACHE_DIR) $(MPLCONFIGDIR)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" --durations=10 -q $(PYTEST_ARGS)

# Needs root (apt-get installs podman, buildah, debootstrap, runc when missing) or those tools.
container-test: venv
	bash scripts/container_test.sh

demo: venv
	mkdir -p $(NUMBA_CACHE_DIR) $(MPLCONFIGDIR)
	bash scripts/demo.sh "$(DEMO_DIR)"

# Participant-level CPU regression guard (about 3 min on 2 cores): per-step times as ratios to N4 in
# the same process, the CPU model, whether denormals are flushed; exits 1 when a ratio is off.
BENCH_ARGS ?= --subjects IXI012 --threads 2 --voxel-size 2 1 --sloppy-voxel-size
bench: venv
	mkdir -p $(NUMBA_CACHE_DIR) $(MPLCONFIGDIR) .cache/bench
	$(PY) benchmarks/bench_participant.py $(BENCH_ARGS) --json .cache/bench/participant-$$(date -u +%Y%m%dT%H%M%S).json

# ruff's linter (settings in pyproject.toml) and hadolint; make test runs it first.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/hadolint Dockerfile

clean:
	rm -rf $(VENV) .cache .pytest_cache .coverage $(DEMO_DIR)
