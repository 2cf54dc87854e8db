"""What a run is: the make variables the user typed, the run's name and folder, its notebook
parameters (the notebooks' defaults, the preset's, the user's), and its fingerprint (the
parameters, the text and the code it runs), kept in the folder's plan.json. Shared by the
planner (one run) and the study (many).

Standard library only: `make help` and `make clean` use it before .venv exists.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from workbook import params
from workbook.artefacts import ARTEFACTS, written_by

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MARK = "dd2424-workbook"       # plan.json's "kind" starts with it: how clean knows our folders
MAX_NAME = 180                 # longer run names are cut, and end in a hash of the whole
TRUE = ("1", "yes", "true", "True")
# Folders of the system, never a REPORTS: nothing of the workbook's goes there, and clean never looks.
SYSTEM = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot", "/dev", "/proc", "/sys", "/run",
          "/var", "/opt", "/srv", "/snap", "/System", "/Library", "/Applications")
HOMES = ("/home", "/Users", "/mnt", "/media")          # themselves: a folder in them is someone's

COMPARISON_FILES = ("plan.json", "05_compare.ipynb", "comparison.ipynb", "comparison.html", "comparison.pdf",
                    "comparison.log", "grid.pdf")


def made_by_workbook(name: str) -> bool:
    """Whether a file of this name in a folder of ours is one the workbook writes (a temporary
    one of an atomic write too)."""
    return name in ARTEFACTS or name in COMPARISON_FILES or bool(re.fullmatch(r"\..+\.tmp", name))


class PlanError(Exception):
    """A problem the user can fix, said in one line."""


# ----------------------------------------------------------------------------- the user's values

@dataclass(frozen=True)
class Variable:
    """A make variable: the notebook parameter it sets (None: the planner's own), its default
    as make would take it, and its help."""
    name: str
    param: str | None
    default: str
    help: str


def make_default(p: params.Param) -> str:
    """A parameter's default as make would take it: a path of the cells (relative to notebooks/)
    relative to the project, where make runs."""
    value = p.value
    return value[3:] if isinstance(value, str) and value.startswith("../") else str(value)


# the variables of notebook parameters come from the parameter spec, then the planner's own
VARIABLES = [Variable(var, p.name, make_default(p), p.help) for var, p in params.make_variables()] + [
    Variable("P", None, "", 'any other notebook parameters, e.g. P="batch_size=32 val_fraction=0"'),
    Variable("RESUME", None, "", "RESUME=1 continues the run from its furthest checkpoint (up to N_UPDATES)"),
    Variable("CODE", None, "", "CODE=1 keeps the code cells in the PDF; CODE=all also prints the package's modules"),
    Variable("TORCH", None, "", "TORCH=1 installs PyTorch first (make torch): the autograd check and its speed"),
    Variable("AUTHOR", None, "DD2424 workbook", "name on the title page"),
    Variable("NOTES", None, "notes.md", "your own words for the report, a Markdown file (used when it exists; make notes "
                                        "writes a starter)"),
    Variable("SEEDS", None, "1 2 3 4", "seeds of make batch / make compare / make study"),
    Variable("PRESETS", None, "classic adam2025", "presets of make compare"),
    Variable("JOBS", None, "2", "runs at a time in make study / batch / compare (local Dask workers)"),
    Variable("REPORTS", None, "reports", "where run folders go (inside the project)"),
    Variable("REPORTS_OUTSIDE", None, "", "REPORTS_OUTSIDE=1 allows a REPORTS folder outside the project"),
    Variable("RUN", None, "", "run folder name (default: made from the parameters)"),
    Variable("MAX_RUNS", None, "200", "make study/batch/compare: the most runs one study makes (GRID x SEEDS)"),
    Variable("GRID", None, "",
             'make study: parameter values to cross, e.g. GRID="chunk_order=sequential,shuffled batch_size=1,32"'),
    Variable("LAB_ARGS", None, "", 'make lab: options for jupyter lab, e.g. LAB_ARGS="--port 8900 --no-browser"'),
    Variable("SCHEDULER", None, "", "make study/batch/compare: a running Dask scheduler, e.g. tcp://host:8786 "
                                    "(default: a local cluster of JOBS workers)"),
]


def given(name: str, env=None) -> str | None:
    """The value of make variable `name` as the user typed it; None when not given (or empty,
    which means "the default" for every variable but REPORTS)."""
    value = (os.environ if env is None else env).get(name)
    return value if value else None


def value_of(name: str, env=None) -> str:
    default = next(v.default for v in VARIABLES if v.name == name)
    return given(name, env) or default


def p_pairs(text: str | None) -> list:
    """P="name=value name=value" as [(name, value)]; one line for what is not name=value."""
    pairs = []
    for word in (text or "").split():
        name, eq, value = word.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise PlanError(f'P takes notebook parameters as name=value separated by spaces, got {word!r}; '
                            f'e.g. P="batch_size=32 val_fraction=0"')
        pairs.append((name, value))
    return pairs


def safe(text: str) -> str:
    """A piece of a folder name: characters outside [A-Za-z0-9_.+-] become _."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)


def reports_folder(env=None) -> Path:
    """REPORTS, checked: never empty, never /, the home or the project itself, and inside the
    project unless REPORTS_OUTSIDE=1."""
    env = os.environ if env is None else env
    raw = env.get("REPORTS")
    if raw is None:
        raw = "reports"
    if not raw.strip():
        raise PlanError("REPORTS is empty; give the folder for run folders (the default is reports)")
    path = Path(raw).expanduser().resolve()
    home = Path.home().resolve()
    if path == Path(path.anchor) or path in (home, ROOT) or path in ROOT.parents or str(path) in HOMES:
        raise PlanError(f"REPORTS={raw} would put run folders in {path} itself; give a folder of their own "
                        f"(the default is reports)")
    if not path.is_relative_to(ROOT) and given("REPORTS_OUTSIDE", env) not in TRUE:
        raise PlanError(f"REPORTS={raw} is outside the project; set REPORTS_OUTSIDE=1 to use it anyway")
    temp = (Path(tempfile.gettempdir()).resolve(), Path("/tmp"), Path("/var/tmp"))
    if any(path.is_relative_to(d) for d in SYSTEM) and not any(path.is_relative_to(t) for t in temp):
        raise PlanError(f"REPORTS={raw} is a system folder; give a folder of your own for run folders")
    return path


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def say(*lines, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    if getattr(stream, "mid_line", False):
        stream.write("\n")
    for line in lines:
        print(line, file=stream, flush=True)


# ----------------------------------------------------------------------------- one run

@dataclass
class Run:
    """One run as the user asked for it: its name, folder and notebook parameters."""
    name: str
    reports: Path
    preset: str
    seed: str
    explicit: list            # [(notebook parameter, value as typed)] beside the preset
    author: str = "DD2424 workbook"
    code: str = ""            # "" (no code cells), "cells", "all" (cells and the package's modules printed)
    notes: Path | None = None  # the student's notes for the report, when there are any
    pdf: bool = True
    resume: bool = False
    command: str = ""         # the make command that continues it (RESUME=1), for messages
    variables: dict = field(default_factory=dict)   # the make variables as the user typed them
    params: dict = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.reports / self.name

    def sibling(self, suffix: str, hidden: bool = False) -> Path:
        return self.reports / (f".{self.name}{suffix}" if hidden else f"{self.name}{suffix}")


def corpus_part(env=None) -> str:
    """-<corpus> for a DATA other than the default text: its file name without extension."""
    data = given("DATA", env)
    corpus = safe(Path(data).stem) if data else ""
    return f"-{corpus}" if corpus and corpus != "shakespeare" else ""


def values_part(env=None) -> str:
    """-m50-eta0.05-... : the values given beside the preset and the seed."""
    parts = [p.name_part + safe(given(var, env)) for var, p in params.make_variables()
             if p.name_part is not None and given(var, env)]
    if given("P", env):
        parts.append(safe("-".join(given("P", env).split()).replace("=", "").replace("[", "")
                          .replace("]", "").replace(",", "_")))
    return "".join("-" + p for p in parts)


def shorten(name: str) -> str:
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def run_name(preset: str, seed: str, env=None) -> str:
    """The folder name made from the parameters, as <preset>[-<corpus>]-seed-<seed>[-<values>]."""
    return shorten(f"{safe(preset)}{corpus_part(env)}-seed-{safe(seed)}{values_part(env)}")


def study_name(verb: str, presets: list, seeds: list, axes: list, env=None) -> str:
    """A study's folder, named by all that makes it: its presets, corpus and values (as a run's
    name), the grid's values and the seeds; two different studies never share one."""
    stem = {"batch": f"batch-{presets[0]}", "compare": "compare-" + "-".join(presets), "study": f"study-{presets[0]}"}
    grid = "".join(f"-{name}{'_'.join(values)}" for name, values in axes)
    return shorten(safe(stem[verb] + corpus_part(env) + values_part(env) + grid + "-seeds" + "_".join(seeds)))


def check_run_name(name: str) -> str:
    if (not name or "/" in name or name.startswith((".", "~")) or not name.isprintable()
            or re.search(r"\.failed", name) or len(name.encode()) > 200):
        raise PlanError(f"RUN={name!r} is not a run folder name: give one name of printable characters without /, "
                        f"that does not start with . or ~ or hold .failed, e.g. RUN=long")
    return name


def code_mode(env=None) -> str:
    code = value_of("CODE", env)
    return "all" if code == "all" else "cells" if code in TRUE else ""


def make_command(verb: str, env=None, **extra) -> str:
    """`make <verb> VAR=value ...` with the variables the user gave, quoted for a shell."""
    env = os.environ if env is None else env
    words = ["make", verb]
    for v in VARIABLES:
        value = extra.get(v.name, env.get(v.name))
        if value and (v.name in extra or v.name != "RESUME"):     # RESUME only when asked for in extra
            words.append(shlex.quote(f"{v.name}={value}"))
    return " ".join(words)


NOT_RECIPE = ("preset", "seed", "n_updates", "resume", "run_dir", "overrides", *params.RENDER_ONLY)


def recipe_variables(values: dict, env: dict) -> dict:
    """The make variables that name a run by what it is: its preset and seed, the values where it
    differs from the preset (make's variables, else P), and REPORTS when given; never its
    folder's name, since RESUME finds a checkpoint by what it is. The same run gives the same
    variables however it was typed (plan.json keeps them for the command that continues it)."""
    base = {k: v for nb in params.RUN_NOTEBOOKS for k, v in params.defaults(nb).items()}
    base.update(params.preset_values(values["preset"]))
    base["data_path"] = [str((NOTEBOOKS / d).resolve()) for d in data_paths(base)]
    variable = {v.param: v.name for v in VARIABLES if v.param}
    out, others = {"PRESET": values["preset"], "SEED": str(values["seed"])}, []
    for k, v in values.items():
        if k in NOT_RECIPE or (data_paths(values) == base["data_path"] if k == "data_path" else v == base.get(k)):
            continue
        if k == "data_path":
            v = " ".join(os.path.relpath(d, ROOT) if Path(d).is_relative_to(ROOT) else d for d in data_paths(values))
        text = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        if k in variable:
            out[variable[k]] = text
        else:
            others.append(f"{k}={text}")
    if others:
        out["P"] = " ".join(others)
    out.update({k: env[k] for k in ("REPORTS", "REPORTS_OUTSIDE") if env.get(k)})
    return out


PLANNERS = {"run_dir": "RUN=name names the run's folder", "resume": "RESUME=1 continues a run",
            "notes": "NOTES=file adds your notes to the report"}


def plan_run(preset: str, seed: str, *, env=None, pdf: bool = True, name: str | None = None) -> Run:
    env = os.environ if env is None else env
    if preset not in params.presets():
        raise PlanError(params.unknown_preset(preset))
    author = value_of("AUTHOR", env)
    if not author.isprintable():
        raise PlanError(f"AUTHOR={author!r} is not one line of text; give the name(s) on one line, e.g. "
                        f'AUTHOR="Ada Lovelace, Alan Turing"')
    explicit = [(v.param, given(v.name, env)) for v in VARIABLES
                if v.param not in (None, "seed", "preset") and given(v.name, env)]
    explicit += p_pairs(given("P", env))
    names = [n for n, _ in explicit]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PlanError(f"{', '.join(twice)} given twice (a variable and P, or twice in P); give each once")
    for n in set(names) & set(PLANNERS):
        raise PlanError(f"{n} is the planner's to set, not P's: {PLANNERS[n]}")
    reports = reports_folder(env)
    name = check_run_name(name or given("RUN", env) or run_name(preset, seed, env))
    notes = Path(value_of("NOTES", env)).expanduser()
    if not notes.is_file():
        if given("NOTES", env):
            raise PlanError(f"NOTES={given('NOTES', env)}: no such file; make notes NOTES=... writes a starter there")
        notes = None
    return Run(name=name, reports=reports, preset=preset, seed=seed, explicit=explicit,
               author=author, code=code_mode(env), pdf=pdf, notes=notes and notes.resolve(),
               variables={**{v.name: env[v.name] for v in VARIABLES if env.get(v.name)}, "PRESET": preset,
                          "SEED": seed},
               resume=value_of("RESUME", env) in TRUE,
               command=make_command("report", env, PRESET=preset, SEED=seed, RESUME="1"))


def resolve_params(run: Run) -> dict:
    """The notebook parameters, checked and converted (params.check: 1e5 is 100000 from here
    on): the notebooks' defaults, the preset's, then the explicit ones (as papermill's CLI reads
    them), paths made absolute; `overrides` names the explicit values that differ from the
    preset. run_dir and resume are the planner's to set. The checks that need the text are the
    planner's check_run."""
    from rnn_core import RNNError
    try:
        params.check_names([name for name, _ in run.explicit])
        defaults, preset = params.defaults(), params.preset_values(run.preset)
        for values in (defaults, preset):                # their data_path is written relative to notebooks/
            if isinstance(values.get("data_path"), str):
                values["data_path"] = str((NOTEBOOKS / values["data_path"]).resolve())
        values = {**defaults, **preset, "seed": params.literal(run.seed),
                  **{name: params.literal(value) for name, value in run.explicit}}
        values["overrides"] = sorted({name for name, _ in run.explicit} & set(preset) - params.RECIPE_ONLY)
        data = values.get("data_path")
        values["data_path"] = [absolute(p) for p in data] if isinstance(data, list) else absolute(data)
        for name in ("run_dir", "resume"):
            values.pop(name, None)
        values["notes"] = ""            # the notebooks show none: the report's are added as it is rendered
        return params.check(values)
    except RNNError as err:        # a value, a name or a preset that is wrong
        raise PlanError(str(err)) from None


def absolute(path):
    """A data path as the notebooks (which run in notebooks/) must see it: absolute, its links
    kept, so that a dangling one is named as the user gave it."""
    return os.path.abspath(os.path.expanduser(path)) if isinstance(path, str) else path


# ----------------------------------------------------------------------------- fingerprints

def hash_file(h, path: Path) -> None:
    """Feed a file's bytes into h; a path that is not a regular file feeds only what it is (a
    FIFO is never opened: the run names the problem)."""
    try:
        if not path.is_file():
            h.update(f"not a file: {path}".encode())
            return
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as err:
        h.update(f"unreadable: {err}".encode())


def data_paths(values: dict) -> list:
    data = values.get("data_path")
    return data if isinstance(data, list) else [data] if data else []


def data_digests(values: dict) -> list:
    """The sha256 of each text file's bytes."""
    digests = []
    for path in data_paths(values):
        h = hashlib.sha256()
        hash_file(h, Path(path))
        digests.append(h.hexdigest())
    return digests


def modules_used(notebooks) -> list:
    """The package's modules that the notebooks import, directly or through each other: read
    from the code's import statements, so that the list follows the code. Paths relative to the
    project (workbook/x.py), sorted."""
    todo = ["".join(c["source"]) for nb in notebooks
            for c in json.loads((NOTEBOOKS / f"{nb}.ipynb").read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "code"]
    seen = set()
    while todo:
        for node in ast.walk(ast.parse(todo.pop())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                path = ROOT / (name.replace(".", "/") + ".py")
                if name.startswith("workbook.") and name not in seen and path.is_file():
                    seen.add(name)
                    todo.append(path.read_text(encoding="utf-8"))
    return sorted(f"{name.replace('.', '/')}.py" for name in seen)


def source_of(step: str) -> str:
    return "".join("".join(c["source"]) for c in
                   json.loads((NOTEBOOKS / f"{step}.ipynb").read_text(encoding="utf-8"))["cells"])


@functools.lru_cache(maxsize=None)    # which files and steps, read once a process: a study asks for every run
def steps_read(step: str) -> list:
    """The earlier steps whose files a notebook reads: the run's files it names, by their writer."""
    source = source_of(step)
    return sorted({written_by(n) for n in ARTEFACTS if f'"{n}"' in source} & set(params.RUN_NOTEBOOKS) - {step})


@functools.lru_cache(maxsize=None)    # the files' bytes are hashed at each fingerprint, never cached
def code_files(step: str) -> list:
    """What a step's results depend on as code: rnn_core.py, its notebook and the modules it uses."""
    return ["rnn_core.py", f"notebooks/{step}.ipynb"] + modules_used([step])


USES_TORCH = params.GRADIENT_CHECK    # the autograd check and the speed section: where torch's presence counts
READS_PLAN = [s for s in params.RUN_NOTEBOOKS if '"plan.json"' in source_of(s)]   # the command that continues
RENDER_FILES = ["workbook/render.py", "workbook/notes.py", "workbook/show.py", "workbook/templates/workbook.tex.j2",
                "workbook/templates/workbook.html.j2"]   # what only the report depends on (and the student's notes)


def fingerprint(run: Run, digests: list | None = None) -> dict:
    """{"steps": {step: hash of what it reads: its parameters, the text, its code, the steps
    before it whose files it reads (and, for the gradient check, whether torch is installed)};
    "train": the hash of them all, the run's results; "render": that and what only the report
    depends on; "resume": what a checkpoint must share with the run that resumes it
    (resume_key)}: equal hashes mean nothing to redo. digests: the text's, when the run has read
    it (the text it trained on); else the files are read for them."""
    import importlib.util
    digests = data_digests(run.params) if digests is None else digests
    steps = {}
    for step in params.RUN_NOTEBOOKS:          # in order: a step's hash takes those of the steps it reads
        names = {p.name for p in params.read_by(step)} - {"resume", "run_dir", *params.RENDER_ONLY}
        h = hashlib.sha256(json.dumps({k: v for k, v in run.params.items() if k in names}, sort_keys=True,
                                      default=str).encode())
        for digest in digests:
            h.update(digest.encode())
        for name in code_files(step):
            hash_file(h, ROOT / name)
        if step == USES_TORCH:
            h.update(f"torch={importlib.util.find_spec('torch') is not None}".encode())
        if step in READS_PLAN:                 # the run's recipe, for the command that continues it
            h.update(json.dumps(recipe_variables(run.params, run.variables), sort_keys=True).encode())
        for before in steps_read(step):
            h.update(steps[before].encode())
        steps[step] = h.hexdigest()[:16]
    train = hashlib.sha256(json.dumps(steps, sort_keys=True).encode()).hexdigest()[:16]
    r = hashlib.sha256(train.encode())
    r.update(json.dumps({"author": run.author, "code": run.code}).encode())
    for path in [ROOT / name for name in RENDER_FILES] + ([run.notes] if run.notes else []):
        hash_file(r, path)
    return {"steps": steps, "train": train, "render": r.hexdigest()[:16], "resume": resume_key(run.params, digests)}


def stale_steps(plan: dict, fp: dict) -> list:
    """The steps of a complete run whose hash differs from this fingerprint's: those to run again
    (a step that reads a stale one is stale too, its hash taking the other's)."""
    done = plan.get("steps", {}) if plan.get("status") == "complete" else {}
    return [s for s in params.RUN_NOTEBOOKS if done.get(s) != fp["steps"][s]]


def resume_settings(values: dict) -> dict:
    """The settings of the training a checkpoint holds: the recorded ones, but the one that a
    resumed run may raise (params.GROWS_ON_RESUME)."""
    return {k: v for k, v in params.recorded(values).items() if k != params.GROWS_ON_RESUME}


def resume_key(values: dict, digests: list) -> str:
    """Equal for a run and a checkpoint it may resume: the same settings of the training and the
    same text (the code may have changed: the checkpoint says if it cannot be read)."""
    return hashlib.sha256(json.dumps([resume_settings(values), digests], sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]


def trained(plan: dict, fp: dict) -> bool:
    """Whether a run folder's plan.json says it is complete, with this fingerprint's results."""
    return plan.get("status") == "complete" and plan.get("train") == fp["train"]


def same_run(run: Run, fp: dict) -> Path | None:
    """A complete run in REPORTS with this fingerprint's results (the same settings, text and
    code), made under another name; None when there is none."""
    for d in run_folders(run.reports):
        plan = read_plan(d)
        if d != run.folder and plan.get("kind") == f"{MARK} run" and trained(plan, fp):
            return d
    return None


def run_folders(reports: Path) -> list:
    """The folders in REPORTS that may hold a run, sorted: not hidden (a run being built, a
    render), not links."""
    return [d for d in (sorted(reports.iterdir()) if reports.is_dir() else [])
            if not d.name.startswith(".") and d.is_dir() and not d.is_symlink()]


def read_plan(folder: Path) -> dict:
    """A folder's plan.json if the workbook wrote it: its kind, and a fingerprint of the run or
    the study it made; {} for anything else."""
    try:
        plan = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    key = {f"{MARK} run": "train", f"{MARK} comparison": "study"}.get(plan.get("kind")) if isinstance(plan, dict) \
        else None
    return plan if key and re.fullmatch(r"[0-9a-f]{16}", str(plan.get(key))) else {}


def write_plan(folder: Path, plan: dict) -> None:
    tmp = folder / ".plan.json.tmp"
    tmp.write_text(json.dumps(plan, indent=1, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, folder / "plan.json")
