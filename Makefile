# vtonlab: `make reproduce` runs the whole course, `make test` checks it. `make help` lists targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NBVAL := --nbval-lax --nbval-current-env -n 2 --dist loadscope
# pytest runs two workers (-n 2), each notebook in its own kernel: give each process half the cores. With torch's
# default (all cores) per process, two kernels on a 2-core machine oversubscribe the cores and their OpenMP threads
# wait on each other: the ci notebooks took over 30 min that way instead of 4.
WORKER_THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n / 2 > 0 ? n / 2 : 1 )))
THREADS := OMP_NUM_THREADS=$(WORKER_THREADS) MKL_NUM_THREADS=$(WORKER_THREADS)

# Run pytest, and treat "no tests collected" (exit 5) as the error it is.
define pytest_strict
	rc=0; $(1) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests in: $(2)"; exit 1; fi; exit $$rc
endef

.PHONY: help setup test unit notebooks lint results-check reproduce lab clean
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: python3.11 (or python3) not found"; exit 1; }
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install vtonlab (skipped when nothing changed)

lint: $(STAMP)  ## ruff (pinned) on the library and tests
	$(VENV)/bin/ruff check vtonlab tests

unit: $(STAMP)  ## unit tests only (ci profile)
	@$(call pytest_strict,$(THREADS) VTONLAB_PROFILE=ci $(PY) -m pytest -n 2 -q tests,tests/)

notebooks: $(STAMP)  ## execute every notebook under nbval (ci profile)
	@$(call pytest_strict,$(THREADS) VTONLAB_PROFILE=ci $(PY) -m pytest $(NBVAL) notebooks/,notebooks/)

results-check: $(STAMP)  ## fail when the README's results table differs from `python -m vtonlab report`
	$(PY) -m vtonlab report --check

test: lint results-check unit notebooks  ## setup, ruff, results table check, unit tests, every notebook under nbval (ci)

reproduce: $(STAMP)  ## run every notebook (PROFILE=ci|cpu|gpu, default auto); executed copies + summary in results/
	$(PY) -m vtonlab notebooks run --out results $(if $(PROFILE),--profile $(PROFILE))

lab: $(STAMP)  ## open the notebooks in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/

clean:  ## remove caches and results (keeps .venv and shipped checkpoints)
	rm -rf results data/cache .pytest_cache .ruff_cache
