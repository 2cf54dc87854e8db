"""Helpers the notebooks share: the run folder's artefacts, and showing text and tables so
that they read well both in Jupyter and in the PDF report.

Notebooks talk to each other only through the files named in ARTEFACTS, in the run's folder.
"""
from __future__ import annotations

import functools
import html
import json
import math
import os
import re
import sys
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import rnn_core as rc  # noqa: E402

# How the scripts start each notebook's kernel: quiet, and with tornado's logger silenced, whose
# shutdown-time tracebacks (a ZMQ stream closed under a callback) would follow the one-line error.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL",
               '--IPKernelApp.exec_lines=["import logging", "logging.getLogger(\'tornado\').setLevel(logging.CRITICAL)"]']

ARTEFACTS = {
    "corpus.npz": "the planner (or the first notebook): the text as the run read it, for every notebook",
    "grad_check.json": "01_gradient_check: relative errors per parameter, method and m",
    "history.csv": "02_train: update, epoch, loss, smooth_loss for every update",
    "samples.json": "02_train: the text sampled during training, with update and smooth loss",
    "validation.csv": "02_train: update and validation loss per character (empty without val_fraction)",
    "checkpoint.npz": "02_train: the full training state, for resume=True (every checkpoint_every updates)",
    "best_model.npz": "02_train: parameters with the lowest smooth loss, vocabulary, hyper-parameters",
    "run.json": "02_train: parameters, corpus name, size and K, wall time, updates/s",
    "loss.pdf": "03_loss_plot: the smooth-loss figure (vector), also loss.png",
    "validation.pdf": "03_loss_plot: training and validation loss per character (with val_fraction > 0)",
    "passage.txt": "04_synthesis: the 1000-character passage (or the tweets) from the best model",
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


def read_validation(path) -> np.ndarray:
    """validation.csv as an array of (update, loss per character) rows; (0, 2) when it is empty."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()[1:]
    return np.array([[float(v) for v in line.split(",")] for line in lines if line], dtype=float).reshape(-1, 2)


def legend_below(ax, ncol: int = 3) -> None:
    """The legend under the axes, where no line of the plot can cross it."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)


def read_history(path) -> dict:
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return {"update": table[:, 0].astype(int), "epoch": table[:, 1].astype(int),
            "loss": table[:, 2], "smooth_loss": table[:, 3]}


# ----------------------------------------------------------------------------- corpus

CORPUS_FILE = "corpus.npz"   # in the run folder: the text as the run read it


@dataclass(frozen=True, eq=False)
class Corpus:
    """A run's text as every notebook of the run sees it, as vocabulary indices.

    codes[:cut] is the training text and codes[cut:] the held-out end (val_fraction), one byte
    per character for most books; text(start, stop) gives characters back. sha256 has one
    digest per file, of the bytes that were read.
    """
    name: str
    vocab: rc.Vocab
    codes: np.ndarray
    cut: int
    reset_ix: int | None
    line_endings_converted: int
    sha256: tuple
    key: str

    @property
    def train(self) -> np.ndarray:
        return self.codes[:self.cut]

    @property
    def val(self) -> np.ndarray:
        return self.codes[self.cut:]

    def __len__(self) -> int:
        return len(self.codes)

    def text(self, start: int = 0, stop: int | None = None) -> str:
        return self.vocab.decode(self.codes[start:stop])


def load_corpus(data_path, corpus_format: str = "text", val_fraction: float = 0.0,
                keep_retweets: bool = False, keep_links: bool = False, run_dir=None, *,
                quiet: bool = False) -> Corpus:
    """The text, its vocabulary and its split (see read_corpus), read once per run.

    With run_dir, the run folder's corpus.npz is used when it was read from the same files with
    the same settings, and the files are unchanged since (the same size, time and inode); else
    the files are read and corpus.npz written, when the folder exists. The planner writes it
    pinned (save_corpus) before a run's notebooks start: the run then keeps the text it started with
    even if the file changes on disk (a note says so, unless quiet). Within one process the
    last corpus is kept in memory, so check_params and the notebook's own cells share one read.
    """
    settings = _corpus_settings(data_path, corpus_format, val_fraction, keep_retweets, keep_links)
    key = _corpus_key(data_path, settings)
    corpus = _last_corpus.get(key) if key else None
    if corpus is None:
        corpus = _read_snapshot(Path(run_dir) / CORPUS_FILE, settings, key) if run_dir is not None else None
        if corpus is None:
            corpus = read_corpus(data_path, corpus_format, val_fraction, keep_retweets, keep_links)
            key = corpus.key                 # the files as they were read
        _last_corpus.clear()
        _last_corpus[key] = corpus
    if corpus.key != key:                    # a pinned corpus.npz, and the file changed since
        if not quiet:
            files = ", ".join(json.loads(settings)["files"])
            print(f"note: {files} changed after this run read it; the run goes on with the text as it was "
                  f"read then (kept in {CORPUS_FILE})", file=sys.stderr)
    elif run_dir is not None and Path(run_dir).is_dir():
        save_corpus(corpus, run_dir)
    return corpus


_last_corpus: dict = {}


def forget_corpus() -> None:
    """Let the memory of the last corpus go (the planner, before the notebooks start)."""
    _last_corpus.clear()


def changed_on_disk(key: str) -> bool:
    """Whether the files a corpus was read from (its key) have changed since, or are gone."""
    settings = json.loads(key)[0]
    return _corpus_key(json.loads(settings)["files"], settings) != key


def _corpus_settings(data_path, corpus_format, val_fraction, keep_retweets, keep_links) -> str:
    """The files (absolute paths) and the settings a corpus is read with."""
    paths = data_path if isinstance(data_path, list) else [data_path]
    try:
        files = [os.path.abspath(p) for p in paths]
    except TypeError:
        files = [repr(p) for p in paths]
    return json.dumps({"files": files, "corpus_format": corpus_format, "val_fraction": val_fraction,
                       "keep_retweets": keep_retweets, "keep_links": keep_links})


def _corpus_key(data_path, settings: str) -> str | None:
    """settings and each file's size, time and inode: equal keys, the same text; None when a
    file cannot be looked at (read_corpus then says why)."""
    paths = data_path if isinstance(data_path, list) else [data_path]
    try:
        stats = [os.stat(p) for p in paths]
    except (OSError, TypeError, ValueError):
        return None
    return json.dumps([settings, [[st.st_size, st.st_mtime_ns, st.st_ino] for st in stats]])


def read_corpus(data_path, corpus_format: str = "text", val_fraction: float = 0.0,
                keep_retweets: bool = False, keep_links: bool = False) -> Corpus:
    """Read the file(s): the text, its vocabulary and its split.

    corpus_format "tweets": data_path is a tweet-archive JSON file (or a list of them), and
    the hidden state restarts after each tweet's end character (reset). The last
    val_fraction of the text is held out (cut at a tweet's end for tweets). Line endings are
    read as LF; line_endings_converted counts the CRLF and CR ones. A file that changes while
    it is read is an error: the digests must be those of the text.
    """
    import hashlib
    paths = data_path if isinstance(data_path, list) else [data_path]
    settings = _corpus_settings(data_path, corpus_format, val_fraction, keep_retweets, keep_links)
    key = _corpus_key(data_path, settings)
    raws = [rc.read_bytes(p) for p in paths]
    if key is None or _corpus_key(data_path, settings) != key:
        raise rc.RNNError(f"{', '.join(map(str, paths))} changed while it was being read; run again once it is "
                          f"written")
    sha256 = tuple(hashlib.sha256(raw).hexdigest() for raw in raws)
    converted = 0
    if corpus_format == "tweets":
        texts = [rc.decode_text(raw, p)[0] for raw, p in zip(raws, paths)]
        del raws
        text = rc.load_tweets(paths, keep_retweets=keep_retweets, keep_links=keep_links, texts=texts)
        del texts
    else:
        text, converted = rc.decode_text(raws[0], paths[0])
        del raws
    vocab = rc.Vocab(text)
    cut = len(text) - int(round(len(text) * val_fraction))
    if corpus_format == "tweets" and cut < len(text):
        cut = text.rfind(rc.EOT, 0, cut) + 1 or cut
    codes = vocab.encode(text, compact=True)
    return Corpus(name=Path(paths[0]).name, vocab=vocab, codes=codes, cut=cut,
                  reset_ix=vocab.chars.index(rc.EOT) if corpus_format == "tweets" else None,
                  line_endings_converted=converted, sha256=sha256, key=key)


def save_corpus(corpus: Corpus, run_dir, pin: bool = False) -> None:
    """Write corpus into run_dir's corpus.npz, unless it already holds it (pinned, if asked);
    a cache, so a failed write is let go (the notebooks then read the file)."""
    path = Path(run_dir) / CORPUS_FILE
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"][()]))
        if meta.get("key") == corpus.key and (meta.get("pinned") or not pin):
            return
    except (OSError, ValueError, KeyError, EOFError, AttributeError, RecursionError, zipfile.BadZipFile):
        pass                               # none yet, damaged, or not ours: write it
    meta = {"format": 1, "key": corpus.key, "pinned": pin, "name": corpus.name, "cut": corpus.cut,
            "reset_ix": corpus.reset_ix, "line_endings_converted": corpus.line_endings_converted,
            "sha256": list(corpus.sha256)}
    try:
        rc._atomic_write(path, lambda f: np.savez(f, codes=corpus.codes, chars=np.array(corpus.vocab.chars),
                                                  meta=np.array(json.dumps(meta))))
    except rc.RNNError:
        pass


def _read_snapshot(path: Path, settings: str, key: str | None) -> Corpus | None:
    """The corpus in corpus.npz if it was read from these files with these settings, and they
    are unchanged or it is pinned; None if not (or if the file is damaged: the text is then
    read again)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"][()]))
            if not isinstance(meta, dict) or meta.get("format") != 1 or not isinstance(meta.get("key"), str):
                return None
            read_with, stats = json.loads(meta["key"])
            if read_with != settings or not (meta["key"] == key or meta.get("pinned") is True):
                return None
            codes, chars = f["codes"], str(f["chars"][()])
        vocab = rc.Vocab(chars)
        cut, reset_ix = meta["cut"], meta["reset_ix"]
        ok = (codes.ndim == 1 and codes.dtype.kind == "u" and len(codes) > 0 and vocab.chars == chars
              and int(codes.max()) < vocab.K and isinstance(cut, int) and 0 < cut <= len(codes)
              and (reset_ix is None or isinstance(reset_ix, int) and 0 <= reset_ix < vocab.K)
              and isinstance(meta["line_endings_converted"], int) and isinstance(meta["name"], str)
              and isinstance(meta["sha256"], list) and len(meta["sha256"]) == len(stats)
              and all(isinstance(d, str) and len(d) == 64 for d in meta["sha256"]))
        if not ok:
            return None
    except (OSError, ValueError, KeyError, TypeError, EOFError, RecursionError, zipfile.BadZipFile, rc.RNNError):
        return None
    return Corpus(name=meta["name"], vocab=vocab, codes=codes, cut=cut, reset_ix=reset_ix,
                  line_endings_converted=meta["line_endings_converted"], sha256=tuple(meta["sha256"]),
                  key=meta["key"])


# ----------------------------------------------------------------------------- display

@functools.lru_cache(maxsize=1)   # read the font once per process
def _font_charmap() -> frozenset:
    """Code points the PDF's monospaced font (DejaVu Sans Mono) can draw."""
    try:
        import matplotlib
        from matplotlib.ft2font import FT2Font
        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf"
        have = set(FT2Font(str(path)).get_charmap())
    except Exception:  # noqa: BLE001 - without the font file, assume Basic Latin and Latin-1 only
        have = set(range(32, 127)) | set(range(160, 256))
    return frozenset(have | {9, 10})


def for_pdf(text: str) -> tuple[str, int]:
    """text with each character the PDF font lacks (emoji, ...) written as [U+XXXX]; and their count."""
    have = _font_charmap()
    out, n = [], 0
    for ch in text:
        if ord(ch) in have:
            out.append(ch)
        else:
            out.append(f"[U+{ord(ch):04X}]")
            n += 1
    return "".join(out), n


def unshown_note(text: str) -> str:
    """What the characters of text that the PDF cannot draw are, in one sentence: control characters
    (no glyph anywhere) apart from the rest (emoji and other symbols outside the font)."""
    have = _font_charmap()
    missing = [ch for ch in text if ord(ch) not in have]
    control = sum(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in missing)
    other = len(missing) - control
    parts = ([f"{control} control character{'s' if control > 1 else ''} (invisible)"] if control else []) + \
            ([f"{other} character{'s' if other > 1 else ''} outside the PDF font (emoji and other symbols)"]
             if other else [])
    return " and ".join(parts) + " shown as [U+code point]." if parts else ""


def shown(text: str) -> str:
    """Sampled text for display: each end of a tweet as a visible pilcrow and a line break."""
    return text.replace(rc.EOT, "\u00b6\n")


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
        safe, n = for_pdf(self.text)
        note = f"\\par{{\\footnotesize {unshown_note(self.text)}}}\n" if n else ""
        return {
            "text/plain": (self.label + "\n" if self.label else "") + self.text,
            "text/html": f"{label_html}<pre style='white-space: pre-wrap; border: 1px solid #ccc; "
                         f"padding: 4px'>{html.escape(self.text)}</pre>",
            "text/latex": label_tex + _latex_verbatim(safe) + note,
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


def fmt_small(x: float) -> str:
    """A spread or a difference with enough decimals to show it: 0.012, 0.00034; 0 only when it is 0."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    leading = math.floor(math.log10(abs(float(f"{x:.2g}"))))    # of x rounded to two digits
    return f"{x:.{max(3, 1 - leading)}f}"


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:.0f} s"


def nats_per_char(loss: float, reduction: str, seq_length: int) -> float:
    return loss / seq_length if reduction == "sum" else loss


# ----------------------------------------------------------------------------- parameters

def check_params(space: dict) -> None:
    """Check every run parameter found in `space` (a notebook's globals()) before any work.

    A bad value raises RNNError with one line naming it and its allowed range. Whole numbers
    written as floats (n_updates = 1e5) are taken, and written back into space as ints. With
    data_path: the text is read, and settings that cannot work on it (a batch_size that leaves
    a stream less than a chunk, a prime text with characters the text lacks) fail here too.
    """
    ints = {"seed": 0, "m": 1, "seq_length": 1, "n_updates": 1, "sample_every": 1, "passage_length": 1,
            "batch_size": 1, "val_every": 1, "checkpoint_every": 1, "n_tweets": 1, "tweet_length": 1}
    for name, low in ints.items():
        if name in space:
            space[name] = rc._check_int(name, space[name], low=low)
    checks = {
        "eta": lambda v: rc._check_positive("eta", v),
        "sigma": lambda v: rc._check_positive("sigma", v),
        "clip": lambda v: rc._check_positive("clip", v),
        "check_sigma": lambda v: rc._check_positive("check_sigma", v),
        "check_h": lambda v: rc._check_positive("check_h", v),
        "init": lambda v: rc._check_choice("init", v, rc.INITS),
        "chunk_order": lambda v: rc._check_choice("chunk_order", v, rc.CHUNK_ORDERS),
        "dtype": lambda v: rc._check_choice("dtype", v, rc.DTYPES),
        "best_by": lambda v: rc._check_choice("best_by", v, rc.BEST_BY),
        "corpus_format": lambda v: rc._check_choice("corpus_format", v, ("text", "tweets")),
        "preset": check_preset,
        "val_fraction": lambda v: _check_fraction("val_fraction", v),
        "resume": lambda v: _check_bool("resume", v),
        "speed": lambda v: _check_bool("speed", v),
        "check_torch": lambda v: (use_torch(True) if v is True else None) if v in ("auto", True, False) else
        _bad(f"check_torch must be \"auto\", True or False, got {v!r}"),   # imports torch only if it must be there
        "keep_retweets": lambda v: _check_bool("keep_retweets", v),
        "keep_links": lambda v: _check_bool("keep_links", v),
        "temperatures": lambda v: [rc._check_positive("temperature", t) for t in _as_list("temperatures", v)],
        "top_ps": lambda v: [rc._check_top_p(p) for p in _as_list("top_ps", v, empty=True)],
        "optimizer": lambda v: rc._check_choice("optimizer", v, rc.OPTIMIZERS),
        "loss_reduction": lambda v: rc._check_choice("loss_reduction", v, ("sum", "mean")),
        "check_m": lambda v: [rc._check_int("check_m entry", x) for x in
                              (v if isinstance(v, list) else [v])],
        "prime_text": lambda v: v if isinstance(v, str) else _bad(f"prime_text must be a text, got {v!r}"),
        "overrides": lambda v: [x if isinstance(x, str) else _bad(f"overrides must name parameters, got {x!r}")
                                for x in _as_list("overrides", v, empty=True)],
    }
    for name, check in checks.items():
        if name in space:
            check(space[name])
    if "preset" in space:
        check_preset_applied(space)
    if space.get("best_by") == "val" and space.get("val_fraction", 0) == 0:
        raise rc.RNNError('best_by="val" needs a validation text: set val_fraction > 0 (e.g. 0.1)')
    tweets = space.get("corpus_format") == "tweets"
    if space.get("prime_text") and tweets:
        raise rc.RNNError("prime_text is for books: with tweets each one starts from an end-of-tweet "
                          "character; leave prime_text empty")
    if "max_text_mb" in space:
        rc._check_positive("max_text_mb", space["max_text_mb"])
    if "data_path" in space:          # last: reading it is the slowest check
        path = space["data_path"]
        limit = space.get("max_text_mb", 1000)
        for p in (path if isinstance(path, list) else [path]):
            size = rc.check_text_file(p).stat().st_size
            if size > limit * 1e6:
                raise rc.RNNError(f"{p} is {size / 1e6:,.0f} MB, more than max_text_mb = {limit:g}; reading a text "
                                  f"takes about 2.5 times its size in memory (measured): set P=max_text_mb="
                                  f"{math.ceil(size / 1e6)} to use it anyway")
        corpus = load_corpus(path, space.get("corpus_format", "text"), space.get("val_fraction", 0.0),
                             space.get("keep_retweets", False), space.get("keep_links", False), space.get("run_dir"),
                             quiet=True)     # the notebook's own load_corpus notes a changed file
        T = space.get("seq_length", 1)
        if len(corpus) < T + 1:
            raise rc.RNNError(f"{path} has {len(corpus)} characters, fewer than seq_length + 1 = {T + 1}; "
                              f"use a longer text or a smaller seq_length")
        try:
            rc.check_reading(corpus.cut, T, space.get("batch_size", 1),
                             space.get("chunk_order", "sequential"))
        except rc.RNNError as err:
            held = f" (after holding out val_fraction = {space['val_fraction']})" if space.get("val_fraction") else ""
            raise rc.RNNError(f"training text of {path}{held}: {err}") from None
        if space.get("prime_text"):
            missing = sorted(set(space["prime_text"]) - set(corpus.vocab.chars))
            if missing:
                raise rc.RNNError(f"prime_text has characters the training text does not: {''.join(missing)!r}; "
                                  f"use only characters of {Path(path).name}")


def _bad(message: str):
    raise rc.RNNError(message)


PRESETS = ROOT / "params"


def presets() -> list:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def check_preset(v) -> Path:
    """The file params/<v>.yaml; a one-line error naming the presets there if it does not exist."""
    if v not in presets():
        raise rc.RNNError(f"unknown preset {v!r}; choose one of: {', '.join(presets())} (files in params/)")
    return PRESETS / f"{v}.yaml"


def preset_values(name: str) -> dict:
    """The values params/<name>.yaml sets (papermill's parameter-file format)."""
    import yaml
    values = yaml.safe_load(check_preset(name).read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise rc.RNNError(f"params/{name}.yaml must map parameter names to values")
    return values


def notebook_defaults() -> dict:
    """Every parameter's default, from the one list that writes the parameters cells."""
    import ast
    import sync_parameters
    return {n: ast.literal_eval(v) for n, v, _ in sync_parameters.COMMON}


RECIPE_ONLY = {"preset", "data_path"}     # a preset's values that are not its recipe


def preset_changes(space: dict) -> dict:
    """{name: (value here, the preset's value)} for the preset's values that this run changes."""
    values = preset_values(space["preset"])
    return {k: (space[k], v) for k, v in values.items() if k not in RECIPE_ONLY and k in space and space[k] != v}


def check_preset_applied(space: dict) -> None:
    """A run labelled with a preset trains that preset's recipe: a value that still has the
    notebooks' default where the preset sets another was not applied (in Jupyter, setting preset
    = "adam2025" changes only the label) and is refused. Values changed on purpose are kept: any
    that differs from the default, and any named in overrides."""
    defaults, overrides = notebook_defaults(), set(_as_list("overrides", space.get("overrides", []), empty=True))
    missed = {k: pair for k, pair in preset_changes(space).items()
              if k not in overrides and pair[0] == defaults.get(k)}
    if missed:
        name = space["preset"]
        want = ", ".join(f"{k}={v!r}" for k, (_, v) in missed.items())
        have = ", ".join(f"{k}={h!r}" for k, (h, _) in missed.items())
        raise rc.RNNError(f"preset {name!r} sets {want} but this run has {have}: apply it (make report PRESET={name}, "
                          f"or papermill -f ../params/{name}.yaml), or set those values in the parameters cell "
                          f"(list any you keep on purpose in overrides)")


def _check_bool(name, v):
    if not isinstance(v, bool):
        raise rc.RNNError(f"{name} must be True or False, got {v!r}")


def _check_fraction(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 0.9:
        raise rc.RNNError(f"{name} must be a number in [0, 0.9), got {v!r}")


def _as_list(name, v, empty=False):
    items = v if isinstance(v, list) else [v]
    if not items and not empty:
        raise rc.RNNError(f"{name} needs at least one value")
    return items


# ----------------------------------------------------------------------------- measuring text

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def words(text: str) -> list:
    """Words as runs of letters (with an inner apostrophe), lower-cased."""
    return [w.lower() for w in _WORD.findall(text)]


VAL_SCORED_MAX = 1_000_000     # held-out characters scored at most (a 200 MB book holds out 20M)
BOOK_WORDS_MAX = 20_000_000    # training characters whose words count as "words of the book"


def word_set(text: str, limit: int = BOOK_WORDS_MAX) -> set:
    """The distinct words of text[:limit], read a block at a time: memory grows with the
    distinct words, not with the text (a list of every word of 200 MB is gigabytes)."""
    found, block, start, end = set(), 1 << 20, 0, min(len(text), limit)
    while start < end:
        stop = min(start + block, end)
        while stop < end and (text[stop].isalpha() or text[stop] == "'"):   # never cut a word in two
            stop += 1
        found.update(w.lower() for w in _WORD.findall(text, start, stop))
        start = stop
    return found


def text_stats(text: str, book_words: set) -> dict:
    """words: count; book_words: share found in the training text; distinct: share of distinct
    words; repeated_trigrams: share of word trigrams that occur more than once in the text."""
    ws = words(text)
    n = len(ws)
    tri = list(zip(ws, ws[1:], ws[2:]))
    counts = {}
    for t in tri:
        counts[t] = counts.get(t, 0) + 1
    return {"words": n,
            "book_words": sum(w in book_words for w in ws) / n if n else 0.0,
            "distinct": len(set(ws)) / n if n else 0.0,
            "repeated_trigrams": sum(c for c in counts.values() if c > 1) / len(tri) if tri else 0.0}


def sampling_comment(stats: list) -> str:
    """One sentence per kind of setting, from the lowest to the highest value, with the numbers."""
    parts = []
    for kind in ("temperature", "top-p"):
        rows = sorted((s for s in stats if s["kind"] == kind), key=lambda s: s["value"])
        if len(rows) < 2:
            continue
        lo, hi = rows[0], rows[-1]
        parts.append(
            f"From {kind} {lo['value']} to {hi['value']}, the share of real words (words of the training "
            f"text) goes from {lo['book_words']:.0%} to {hi['book_words']:.0%}, distinct words from "
            f"{lo['distinct']:.0%} to {hi['distinct']:.0%}, and repeated word trigrams from "
            f"{lo['repeated_trigrams']:.0%} to {hi['repeated_trigrams']:.0%}.")
    return " ".join(parts) or "Give at least two settings of one kind to compare them."


# ----------------------------------------------------------------------------- comparing runs

def load_run(run_dir) -> dict:
    """A finished run's numbers for comparison; RNNError if the run did not finish."""
    d = Path(run_dir)
    info = read_json(need(d, "run.json"))
    need(d, "passage.txt")
    h = read_history(need(d, "history.csv"))
    p = info["params"]
    per = p["seq_length"] if p["loss_reduction"] == "sum" else 1
    val = read_validation(need(d, "validation.csv"))
    return {**info, "name": d.name, "per_char": h["smooth_loss"] / per,
            "best_per_char": info["best_smooth_loss"] / per,
            "val_last": float(val[-1, 1]) if len(val) else None,
            "passage": (d / "passage.txt").read_text(encoding="utf-8")}


def notebook_error(path) -> str | None:
    """The one-line message of the first error in an executed notebook: an RNNError's own
    text, "interrupted" for Ctrl-C, else "Name: message"; None if it has no error."""
    import nbformat
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable notebook tells nothing
        return None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                if out["ename"] == "RNNError":
                    return out["evalue"]
                if out["ename"] == "KeyboardInterrupt":
                    return "interrupted"
                return f"{out['ename']}: {out['evalue']}".strip()
    return None


def failure_of(run_dir) -> str | None:
    """The one-line error of a failed run, from the executed notebooks kept in <run>.failed."""
    failed = Path(run_dir).with_name(Path(run_dir).name + ".failed")
    if not failed.is_dir():
        return None
    for path in sorted(failed.glob("0*.ipynb")):
        message = notebook_error(path)
        if message is not None:
            return f"{message} (in {path.name})"
    return f"it stopped before finishing; see {failed}"


_NOT_COMPARED = {"seed"}


def compare_settings(runs: list, varied=()) -> list:
    """What differs between runs beyond the seed (and the study's `varied` parameters): corpus
    across all, parameters within a preset."""
    problems = []
    corpora = {(r["corpus"]["name"], r["corpus"]["characters"], r["corpus"]["K"]) for r in runs}
    if len(corpora) > 1:
        problems.append("corpus: " + "; ".join(f"`{n}` ({c:,} characters, K = {k})" for n, c, k in sorted(corpora)))
    by_preset = {}
    for r in runs:
        by_preset.setdefault(r["params"]["preset"], []).append(r)
    for preset, rs in by_preset.items():
        keys = sorted(set().union(*(r["params"] for r in rs)) - _NOT_COMPARED - set(varied))
        for k in keys:
            values = {json.dumps(r["params"].get(k)) for r in rs}
            if len(values) > 1:
                problems.append(f"{preset}: `{k}` is " + ", ".join(
                    f"{r['params'].get(k)} (seed {r['params']['seed']})" for r in rs))
    updates = {r["updates"] for r in runs}
    if len(updates) > 1 and "n_updates" not in varied:
        problems.append("updates done: " + ", ".join(f"{r['updates']:,} ({r['name']})" for r in runs))
    return problems


def final_score(r: dict, metric: str) -> float:
    """A run's final number: its held-out loss ("val") or its final smooth loss, per character."""
    return r["val_last"] if metric == "val" else float(r["per_char"][-1])


def compare_summary(groups: dict, metric: str = "smooth") -> str:
    """Mean and spread of each group's final score (the smooth loss, or the held-out loss with
    metric="val") and, for two or more groups, the winner and whether its lead exceeds the noise."""
    what = "held-out loss" if metric == "val" else "final smooth loss"
    stats = {}
    for preset, rs in groups.items():
        final = np.array([final_score(r, metric) for r in rs])
        stats[preset] = (final.mean(), final.std(ddof=1) if len(final) > 1 else float("nan"), len(final),
                         final.max() - final.min())
    parts = [f"**{p}**: {what} {m:.3f} nats per character on average over {n} seed{'s' if n > 1 else ''}"
             + (f" (standard deviation {fmt_small(s)}, range {fmt_small(rg)})" if n > 1 else "")
             for p, (m, s, n, rg) in stats.items()]
    text = "; ".join(parts) + "."
    if len(stats) >= 2:
        ranked = sorted(stats.items(), key=lambda kv: kv[1][0])
        (win, (m1, *_)), (second, (m2, *_)) = ranked[0], ranked[1]
        diff = m2 - m1
        sds = [s for _, (_, s, _, _) in ranked if not math.isnan(s)]
        noise = max(sds) if sds else float("nan")
        verdict = ("larger than the spread between seeds" if not math.isnan(noise) and diff > 2 * noise else
                   "within the noise between seeds" if not math.isnan(noise) else "with one seed each, so the noise is unknown")
        text += (f" **{win}** ends lower than **{second}** by {fmt_small(diff)} nats per character "
                 f"({fmt_small(diff / math.log(2))} bits), {verdict}"
                 + (f" (largest seed standard deviation {fmt_small(noise)})." if not math.isnan(noise) else "."))
    return text


# ----------------------------------------------------------------------------- PyTorch and the textbook, beside rnn_core

TORCH_INSTALL = "make torch (pip install -r requirements-torch.txt into .venv)"


@functools.lru_cache(maxsize=1)
def torch_version() -> str | None:
    """PyTorch's version if it can be imported here, else None (it is an optional extra)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def use_torch(check_torch) -> bool:
    """check_torch "auto": PyTorch when installed; True: required (one line with the command that
    installs it); False: never."""
    if check_torch is True and torch_version() is None:
        raise rc.RNNError(f"check_torch=True needs PyTorch, which is not installed; run {TORCH_INSTALL}")
    return check_torch is not False and torch_version() is not None


def torch_grads(rnn: "rc.RNN", x, y, h0) -> "rc.RNN":
    """Gradients of the chunk's summed loss by PyTorch's automatic differentiation: the forward
    pass written with torch operations on the same float64 parameters, then .backward()."""
    import torch
    P = {n: torch.tensor(a, dtype=torch.float64, requires_grad=True) for n, a in zip(rc.RNN.NAMES, rnn.arrays())}
    h = torch.tensor(np.asarray(h0, dtype=np.float64).reshape(-1, 1))
    loss = torch.zeros((), dtype=torch.float64)
    for xt, yt in zip(np.asarray(x).tolist(), np.asarray(y).tolist()):
        h = torch.tanh(P["W"] @ h + P["U"][:, xt:xt + 1] + P["b"])
        loss = loss - torch.log_softmax(P["V"] @ h + P["c"], dim=0)[yt, 0]
    loss.backward()
    return rc.RNN(*(P[n].grad.numpy() for n in rc.RNN.NAMES))


def textbook():
    """tests/textbook_rnn.py: the plain implementation (one-hot products, a loop per step) that the
    tests compare rnn_core against."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("textbook_rnn", ROOT / "tests" / "textbook_rnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def interleaved_times(fns: dict, rounds: int, budget: float) -> dict:
    """{name: seconds per call of each of its rounds}: the functions take turns, round by round,
    so that the machine's drift touches them alike; each round calls each once. Stops early once
    `budget` seconds have passed (after at least 3 rounds)."""
    import time
    times = {name: [] for name in fns}
    start = time.perf_counter()
    for r in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() - start > budget:
            break
    return times


def torch_update(rnn: "rc.RNN", X, Y, *, optimizer: str, eta: float, clip: float, mean: bool, dtype: str):
    """One training update in PyTorch on the chunks X, Y (T, B), each stream from h = 0: forward,
    loss (summed or averaged over the chunk, mean over streams), .backward(), clipping and the
    optimiser's step; returned as a function, for timing beside rnn_core."""
    import torch
    f = torch.float32 if dtype == "float32" else torch.float64
    b, c, U, W, V = (torch.tensor(a, dtype=f, requires_grad=True) for a in rnn.arrays())
    params = [b, c, U, W, V]
    opt = {"adagrad": lambda: torch.optim.Adagrad(params, lr=eta, eps=1e-8),
           "rmsprop": lambda: torch.optim.RMSprop(params, lr=eta, alpha=0.9, eps=1e-8),
           "adam": lambda: torch.optim.Adam(params, lr=eta, eps=1e-8)}[optimizer]()
    Xt, Yt = torch.as_tensor(np.asarray(X, dtype=np.int64)), torch.as_tensor(np.asarray(Y, dtype=np.int64))
    T, B = Xt.shape

    def step():
        h = torch.zeros(B, rnn.m, dtype=f)
        hs = []
        for t in range(T):
            h = torch.tanh(h @ W.T + U.T[Xt[t]] + b.T)
            hs.append(h)
        logits = torch.stack(hs) @ V.T + c.T                    # (T, B, K)
        loss = torch.nn.functional.cross_entropy(logits.reshape(T * B, -1), Yt.reshape(-1), reduction="sum")
        loss = loss / B / (T if mean else 1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(params, clip)
        opt.step()
    return step
