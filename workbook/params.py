"""Every parameter of the workbook, declared once: its name, default, check, help, the
notebooks that use it and its make variable.

From this list come the notebooks' parameter cells (workbook/cells.py writes them), every
check of a value (check, here: one function, called by the planner before any notebook
starts and by each notebook first, for values typed by hand), the planner's make variables
and `make help`, the run record (run.json and the model file) and the README's table.

Standard library only: `make help` reads this before .venv exists.
"""
from __future__ import annotations

import ast
import importlib.util
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "params"
GRADIENT_CHECK, TRAIN, LOSS_PLOT, SYNTHESIS, COMPARE = (
    "01_gradient_check", "02_train", "03_loss_plot", "04_synthesis", "05_compare")
RUN_NOTEBOOKS = (GRADIENT_CHECK, TRAIN, LOSS_PLOT, SYNTHESIS)   # the notebooks of one run, in order
START = "start"                 # used_by: read by workbook.notebook.start, which every run notebook calls


def fail(message: str):
    """Raise rnn_core's RNNError (imported here only when a value is wrong: numpy's world)."""
    from rnn_core import RNNError
    raise RNNError(message)


# ----------------------------------------------------------------------------- kinds of value

@dataclass(frozen=True)
class Whole:
    """A whole number >= low; 1e5 or 100000.0 (as make passes N_UPDATES=1e5) is 100000."""
    low: int = 1

    def __call__(self, name, v):
        if isinstance(v, float) and math.isfinite(v) and v == int(v):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            fail(f"{name} must be a whole number >= {self.low}, got {v!r}")
        if v < self.low:
            fail(f"{name} must be >= {self.low}, got {v}")
        return int(v)

    def __str__(self):
        return f"whole number >= {self.low}"


@dataclass(frozen=True)
class Positive:
    def __call__(self, name, v):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0 or not math.isfinite(v):
            fail(f"{name} must be a number > 0, got {v!r}")
        return float(v)

    def __str__(self):
        return "number > 0"


@dataclass(frozen=True)
class Fraction:
    """A number in [0, high)."""
    high: float

    def __call__(self, name, v):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < self.high:
            fail(f"{name} must be a number in [0, {self.high:g}), got {v!r}")
        return v

    def __str__(self):
        return f"number in [0, {self.high:g})"


@dataclass(frozen=True)
class TopP:
    def __call__(self, name, v):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v <= 1:
            fail(f"{name} must be in (0, 1], got {v!r}")
        return float(v)

    def __str__(self):
        return "number in (0, 1]"


@dataclass(frozen=True)
class Choice:
    options: tuple

    def __call__(self, name, v):
        if v not in self.options:
            fail(f"unknown {name} {v!r}; choose one of: {', '.join(map(str, self.options))}")
        return v

    def __str__(self):
        return " | ".join(map(str, self.options))


@dataclass(frozen=True)
class Flag:
    def __call__(self, name, v):
        if not isinstance(v, bool):
            fail(f"{name} must be True or False, got {v!r}")
        return v

    def __str__(self):
        return "True | False"


@dataclass(frozen=True)
class Text:
    def __call__(self, name, v):
        if not isinstance(v, str):
            fail(f"{name} must be a text, got {v!r}")
        return v

    def __str__(self):
        return "text"


@dataclass(frozen=True)
class Paths:
    """A path, or a list of paths (several tweet archives)."""
    def __call__(self, name, v):
        if not (isinstance(v, str) or isinstance(v, list) and v and all(isinstance(p, str) for p in v)):
            fail(f"{name} must be a path or a list of paths, got {v!r}")
        return v

    def __str__(self):
        return "path (or list of paths)"


@dataclass(frozen=True)
class ListOf:
    """A list of values of one kind (each checked as `entry`); a single value is a list of one."""
    kind: object
    entry: str
    empty: bool = False

    def __call__(self, name, v):
        items = v if isinstance(v, list) else [v]
        if not items and not self.empty:
            fail(f"{name} needs at least one value")
        return [self.kind(self.entry, x) for x in items]

    def __str__(self):
        return f"list of {self.kind}" + (" (may be empty)" if self.empty else "")


