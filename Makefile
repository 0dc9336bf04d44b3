# The course's two commands (see README.md):
#   make lab    create the environment if needed and open the course in JupyterLab
#   make lab-zh the same, opened at the Chinese edition (dist/zh/)
#   make test   create the environment if needed and run every test (unit, lint, notebooks)
#   make bundle write the one-file Colab/Kaggle notebooks in dist/
#   make bench  measure training speed against d2l and a bare loop, and the course's time budget
#   make slides lecture slides of every chapter in dist/slides/ (reveal.js, offline)
#   make site   the course website in dist/site/ (open dist/site/index.html; offline)
# Both work from a fresh clone: the environment is a virtualenv in .venv built from pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB_ARGS ?=
# Jupyter refuses to start as root (containers, CI) unless told; add the flag only then.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PYTEST_ARGS ?=
# The reference implementation the tests and benchmarks compare with (not used by the notebooks).
D2L_VERSION := 1.0.3

.PHONY: env lab lab-zh test lint clean execute bundle bench slides site

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,reference,site]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "d2l==$(D2L_VERSION)"
	touch $(STAMP)

lab: env
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(ROOT_FLAG) $(LAB_ARGS)

# The Chinese edition (中文版): the same JupyterLab, opened at dist/zh/.
lab-zh: env
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/dist/zh \
		$(ROOT_FLAG) $(LAB_ARGS)

test: env
	COURSE_FAST=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: env
	$(BIN)/python -m ruff check helpers tests notebooks tools

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts

# One-file notebooks for Colab/Kaggle (dist/colab/) and a student edition without solutions
# (dist/student/), and the Chinese edition from i18n/zh/ (dist/zh/, dist/colab-zh/,
# dist/student-zh/); commit them after changing a notebook or helpers (tests/test_bundle.py checks).
bundle: env
	$(BIN)/python tools/bundle.py

# Benchmarks against d2l and a bare loop, the course's time budget and widget latency, written to
# benchmarks/REPORT.md (about an hour on 2 cores). Each run refreshes only what it measured, in
# benchmarks/results.json: BENCH_ARGS=--skip-notebooks (parts 1-2, minutes) or
# BENCH_ARGS="--only-notebooks --notebooks 05_rnn" (one chapter's times and widget latencies).
BENCH_ARGS ?=
bench: env
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

# Lecture slides from the committed notebooks (no execution): dist/slides/NN_topic.slides.html, with
# reveal.js and MathJax copied from vendor/ so the folder works with no network.
slides: env
	$(BIN)/python tools/slides.py

# The course website from the committed notebooks (no execution), the teaching guide and the
# Chinese edition: dist/site/index.html; the build fails on a broken internal link or anchor.
site: env
	$(BIN)/python tools/website.py

# Restart-and-run-all one notebook in full mode and save its outputs, as it must be committed:
#   make execute NB=notebooks/01_linear_regression.ipynb
execute: env
	COURSE_FAST=0 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=1200 "$(NB)"
