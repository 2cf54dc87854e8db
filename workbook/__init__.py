"""The DD2424 Assignment 4 workbook beyond the assignment: everything rnn_core.py (the
assignment itself) does not do, in one package that imports rnn_core and is never imported by it.

For the notebooks                 params (every parameter, declared once), notebook (what each
                                  notebook does first; the run folder's files), show, measures
Training beyond the assignment    training (orders, mini-batches, validation, checkpoints,
                                  Ctrl-C), batched (the batched pass), textfiles (reading texts,
                                  tweets, the run's text), files (model and checkpoint files)
Beside rnn_core                   textbook (the plain version), pytorch, timing
Making runs and reports           runs (what a run is), planner (`make`'s verbs: python -m
                                  workbook ...), study (Dask), render (papermill, the PDF),
                                  compare (05_compare), cells (the notebooks' parameter cells)

This file imports nothing: `make help` and `make clean` run before .venv exists.
"""