@dataclass(frozen=True)
class Preset:
    """The name of a file params/<name>.yaml."""
    def __call__(self, name, v):
        if v not in presets():
            fail(unknown_preset(v))
        return v

    def __str__(self):
        return "name of a file in params/"


@dataclass(frozen=True)
class TorchChoice:
    """"auto" (PyTorch when installed), True (required), False (never)."""
    def __call__(self, name, v):
        if v not in ("auto", True, False) or isinstance(v, int) and not isinstance(v, bool):
            fail(f'{name} must be "auto", True or False, got {v!r}')
        if v is True and not torch_installed():
            fail(f"{name}=True needs PyTorch, which is not installed; run {TORCH_INSTALL}")
        return v

    def __str__(self):
        return '"auto" | True | False'


@dataclass(frozen=True)
class Any:
    """A value only the notebook that reads it can check (05_compare's lists of runs)."""
    what: str

    def __call__(self, name, v):
        return v

    def __str__(self):
        return self.what


TORCH_INSTALL = "make torch (pip install -r requirements-torch.txt into .venv)"


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


# ----------------------------------------------------------------------------- the parameters

@dataclass(frozen=True)
class Param:
    """One parameter. default is the literal as the notebooks' cells write it; used_by names
    the notebooks whose code reads it (START: read for them all by notebook.start); make is its
    make variable, and name_part what it adds to a run folder's name (None: nothing); record:
    kept in run.json and with the model, as a setting of the training."""
    name: str
    default: str
    kind: object
    help: str
    used_by: tuple
    make: str = ""
    name_part: str | None = None
    record: bool = False

    @property
    def value(self):
        return ast.literal_eval(self.default)


