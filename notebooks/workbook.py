"""Helpers the notebooks share: the run folder's artefacts, and showing text and tables so
that they read well both in Jupyter and in the PDF report.

Notebooks talk to each other only through the files named in ARTEFACTS, in the run's folder.
"""
from __future__ import annotations

import html
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import rnn_core as rc  # noqa: E402

ARTEFACTS = {
    "grad_check.json": "01_gradient_check: relative errors per parameter, method and m",
    "history.csv": "02_train: update, epoch, loss, smooth_loss for every update",
    "samples.json": "02_train: the text sampled during training, with update and smooth loss",
    "best_model.npz": "02_train: parameters with the lowest smooth loss, vocabulary, hyper-parameters",
    "run.json": "02_train: parameters, corpus name, size and K, wall time, updates/s",
    "loss.pdf": "03_loss_plot: the smooth-loss figure (vector), also loss.png",
    "passage.txt": "04_synthesis: the 1000-character passage from the best model",
    "report.pdf": "the report: every section above plus the code",
}


def run_folder(run_dir) -> Path:
    """The run's folder, created if needed; a clear error if that is impossible."""
    p = Path(run_dir)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise rc.RNNError(f"cannot create the run folder {p}: {err.strerror}; choose another run_dir") from None
    return p


def need(run_dir, name: str) -> Path:
    """Path of an artefact another notebook writes; a clear error naming that notebook if missing."""
    p = Path(run_dir) / name
    if not p.exists():
        maker = ARTEFACTS.get(name, "an earlier notebook").split(":")[0]
        raise rc.RNNError(f"{p} is missing: run {maker} first with the same run_dir")
    return p


def write_text(path, text: str) -> None:
    rc._atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_history(path, hist: "rc.History") -> None:
    """history.csv: update (1-based), epoch, loss, smooth_loss; floats in full precision (round-trip)."""
    n = len(hist.loss)
    lines = ["update,epoch,loss,smooth_loss"]
    lines += [f"{k + 1},{e},{l!r},{s!r}" for k, e, l, s in
              zip(range(n), hist.epoch.tolist(), hist.loss.tolist(), hist.smooth_loss.tolist())]
    write_text(path, "\n".join(lines) + "\n")


def read_history(path) -> dict:
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return {"update": table[:, 0].astype(int), "epoch": table[:, 1].astype(int),
            "loss": table[:, 2], "smooth_loss": table[:, 3]}


# ----------------------------------------------------------------------------- display

def _latex_verbatim(text: str) -> str:
    # fvextra breaks long lines anywhere; a line that would end the environment is spaced out
    body = re.sub(r"(?m)^(\s*)\\end\{Verbatim\}", r"\1\\end {Verbatim}", text)
    return ("\\begin{Verbatim}[frame=single, framesep=2mm, rulecolor=\\color{black!25}, "
            "fontsize=\\small, breaklines=true, breakanywhere=true, showspaces=false]\n"
            f"{body}\n\\end{{Verbatim}}\n")


class Text:
    """Sampled text shown as it is: monospaced, long lines broken, nothing interpreted as markup."""

    def __init__(self, text: str, label: str = ""):
        self.text, self.label = text, label

    def _repr_mimebundle_(self, include=None, exclude=None):
        # keep a label on the page of its text: start a new page unless ~8 lines are left
        label_tex = f"\\Needspace{{8\\baselineskip}}\\textbf{{{latex_escape(self.label)}}}\n\n\\nopagebreak\n" \
            if self.label else ""
        label_html = f"<b>{html.escape(self.label)}</b>" if self.label else ""
        return {
            "text/plain": (self.label + "\n" if self.label else "") + self.text,
            "text/html": f"{label_html}<pre style='white-space: pre-wrap; border: 1px solid #ccc; "
                         f"padding: 4px'>{html.escape(self.text)}</pre>",
            "text/latex": label_tex + _latex_verbatim(self.text),
        }


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                   "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in s)


def markdown_table(header: list, rows: list, align: str = "") -> str:
    """A pipe table; pandoc turns it into a LaTeX table in the report.

    align: one letter per column, l or r; by default the first column left, the rest right.
    """
    def cell(v):
        return str(v).replace("|", "\\|")
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(map(cell, header)) + " |",
             "|" + "|".join(":--" if a == "l" else "--:" for a in align) + "|"]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def fmt_int(n) -> str:
    return f"{int(n):,}"


def fmt_e(x) -> str:
    return "0" if x == 0 else f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e+")


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:.0f} s"


def nats_per_char(loss: float, reduction: str, seq_length: int) -> float:
    return loss / seq_length if reduction == "sum" else loss


def bits_per_char(loss: float, reduction: str, seq_length: int) -> float:
    return nats_per_char(loss, reduction, seq_length) / math.log(2)


# ----------------------------------------------------------------------------- parameters

def check_params(space: dict) -> None:
    """Check every run parameter found in `space` (a notebook's globals()) before any work.

    A bad value raises RNNError with one line naming it and its allowed range.
    """
    checks = {
        "seed": lambda v: rc._check_int("seed", v, low=0),
        "m": lambda v: rc._check_int("m", v),
        "seq_length": lambda v: rc._check_int("seq_length", v),
        "n_updates": lambda v: rc._check_int("n_updates", v),
        "sample_every": lambda v: rc._check_int("sample_every", v),
        "passage_length": lambda v: rc._check_int("passage_length", v),
        "eta": lambda v: rc._check_positive("eta", v),
        "sigma": lambda v: rc._check_positive("sigma", v),
        "clip": lambda v: rc._check_positive("clip", v),
        "check_sigma": lambda v: rc._check_positive("check_sigma", v),
        "check_h": lambda v: rc._check_positive("check_h", v),
        "init": lambda v: rc._check_choice("init", v, rc.INITS),
        "optimizer": lambda v: rc._check_choice("optimizer", v, rc.OPTIMIZERS),
        "loss_reduction": lambda v: rc._check_choice("loss_reduction", v, ("sum", "mean")),
        "check_m": lambda v: [rc._check_int("check_m entry", x) for x in
                              (v if isinstance(v, list) else [v])],
        "data_path": rc.load_text,
    }
    for name, check in checks.items():
        if name in space:
            check(space[name])
