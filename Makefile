# The two commands: `make demo` (the main job) and `make test` (everything CI checks).
# Both create or reuse .venv at the repository root and install what they need into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DISTS := src/mot src/flowmatch src/var_foresight src/f1

.PHONY: demo test lint docs install clean

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), f"Python 3.11+ is required, found {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements-dev.txt src/mot/pyproject.toml src/flowmatch/pyproject.toml src/var_foresight/pyproject.toml src/f1/pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -r requirements-dev.txt $(foreach d,$(DISTS),-e $(d))
# the real client of the f1 serve tests: --no-deps, as it pins numpy<2 and would downgrade numpy 2
	$(PY) -m pip install --quiet --no-deps openpi-client==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/f1 demo --pretrained pretrained/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

test: lint docs
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) build site .pytest_cache .ruff_cache .hypothesis