P = Param
G, T, L, S = GRADIENT_CHECK, TRAIN, LOSS_PLOT, SYNTHESIS
PARAMETERS = [
    P("preset", '"classic"', Preset(), "the recipe: params/<preset>.yaml sets the values it names", (START, T),
      make="PRESET", record=True),
    P("overrides", "[]", ListOf(Text(), "overrides entry", empty=True),
      'values set on purpose against the preset, e.g. ["eta"]', (START,)),
    P("data_path", '"../data/shakespeare.txt"', Paths(), "UTF-8 text to learn (the course's book: goblet_book.txt, put in data/)",
      (START,), make="DATA"),
    P("corpus_format", '"text"', Choice(("text", "tweets")), '"text", or "tweets": data_path is a tweet-archive JSON file',
      (START, T, S), record=True),
    P("seed", "1", Whole(0), "seeds every random draw of the run", (G, T, S), make="SEED", record=True),
    P("cell", '"rnn"', Choice(("rnn", "lstm")), '"rnn" (the assignment\'s vanilla RNN) or "lstm" (an LSTM layer of m units)',
      (G, T), make="CELL", name_part="", record=True),
    P("m", "100", Whole(1), "hidden units", (G, T), make="M", name_part="m", record=True),
    P("eta", "0.1", Positive(), "learning rate", (G, T), make="ETA", name_part="eta", record=True),
    P("seq_length", "25", Whole(1), "characters per chunk, T", (START, G, T), make="SEQ_LENGTH", name_part="T",
      record=True),
    P("sigma", "0.01", Positive(), "std of U, W, V when init is normal", (T,), make="SIGMA", name_part="sigma",
      record=True),
    P("init", '"normal"', Choice(("normal", "xavier")), '"normal" (2017-2024) or "xavier" (2025)', (T,),
      make="INIT", name_part="", record=True),
    P("optimizer", '"adagrad"', Choice(("adagrad", "rmsprop", "adam")), '"adagrad", "rmsprop" or "adam"', (G, T),
      make="OPTIMIZER", name_part="", record=True),
    P("loss_reduction", '"sum"', Choice(("sum", "mean")), '"sum" over the chunk (2017-2024) or "mean" (2025)',
      (G, T), record=True),
    P("clip", "5.0", Positive(), "gradients clipped element-wise to [-clip, clip]", (G, T), record=True),
    P("n_updates", "100000", Whole(1), "training updates", (T,), make="N_UPDATES", name_part="n", record=True),
    P("sample_every", "10000", Whole(1), "a sample of the text every this many updates", (T, S),
      make="SAMPLE_EVERY", record=True),
    P("batch_size", "1", Whole(1), "streams per update (mini-batch); 1 is the assignment's loop", (START, G, T),
      record=True),
    P("chunk_order", '"sequential"', Choice(("sequential", "shuffled", "random")),
      '"sequential" (the assignment), "shuffled" each epoch, or "random" positions', (START, G, T), record=True),
    P("dtype", '"float64"', Choice(("float64", "float32")),
      '"float64", or "float32": about twice as fast with batch_size > 1', (G, T), record=True),
    P("val_fraction", "0.1", Fraction(0.9), "the end of the text held out for validation; 0 trains on all",
      (START, T), record=True),
    P("val_every", "5000", Whole(1), "updates between validation scores", (T,), record=True),
    P("best_by", '"smooth"', Choice(("smooth", "val")), 'best model by "smooth" training loss or "val" loss',
      (T, S), record=True),
    P("tweet_length", "140", Whole(1), "tweets: longest synthesized tweet (140 or 280)", (S,)),
    P("keep_retweets", "False", Flag(), "tweets: keep retweets", (START,), record=True),
    P("keep_links", "False", Flag(), "tweets: keep http(s) links", (START,), record=True),
    P("max_text_mb", "1000", Positive(),
      "a larger text file is refused (reading one takes about 2.5x its size in memory)", (START,)),
    P("run_dir", '"../reports/by-hand"', Text(),
      "where this run's artefacts go (make's runs have names of their own)", (START,)),
    P("passage_length", "1000", Whole(1), "characters of the passage from the best model", (S,)),
    P("prime_text", '""', Text(), "text the best model reads before its passage (not for tweets)", (START, S)),
    P("temperatures", "[0.5, 0.8, 1.0, 1.3]", ListOf(Positive(), "temperature"),
      "sampling section: temperatures to compare", (S,)),
    P("top_ps", "[0.5, 0.9, 1.0]", ListOf(TopP(), "top_p", empty=True),
      "sampling section: nucleus (top-p) settings; [] for none", (S,)),
    P("n_tweets", "12", Whole(1), "tweets: how many to synthesize", (S,)),
    P("checkpoint_every", "10000", Whole(1), "updates between checkpoints (run_dir/checkpoint.npz)", (T,)),
    P("resume", "False", Flag(), "True: continue from run_dir/checkpoint.npz up to n_updates", (T,)),
    P("check_m", "[5, 100]", ListOf(Whole(1), "check_m entry"), "gradient check: hidden sizes to check at", (G,)),
    P("check_sigma", "0.1", Positive(), "gradient check: std of the weights", (G,)),
    P("check_h", "1e-4", Positive(), "gradient check: step of the centred differences", (G,)),
    P("check_torch", '"auto"', TorchChoice(),
      'gradient check against PyTorch autograd: "auto" (if installed), True, False', (G,)),
    P("speed", "True", Flag(), "time the gradient computation against the textbook version (and PyTorch)", (G,)),
    P("notes", '"../notes.md"', Text(), "your own words for the report: a Markdown file of ## sections (make notes)",
      (G, T, L, S)),
    # 05_compare reads finished runs; it takes only these
    P("runs", "[]", Any("list of run folders"), 'run folders to compare, e.g. ["../reports/classic-seed-1", ...]',
      (COMPARE,)),
    P("out_dir", '"../reports/batch-classic"', Text(), "where comparison.pdf and its figure go", (COMPARE,)),
    P("labels", "[]", Any("list of texts"), "each run's group (its grid point or preset); [] groups by preset",
      (COMPARE,)),
    P("grid", "[]", Any("list of [parameter, [values]]"),
      "the study's axes, [[parameter, [values]], ...]; [] for none", (COMPARE,)),
    P("errors", "{}", Any("{run folder: error}"), "{run folder: error} of runs refused before they made a folder",
      (COMPARE,)),
]
del P, G, T, L, S
BY_NAME = {p.name: p for p in PARAMETERS}


def of_notebook(notebook: str) -> list:
    """The parameters a notebook's cell declares: every run parameter in each notebook of a run
    (so that the first one, run by hand, checks them all before any work), 05_compare's own."""
    if notebook == COMPARE:
        return [p for p in PARAMETERS if COMPARE in p.used_by]
    return [p for p in PARAMETERS if COMPARE not in p.used_by]


