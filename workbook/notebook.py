"""What every notebook does first (start), and the run folder's files: notebooks talk to each
other only through the files named in artefacts.ARTEFACTS, in the run's folder.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import rnn_core as rc
from workbook import params
from workbook.artefacts import ARTEFACTS
from workbook.files import atomic_write
from workbook.textfiles import check_text_file, load_corpus, Corpus
from workbook.training import check_reading

VAL_SCORED_MAX = 1_000_000     # held-out characters scored at most (a 200 MB book holds out 20M)


def start(space: dict) -> tuple[Path | None, Corpus | None]:
    """A notebook's first call, with its globals(): every parameter there checked and converted
    in place (workbook/params.py: one line for a bad value, before any work), then the text read
    (once per run: the run folder's corpus.npz) and the values that depend on it checked, and
    the run folder made. Returns (run folder, corpus); None for what the notebook has not."""
    values = params.check({k: space[k] for k in params.BY_NAME if k in space})
    space.update(values)
    if "data_path" not in values:
        return None, None
    read_and_check(values, quiet=True)      # the notebook's own read below says if the file changed
    run = run_folder(values["run_dir"])
    return run, load_corpus(values["data_path"], values["corpus_format"], values["val_fraction"],
                            values["keep_retweets"], values["keep_links"], run)


def read_and_check(values: dict, quiet: bool = False) -> Corpus:
    """The text of checked values (params.check), read, and the values that need it checked: its
    size against max_text_mb before it is read, then its length against seq_length and
    batch_size, and prime_text's characters against its vocabulary."""
    path, limit = values["data_path"], values["max_text_mb"]
    for p in (path if isinstance(path, list) else [path]):
        size = check_text_file(p).stat().st_size
        if size > limit * 1e6:
            raise rc.RNNError(f"{p} is {size / 1e6:,.0f} MB, more than max_text_mb = {limit:g}; reading a text "
                              f"takes about 2.5 times its size in memory (measured): set P=max_text_mb="
                              f"{math.ceil(size / 1e6)} to use it anyway")
    corpus = load_corpus(path, values["corpus_format"], values["val_fraction"], values["keep_retweets"],
                         values["keep_links"], values.get("run_dir"), quiet=quiet)
    T = values["seq_length"]
    if len(corpus) < T + 1:
        raise rc.RNNError(f"{path} has {len(corpus)} characters, fewer than seq_length + 1 = {T + 1}; "
                          f"use a longer text or a smaller seq_length")
    try:
        check_reading(corpus.cut, T, values["batch_size"], values["chunk_order"])
    except rc.RNNError as err:
        held = f" (after holding out val_fraction = {values['val_fraction']})" if values["val_fraction"] else ""
        raise rc.RNNError(f"training text of {path}{held}: {err}") from None
    missing = sorted(set(values["prime_text"]) - set(corpus.vocab.chars))
    if missing:
        raise rc.RNNError(f"prime_text has characters the training text does not: {''.join(missing)!r}; "
                          f"use only characters of {Path(path).name}")
    return corpus


# ----------------------------------------------------------------------------- the run folder's files

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
    atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_history(path, hist: rc.History) -> None:
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


def read_validation(path) -> np.ndarray:
    """validation.csv as an array of (update, loss per character) rows; (0, 2) when it is empty."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()[1:]
    return np.array([[float(v) for v in line.split(",")] for line in lines if line], dtype=float).reshape(-1, 2)
