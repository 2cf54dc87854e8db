"""The files of a run folder and what writes each: the notebooks talk to each other only
through these, the planner decides from them what to run again, and clean deletes a folder of
ours holding nothing else. Standard library only, and imported by the notebooks: what the
planner alone needs lives in runs.py, so that a change to it runs no notebook again.
"""

STOP_FILE = "DD2424_STOP_RUN"  # the environment variable naming the file whose appearance stops training

# A run folder's files, by the notebook (or step) that writes them; notebooks talk to each other
# only through these. What clean deletes is a folder of ours holding nothing else.
ARTEFACTS = {
    "plan.json": "the planner: the run's fingerprint, its parameters, and whether it is complete",
    "corpus.npz": "the planner (or the first notebook): the text as the run read it, for every notebook",
    "01_gradient_check.ipynb": "01_gradient_check: the executed notebook",
    "grad_check.json": "01_gradient_check: relative errors per parameter, method and m",
    "speed.json": "01_gradient_check: the speed section's times (with speed = True)",
    "02_train.ipynb": "02_train: the executed notebook",
    "history.csv": "02_train: update, epoch, loss, smooth_loss for every update",
    "samples.json": "02_train: the text sampled during training, with update and smooth loss",
    "validation.csv": "02_train: update and validation loss per character (empty without val_fraction)",
    "checkpoint.npz": "02_train: the full training state, for resume=True (every checkpoint_every updates)",
    "best_model.npz": "02_train: parameters with the lowest smooth loss, vocabulary, hyper-parameters",
    "run.json": "02_train: parameters, corpus name, size and K, wall time, updates/s",
    "03_loss_plot.ipynb": "03_loss_plot: the executed notebook",
    "loss.pdf": "03_loss_plot: the smooth-loss figure (vector)",
    "loss.png": "03_loss_plot: the smooth-loss figure (a picture)",
    "validation.pdf": "03_loss_plot: training and validation loss per character (with val_fraction > 0)",
    "04_synthesis.ipynb": "04_synthesis: the executed notebook",
    "passage.txt": "04_synthesis: the passage (passage_length characters, or the tweets) from the best model",
    "report.ipynb": "the report: the executed notebooks and the code, as one notebook",
    "report.html": "the report as one self-contained web page, written also where TeX is missing",
    "report.pdf": "the report: every section above, then rnn_core.py (where TeX is installed)",
    "report.log": "the report: LaTeX's log, when it could not render",
}


def written_by(name: str) -> str:
    """The step (or "the planner", "the report") that writes a file of a run."""
    return ARTEFACTS[name].split(":")[0].split(" (")[0]