def read_by(notebook: str) -> list:
    """The parameters a notebook's code reads (used_by), those of notebook.start included."""
    return [p for p in PARAMETERS if notebook in p.used_by or START in p.used_by]


def defaults(notebook: str = TRAIN) -> dict:
    return {p.name: p.value for p in of_notebook(notebook)}


def make_variables() -> list:
    """(make variable, parameter) for the parameters make sets directly, in the list's order."""
    return [(p.make, p) for p in PARAMETERS if p.make]


def recorded(values: dict) -> dict:
    """The settings of the training, as run.json and the model file keep them."""
    return {p.name: values[p.name] for p in PARAMETERS if p.record}


GROWS_ON_RESUME = "n_updates"    # the one setting of the training that a resumed run may change
RENDER_ONLY = ("notes",)         # what only the report shows: the training's fingerprint leaves it out


# ----------------------------------------------------------------------------- checking values

def literal(text: str):
    """A value as typed on make's command line: a number, bool or list when it parses as one,
    else the text itself (papermill's CLI reads values the same way)."""
    try:
        value = ast.literal_eval(text)
        if isinstance(value, (int, float, bool, list)):
            return value
    except (ValueError, SyntaxError):
        pass
    return text


def check_names(names) -> None:
    known = {p.name for p in PARAMETERS if COMPARE not in p.used_by}
    unknown = sorted(set(names) - known)
    if unknown:
        fail(f"unknown parameter {', '.join(unknown)}; the notebooks take: {', '.join(sorted(known))}")


def check(values: dict) -> dict:
    """values with each parameter of the spec that it holds checked and converted (a bad one
    raises RNNError in one line naming it and what it may be), and the rules between them:
    a preset that is applied, best_by="val" with a held-out text, no prime text for tweets.
    The rules that need the text (its length, its characters) are notebook.check_text's."""
    out = dict(values)
    for name, value in values.items():
        if name in BY_NAME:
            out[name] = BY_NAME[name].kind(name, value)
    if out.get("best_by") == "val" and out.get("val_fraction", 0) == 0:
        fail('best_by="val" needs a validation text: set val_fraction > 0 (e.g. 0.1)')
    if out.get("prime_text") and out.get("corpus_format") == "tweets":
        fail("prime_text is for books: with tweets each one starts from an end-of-tweet character; "
             "leave prime_text empty")
    if "preset" in out:
        check_preset_applied(out)
    return out


# ----------------------------------------------------------------------------- presets

RECIPE_ONLY = {"preset", "data_path"}     # a preset's values that are not its recipe


def presets() -> list:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def unknown_preset(name) -> str:
    return f"unknown preset {name!r}; choose one of: {', '.join(presets())} (files in params/)"


def preset_values(name: str) -> dict:
    """The values params/<name>.yaml sets (papermill's parameter-file format)."""
    import yaml
    Preset()("preset", name)
    values = yaml.safe_load((PRESETS / f"{name}.yaml").read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        fail(f"params/{name}.yaml must map parameter names to values")
    return values


def preset_changes(values: dict) -> dict:
    """{name: (value here, the preset's value)} for the preset's values that this run changes."""
    recipe = preset_values(values["preset"])
    return {k: (values[k], v) for k, v in recipe.items() if k not in RECIPE_ONLY and k in values and values[k] != v}


def check_preset_applied(values: dict) -> None:
    """A run labelled with a preset trains that preset's recipe: a value that still has the
    notebooks' default where the preset sets another was not applied (in Jupyter, setting preset
    = "adam2025" changes only the label) and is refused. Values changed on purpose are kept: any
    that differs from the default, and any named in overrides."""
    default, overrides = defaults(), set(values.get("overrides", []))
    missed = {k: pair for k, pair in preset_changes(values).items()
              if k not in overrides and pair[0] == default.get(k)}
    if missed:
        name = values["preset"]
        want = ", ".join(f"{k}={v!r}" for k, (_, v) in missed.items())
        have = ", ".join(f"{k}={h!r}" for k, (h, _) in missed.items())
        fail(f"preset {name!r} sets {want} but this run has {have}: apply it (make report PRESET={name}, "
             f"or papermill -f ../params/{name}.yaml), or set those values in the parameters cell "
             f"(list any you keep on purpose in overrides)")
