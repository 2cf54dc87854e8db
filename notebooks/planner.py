"""The planner: every run that `make` asks for goes through here.

    python notebooks/planner.py report | batch | compare | clean | where | help

The Makefile hands the user's values over as environment variables (PRESET, DATA, SEED, M,
..., P, RUN, REPORTS): they are data here, never shell code nor make syntax. A run is its
parameters plus the content of its text and of the code it ran; from them the planner

- names the run's folder (readable, always inside REPORTS) and keeps the fingerprint in
  plan.json and run.json;
- decides what is up to date: nothing to do, only the PDF to render again (the author or
  CODE changed), or the notebooks to run;
- for a run to make, checks every value and reads the text once, before any notebook starts,
  and hands the text to the notebooks in the run folder (corpus.npz);
- builds a new run in .<run>.building beside the old one and swaps it in only when it is
  complete; on any failure (an error, a signal, a dead kernel, a full disk) the old run stays
  where it was and the attempt is kept as <run>.failed, with its checkpoint; a failed attempt
  never replaces one that got further;
- holds a lock per run folder, so that two makes never build into the same one.

It imports only the standard library until it runs notebooks, so that `make help` and
`make clean` work before the .venv exists.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

STARTED = time.time()         # when this planner started: a study's task (make bench reports the overhead)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MARK = "dd2424-workbook"       # plan.json's "kind" starts with it: how clean knows our folders

# The make variables: (name, notebook parameter it sets or None, default, help). The run's
# name takes the values in NAMED, in this order, as <prefix><value>.
VARIABLES = [
    ("PRESET", None, "classic", "recipe from params/: classic, adam2025, sigma0.1, tweets"),
    ("DATA", "data_path", "", "text to learn (UTF-8); e.g. DATA=data/goblet_book.txt"),
    ("SEED", "seed", "1", "seed of every random draw"),
    ("M", "m", "", "hidden units (100)"),
    ("ETA", "eta", "", "learning rate (0.1)"),
    ("SEQ_LENGTH", "seq_length", "", "characters per chunk (25)"),
    ("SIGMA", "sigma", "", "std of the initial weights (0.01)"),
    ("INIT", "init", "", "normal or xavier (normal)"),
    ("OPTIMIZER", "optimizer", "", "adagrad, rmsprop or adam (adagrad)"),
    ("N_UPDATES", "n_updates", "", "training updates (100000)"),
    ("SAMPLE_EVERY", "sample_every", "", "updates between text samples (10000)"),
    ("P", None, "", 'any other notebook parameters, e.g. P="batch_size=32 val_fraction=0"'),
    ("RESUME", None, "", "RESUME=1 continues the run from its furthest checkpoint (up to N_UPDATES)"),
    ("CODE", None, "", "CODE=1 keeps the code cells in the PDF"),
    ("TORCH", None, "", "TORCH=1 installs PyTorch first (make torch): the autograd check and its speed"),
    ("AUTHOR", None, "DD2424 workbook", "name on the title page"),
    ("SEEDS", None, "1 2 3 4", "seeds of make batch / make compare"),
    ("PRESETS", None, "classic adam2025", "presets of make compare"),
    ("JOBS", None, "2", "runs at a time in make study / batch / compare (local Dask workers)"),
    ("REPORTS", None, "reports", "where run folders go (inside the project)"),
    ("REPORTS_OUTSIDE", None, "", "REPORTS_OUTSIDE=1 allows a REPORTS folder outside the project"),
    ("RUN", None, "", "run folder name (default: made from the parameters)"),
    ("GRID", None, "", 'make study: parameter values to cross, e.g. GRID="chunk_order=sequential,shuffled batch_size=1,32"'),
    ("LAB_ARGS", None, "", 'make lab: options for jupyter lab, e.g. LAB_ARGS="--port 8900 --no-browser"'),
    ("SCHEDULER", None, "", "make study/batch/compare: a running Dask scheduler, e.g. tcp://host:8786 (default: a local cluster of JOBS workers)"),
]
NAMED = [("M", "m"), ("ETA", "eta"), ("SEQ_LENGTH", "T"), ("SIGMA", "sigma"), ("INIT", ""),
         ("OPTIMIZER", ""), ("N_UPDATES", "n")]
MAX_NAME = 180                 # longer run names are cut, and end in a hash of the whole
CODE_FILES = ["rnn_core.py", "notebooks/workbook.py", "notebooks/01_gradient_check.ipynb",
              "notebooks/02_train.ipynb", "notebooks/03_loss_plot.ipynb", "notebooks/04_synthesis.ipynb"]
RENDER_FILES = ["notebooks/run_report.py", "notebooks/pdf/workbook.tex.j2"]
TRUE = ("1", "yes", "true", "True")


class PlanError(Exception):
    """A problem the user can fix, said in one line."""


# ----------------------------------------------------------------------------- the user's values

def given(name: str, env=None) -> str | None:
    """The value of make variable `name` as the user typed it; None when not given (or empty,
    which means "the default" for every variable but REPORTS)."""
    value = (os.environ if env is None else env).get(name)
    return value if value else None


def value_of(name: str, env=None) -> str:
    default = next(d for n, _, d, _ in VARIABLES if n == name)
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
    if path == Path(path.anchor) or path in (home, ROOT) or path in ROOT.parents:
        raise PlanError(f"REPORTS={raw} would put run folders in {path} itself; give a folder of their own "
                        f"(the default is reports)")
    if not path.is_relative_to(ROOT) and given("REPORTS_OUTSIDE", env) not in TRUE:
        raise PlanError(f"REPORTS={raw} is outside the project; set REPORTS_OUTSIDE=1 to use it anyway")
    return path


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
    code: bool = False
    pdf: bool = True
    resume: bool = False
    command: str = ""         # the make command that makes it again (for messages)
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
    parts = [prefix + safe(given(var, env)) for var, prefix in NAMED if given(var, env)]
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


def check_run_name(name: str) -> str:
    if (not name or "/" in name or "\0" in name or name.startswith(".") or name in ("..", ".")
            or re.search(r"\.failed(-latest)?$", name) or len(name.encode()) > 200):
        raise PlanError(f"RUN={name!r} is not a run folder name: give one name without / that does not start "
                        f"with . or end in .failed, e.g. RUN=long")
    return name


def make_command(verb: str, env=None, **extra) -> str:
    """`make <verb> VAR=value ...` with the variables the user gave, quoted for a shell."""
    env = os.environ if env is None else env
    words = ["make", verb]
    for name, *_ in VARIABLES:
        value = extra.get(name, env.get(name))
        if value and (name in extra or name != "RESUME"):     # RESUME only when asked for in extra
            words.append(shlex.quote(f"{name}={value}"))
    return " ".join(words)


def plan_run(preset: str, seed: str, *, env=None, pdf: bool = True, name: str | None = None) -> Run:
    env = os.environ if env is None else env
    explicit = []
    for var, param, _, _ in VARIABLES:
        if param and param != "seed" and given(var, env):
            explicit.append((param, given(var, env)))
    explicit += p_pairs(given("P", env))
    names = [n for n, _ in explicit]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PlanError(f"{', '.join(twice)} given twice (a variable and P, or twice in P); give each once")
    reports = reports_folder(env)
    name = check_run_name(name or given("RUN", env) or run_name(preset, seed, env))
    return Run(name=name, reports=reports, preset=preset, seed=seed, explicit=explicit,
               author=value_of("AUTHOR", env), code=value_of("CODE", env) in TRUE, pdf=pdf,
               resume=value_of("RESUME", env) in TRUE,
               command=make_command("report", env, PRESET=preset, SEED=seed, RESUME="1"))


def resolve_params(run: Run) -> dict:
    """The notebook parameters: the notebooks' defaults, the preset's, then the explicit ones (as
    papermill's CLI reads them), paths made absolute; `overrides` names the explicit values that
    differ from the preset. run_dir and resume are the planner's to set."""
    import run_report
    defaults, preset = run_report.defaults(), run_report.preset_params(run.preset)
    for values in (defaults, preset):                    # their data_path is written relative to notebooks/
        if isinstance(values.get("data_path"), str):
            values["data_path"] = str((HERE / values["data_path"]).resolve())
    params = {**defaults, **preset, "seed": run_report.literal(run.seed),
              **{name: run_report.literal(value) for name, value in run.explicit}}
    params["overrides"] = sorted({name for name, _ in run.explicit} & set(preset) - {"preset", "data_path"})
    data = params.get("data_path")
    params["data_path"] = [_absolute(p) for p in data] if isinstance(data, list) else _absolute(data)
    for name in ("run_dir", "resume"):
        params.pop(name, None)
    return params


def _absolute(path):
    """A data path as the notebooks (which run in notebooks/) must see it: absolute, its links
    kept, so that a dangling one is named as the user gave it."""
    return os.path.abspath(os.path.expanduser(path)) if isinstance(path, str) else path


# ----------------------------------------------------------------------------- fingerprints

def _hash_file(h, path: Path) -> None:
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


def data_paths(params: dict) -> list:
    data = params.get("data_path")
    return data if isinstance(data, list) else [data] if data else []


def data_digests(params: dict) -> list:
    """The sha256 of each text file's bytes."""
    digests = []
    for path in data_paths(params):
        h = hashlib.sha256()
        _hash_file(h, Path(path))
        digests.append(h.hexdigest())
    return digests


def fingerprint(run: Run, digests: list | None = None) -> dict:
    """{"train": hash of the parameters, the text and the code; "render": that and what only
    the PDF depends on}: equal hashes mean nothing to redo. digests: the text's, when the run
    has read it (the text it trained on); else the files are read for them."""
    import importlib.util
    params = {k: v for k, v in run.params.items() if k not in ("resume", "run_dir")}
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for digest in (data_digests(run.params) if digests is None else digests):
        h.update(digest.encode())
    for name in CODE_FILES:
        _hash_file(h, ROOT / name)
    h.update(f"torch={importlib.util.find_spec('torch') is not None}".encode())
    train = h.hexdigest()[:16]
    r = hashlib.sha256(train.encode())
    r.update(json.dumps({"author": run.author, "code": run.code}).encode())
    for name in RENDER_FILES:
        _hash_file(r, ROOT / name)
    return {"train": train, "render": r.hexdigest()[:16]}


def trained(plan: dict, fp: dict) -> bool:
    """Whether a run folder's plan.json says it is complete, with this fingerprint's results."""
    return plan.get("status") == "complete" and plan.get("train") == fp["train"]


def read_plan(folder: Path) -> dict:
    try:
        plan = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
        return plan if isinstance(plan, dict) and str(plan.get("kind", "")).startswith(MARK) else {}
    except (OSError, ValueError, RecursionError):
        return {}


def write_plan(folder: Path, plan: dict) -> None:
    tmp = folder / ".plan.json.tmp"
    tmp.write_text(json.dumps(plan, indent=1, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, folder / "plan.json")


def checkpoint_updates(folder: Path) -> int:
    """The update a folder's checkpoint.npz holds; -1 when there is none or it is unreadable."""
    path = folder / "checkpoint.npz"
    if not path.is_file():
        return -1
    try:
        import rnn_core
        return rnn_core.checkpoint_updates(path)
    except Exception:  # noqa: BLE001 - damaged: it counts as none
        return -1


# ----------------------------------------------------------------------------- the lock

class RunLock:
    """An exclusive lock on one run folder, held for the planner's life (flock: released by the
    kernel when the process dies, so a dead holder never leaves a stale lock)."""

    def __init__(self, run: Run, wait: float = 0.0):
        self.path = run.sibling(".lock", hidden=True)
        self.run, self.f, self.wait = run, None, wait

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(self.path, "a+", encoding="utf-8")
        except OSError as err:
            raise PlanError(f"cannot write the run folder's parent {self.path.parent}: {err.strerror}; "
                            f"make it writable or choose another REPORTS") from None
        end = time.time() + self.wait       # a study's task waits for a lost worker's run to let go
        while True:
            try:
                fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() < end:
                    time.sleep(0.5)
                    continue
                self.f.seek(0)
                holder = self.f.read().strip() or "another process"
                self.f.close()
                raise PlanError(f"{self.run.folder} is being made by {holder}; wait for it to finish, "
                           f"or stop it, then run this again") from None
        self.f.seek(0)
        self.f.truncate()
        self.f.write(f"process {os.getpid()} (since {time.strftime('%H:%M:%S')})")
        self.f.flush()
        return self

    def __exit__(self, *exc):
        try:
            self.f.seek(0)
            self.f.truncate()
        except OSError:
            pass
        self.f.close()        # releases the lock; the empty file stays (removing it would race)


# ----------------------------------------------------------------------------- signals

class _Tolerant:
    """A stream whose writes never fail: after SIGHUP the terminal is gone, and a print must
    not turn a clean stop into a traceback."""

    def __init__(self, stream):
        self._s, self.mid_line = stream, False

    def write(self, text):
        if text:
            self.mid_line = not text.endswith("\n")    # e.g. a progress bar cut off by a dead kernel
        try:
            return self._s.write(text)
        except (OSError, ValueError):
            return len(text)

    def flush(self):
        try:
            self._s.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._s, name)


def _kernel_pids() -> list:
    """The Jupyter kernels this process started (children whose command runs ipykernel)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == me and b"ipykernel" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


class Stop:
    """SIGINT, SIGTERM and SIGHUP stop a run cleanly: the first asks the running kernel to stop
    (training stops between two updates and writes its checkpoint; the notebook finishes), the
    planner then keeps the attempt; a second signal stops at once."""

    def __init__(self):
        self.name = None

    def install(self):
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, self.handle)

    def handle(self, signum, frame):
        first = self.name is None
        self.name = self.name or {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM",
                                  signal.SIGHUP: "SIGHUP (the terminal closed)"}[signum]
        kernels = _kernel_pids() if first else []
        for pid in kernels:                    # its own session: the terminal's signal missed it
            try:
                os.kill(pid, signal.SIGINT)
            except OSError:
                pass
        if not kernels:
            raise KeyboardInterrupt


class Interrupted(Exception):
    pass


class Watchdog:
    """In a study's run (DD2424_STUDY=1): stop as for SIGTERM when the Dask worker that started
    this process dies (it is then adopted by another parent), and as for Ctrl-C when the study's
    stop file appears (the study was interrupted). Either way the run keeps its checkpoint."""

    def __init__(self):
        import threading
        self.parent, self.stop_file = os.getppid(), os.environ.get("DD2424_STOP_FILE")
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        while True:
            time.sleep(0.5)
            if os.getppid() != self.parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            if self.stop_file and os.path.exists(self.stop_file):
                os.kill(os.getpid(), signal.SIGINT)
                return


# ----------------------------------------------------------------------------- building a run

def say(*lines, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    if getattr(stream, "mid_line", False):
        stream.write("\n")
    for line in lines:
        print(line, file=stream, flush=True)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def recover(run: Run) -> None:
    """Under the lock, finish what a planner killed mid-way left: a swap half done is completed
    (or undone), a building folder becomes a failed attempt."""
    old, building = run.sibling(".old", hidden=True), run.sibling(".building", hidden=True)
    if old.exists():
        if run.folder.exists():
            shutil.rmtree(old, ignore_errors=True)           # the swap was done
        elif building.exists() and read_plan(building).get("status") == "complete":
            building.rename(run.folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(run.folder)                            # the swap never happened
    if building.exists():
        keep_failed(run, building)
    legacy = run.sibling(".previous", hidden=True)              # the layout before the planner
    if legacy.exists() and not run.folder.exists():
        legacy.rename(run.folder)


def keep_failed(run: Run, attempt: Path) -> Path:
    """Keep a failed attempt as <run>.failed, unless the one there got further (by its
    checkpoint): then that one stays and this attempt is <run>.failed-latest."""
    failed, latest = run.sibling(".failed"), run.sibling(".failed-latest")
    if failed.exists() and checkpoint_updates(failed) > checkpoint_updates(attempt):
        shutil.rmtree(latest, ignore_errors=True)
        attempt.rename(latest)
        return latest
    shutil.rmtree(latest, ignore_errors=True)
    shutil.rmtree(failed, ignore_errors=True)
    attempt.rename(failed)
    return failed


def resumable(run: Run, fp: dict) -> bool:
    """Whether an attempt of exactly this run (same fingerprint) left a checkpoint to go on from."""
    return any(read_plan(d).get("train") == fp["train"] and checkpoint_updates(d) > 0
               for d in (run.sibling(".failed"), run.sibling(".failed-latest")))


def furthest_checkpoint(run: Run) -> tuple[Path, int] | None:
    """The checkpoint of this run furthest along: in the run, its failed attempt, or the latest."""
    found = [(d / "checkpoint.npz", checkpoint_updates(d))
             for d in (run.folder, run.sibling(".failed"), run.sibling(".failed-latest"))]
    found = [(p, k) for p, k in found if k >= 0]
    return max(found, key=lambda pk: pk[1]) if found else None


def copy_file(source: Path, target: Path) -> None:
    """Copy through a temporary name: the target is whole or absent, never half a file."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def check_data(params: dict) -> None:
    """The text must be a regular file: a FIFO, a device or a dangling link is refused here, in
    a second, before it is hashed or read."""
    import rnn_core
    for path in data_paths(params):
        try:
            rnn_core.check_text_file(path)
        except (rnn_core.RNNError, TypeError) as err:
            raise PlanError(str(err) if isinstance(err, rnn_core.RNNError) else
                            f"data_path must be a path or a list of paths, got {path!r}") from None


def check_run(run: Run):
    """Every parameter, and the text, checked once for the run before any kernel starts: the
    text is read here, and the Corpus returned; build_new hands it to the notebooks in corpus.npz."""
    import workbook
    space = dict(run.params)                 # check_params writes whole numbers back into it
    try:
        workbook.check_params(space)
        return workbook.load_corpus(space["data_path"], space["corpus_format"], space["val_fraction"],
                                    space["keep_retweets"], space["keep_links"])
    except workbook.rc.RNNError as err:
        raise PlanError(str(err)) from None


def build(run: Run, stop: Stop, quiet: bool = False) -> int:
    """Make one run (see the module's docstring); returns the exit status."""
    import run_report
    from run_report import StepFailed
    try:
        run.params = resolve_params(run)
        run_report.check_names(run.params)
    except StepFailed as err:
        raise PlanError(str(err)) from None
    check_data(run.params)
    fp = fingerprint(run)
    study = os.environ.get("DD2424_STUDY") == "1"
    with RunLock(run, wait=600.0 if study else 0.0):
        recover(run)
        plan = read_plan(run.folder)
        complete = trained(plan, fp)
        if study and not complete and resumable(run, fp):   # a study continues what a lost worker began
            run.resume = True
        if complete and not run.resume:
            if not run.pdf or plan.get("render") == fp["render"] and (run.folder / "report.pdf").is_file():
                say(f"{rel(run.folder)} is up to date" + ("" if quiet else ": nothing to do"))
                if run.pdf:
                    say(f"report: {run.folder / 'report.pdf'}")
                return 0
            return render_again(run, plan, fp)
        return build_new(run, fp, stop, quiet)


def render_again(run: Run, plan: dict, fp: dict) -> int:
    """Only the PDF depends on what changed: render it from the run's notebooks."""
    import run_report
    say(f"run {rel(run.folder)}: the results are up to date; rendering the PDF again")
    try:
        pdf = run_report.render(run.folder, run.code, run.author)
    except run_report.StepFailed as err:
        say(f"error: {err.text(run.folder)}", "  the run's results are untouched", err=True)
        return 1
    except OSError as err:
        say(f"error: cannot write the PDF: {err.strerror} ({err.filename}); the run's results are untouched",
            err=True)
        return 1
    write_plan(run.folder, {**plan, "render": fp["render"], "author": run.author, "code": run.code})
    say(f"report: {pdf}")
    return 0


def build_new(run: Run, fp: dict, stop: Stop, quiet: bool) -> int:
    import run_report
    import workbook
    from run_report import StepFailed
    building = run.sibling(".building", hidden=True)
    try:
        corpus = check_run(run)
    except PlanError as err:
        if run.folder.exists():
            raise PlanError(f"{err}\n  nothing was made; the earlier run in {rel(run.folder)} is untouched") from None
        raise
    fp = fingerprint(run, list(corpus.sha256))   # names the text as it was read, which the run will use
    read_as = corpus.key                     # to tell if the file changes during the run
    source = None
    if run.resume:
        source = furthest_checkpoint(run)
        if source is None:
            raise PlanError(f"no checkpoint to resume from in {rel(run.folder)} or {rel(run.sibling('.failed'))}; "
                            f"run once without RESUME=1 first")
    shutil.rmtree(building, ignore_errors=True)
    plan = {"kind": f"{MARK} run", "status": "building", **fp, "name": run.name, "preset": run.preset,
            "seed": run.seed, "explicit": run.explicit, "author": run.author, "code": run.code,
            "pdf": run.pdf, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "planner_started": STARTED,
            "command": run.command}
    try:
        building.mkdir(parents=True)
        write_plan(building, plan)
        if source is not None:
            copy_file(source[0], building / "checkpoint.npz")
        workbook.save_corpus(corpus, building, pin=True)   # every notebook reads the text from here
        workbook.forget_corpus()                           # its memory goes before the notebooks start
        del corpus
    except OSError as err:
        shutil.rmtree(building, ignore_errors=True)
        raise PlanError(f"cannot write the run folder {rel(building)}: {err.strerror}; "
                        f"{'free some space' if err.errno == 28 else 'make it writable'} or choose another "
                        f"REPORTS; nothing was changed") from None
    if source is not None:
        say(f"resuming from {rel(source[0])} (update {source[1]:,})")
    say(f"run {rel(run.folder)}")
    params = {**run.params, "run_dir": str(building), "resume": bool(run.resume)}
    start = time.perf_counter()
    failure = notebook = log = None
    try:
        for step in run_report.STEPS:
            run_report.execute(step, building, params, quiet)
            if stop.name:
                raise Interrupted
        if run.pdf:
            run_report.render(building, run.code, run.author)
        add_fingerprint(building, fp)
        write_plan(building, {**plan, "status": "complete", "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    except StepFailed as err:
        failure, notebook, log = err.message, err.notebook, err.log
    except (Interrupted, KeyboardInterrupt):
        failure = f"interrupted by {stop.name or 'Ctrl-C'}"
    except OSError as err:
        failure = (f"cannot write {err.filename or 'the run folder'}: {err.strerror}"
                   + ("; free some space and run again" if err.errno == 28 else ""))
    if failure is None:
        swap(run, building)
        note_failed_further(run)
        if workbook.changed_on_disk(read_as):
            say(f"note: {', '.join(data_paths(run.params))} changed during the run, which went on with the text "
                f"as it was when it started; make again to train on the new text")
        took = f"done in {time.perf_counter() - start:.0f} s"
        say(f"{took}: {run.folder / 'report.pdf'}" if run.pdf else f"{took}: {rel(run.folder)}")
        if run.pdf:
            say(f"report: {run.folder / 'report.pdf'}")
        return 0
    return report_failure(run, building, failure, notebook, log)


def add_fingerprint(folder: Path, fp: dict) -> None:
    path = folder / "run.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    info["fingerprint"] = fp
    tmp = folder / ".run.json.tmp"
    tmp.write_text(json.dumps(info, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def swap(run: Run, building: Path) -> None:
    """The complete new run takes the old one's place; the old one is deleted only then."""
    old = run.sibling(".old", hidden=True)
    if run.folder.exists():
        run.folder.rename(old)
    building.rename(run.folder)
    shutil.rmtree(old, ignore_errors=True)


def note_failed_further(run: Run) -> None:
    """After a success, a failed attempt is deleted unless it got further than this run."""
    done = checkpoint_updates(run.folder)
    for d in (run.sibling(".failed"), run.sibling(".failed-latest")):
        if d.exists():
            k = checkpoint_updates(d)
            if k > done:
                say(f"  {rel(d)} is kept: its checkpoint is further along (update {k:,}); "
                    f"RESUME=1 continues it, make clean deletes it")
            else:
                shutil.rmtree(d, ignore_errors=True)


def report_failure(run: Run, building: Path, failure: str, notebook, log) -> int:
    try:
        kept = keep_failed(run, building)
    except OSError:
        kept = building
    failure = failure.replace(str(building), str(kept))    # the notebook saw the folder's name while building
    lines = [f"error: {failure}" + (f"; see {kept / log}" if log else "")]
    if notebook:
        lines.append(f"  the executed notebook with the error: {kept / notebook}")
    k = checkpoint_updates(kept)
    if k >= 0:
        lines.append(f"  its checkpoint (update {k:,}) is in {rel(kept)}; this continues it: {run.command}")
    if kept.name.endswith(".failed-latest"):
        lines.append(f"  {rel(run.sibling('.failed'))} keeps an earlier attempt that got further "
                     f"(update {checkpoint_updates(run.sibling('.failed')):,}); RESUME=1 continues that one")
    if run.folder.exists():
        lines.append(f"  the earlier run in {rel(run.folder)} is untouched")
    say(*lines, err=True)
    return 130 if failure.startswith("interrupted") else 1


# ----------------------------------------------------------------------------- verbs

def report(env=None) -> int:
    run = plan_run(value_of("PRESET", env), value_of("SEED", env), env=env)
    stop = Stop()
    stop.install()
    return build(run, stop)


def one(env=None) -> int:
    """One run of a batch, without its PDF (the comparison is the batch's report)."""
    run = plan_run(value_of("PRESET", env), value_of("SEED", env), env=env, pdf=False)
    stop = Stop()
    stop.install()
    if os.environ.get("DD2424_STUDY") == "1":
        Watchdog()
    return build(run, stop, quiet=True)


def study(verb: str) -> int:
    """make study / batch / compare: every point of GRID (none for batch; the presets for
    compare), for every seed, each an ordinary run made by `planner.py one` as a Dask task (see
    study.py); then 05_compare over them all. A failed run stops none of the others; a run up to
    date is not submitted."""
    import study as st
    presets = value_of("PRESETS").split() if verb == "compare" else [value_of("PRESET")]
    seeds = value_of("SEEDS").split()
    axes = st.parse_grid(given("GRID")) if verb == "study" else []
    if verb == "study" and not axes:
        raise PlanError('make study needs GRID, e.g. GRID="chunk_order=sequential,shuffled batch_size=1,32"')
    try:
        jobs = max(1, int(value_of("JOBS")))
    except ValueError:
        raise PlanError(f"JOBS must be a whole number >= 1, got {value_of('JOBS')!r}") from None
    if given("RUN"):
        raise PlanError(f"RUN names one run; make {verb} names its runs from the parameters")
    if not presets or not seeds:
        raise PlanError("give at least one preset and one seed (PRESETS, SEEDS)")
    pts = st.points(presets, seeds, axes)
    runs = [plan_run(p.preset, p.seed, env=p.env(dict(os.environ)), pdf=False) for p in pts]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise PlanError("two runs of the study would share a folder; give each GRID value once")
    reports = reports_folder()
    stem = {"batch": f"batch-{presets[0]}", "compare": "compare-" + "-".join(presets),
            "study": f"study-{presets[0]}-" + "-".join(name for name, _ in axes)}[verb]
    out = reports / shorten(safe(stem) + corpus_part() + values_part())
    results = st.run_study(runs, pts, jobs=jobs, scheduler=given("SCHEDULER"))
    if results is None:                          # interrupted: said there
        return 130
    import run_compare
    labels = [p.label for p in pts] if axes else [p.preset for p in pts]
    errors = {str(r.folder): res["error"] for r, res in zip(runs, results) if res["code"] and res["error"]}
    code = run_compare.main(["--out", str(out), "--author", value_of("AUTHOR"),
                             "--labels", json.dumps(labels), "--grid", json.dumps(axes),
                             "--errors", json.dumps(errors),
                             *map(str, (r.folder for r in runs))])
    if code == 0:
        write_plan(out, {"kind": f"{MARK} comparison", "runs": names})
    return code


def clean(env=None) -> int:
    """Delete the run and comparison folders of REPORTS that this workbook made, nothing else."""
    reports = reports_folder(env)
    if not reports.is_dir():
        say(f"{rel(reports)} holds nothing to clean")
        return 0
    ours = ("plan.json", "run.json", "02_train.ipynb", "01_gradient_check.ipynb", "05_compare.ipynb")
    removed = kept = 0
    for d in sorted(reports.iterdir()):
        if d.is_dir() and not d.is_symlink() and (read_plan(d) or any((d / f).is_file() for f in ours)):
            shutil.rmtree(d)
            removed += 1
        elif d.is_file() and re.fullmatch(r"\..+\.lock", d.name):
            d.unlink()
        elif d.name == ".stamps" and d.is_dir():          # the layout before the planner
            shutil.rmtree(d)
        elif d.name not in (".gitkeep", "example-page.png"):
            kept += 1
    say(f"removed {removed} run folder{'s' if removed != 1 else ''} from {rel(reports)}"
        + (f"; {kept} other entr{'ies' if kept != 1 else 'y'} left alone" if kept else ""))
    return 0


def lab() -> int:
    """make lab: JupyterLab on notebooks/, with --allow-root when run as root (Jupyter refuses
    root otherwise); LAB_ARGS is split as a shell would split it, but never run by one."""
    jupyter = Path(sys.executable).with_name("jupyter")
    try:
        extra = shlex.split(given("LAB_ARGS") or "")
    except ValueError as err:
        raise PlanError(f"LAB_ARGS is not a list of options: {err}") from None
    args = [str(jupyter), "lab", *(["--allow-root"] if os.geteuid() == 0 else []), *extra]
    sys.stdout.flush()
    os.chdir(HERE)
    os.execv(str(jupyter), args)


def where(env=None) -> int:
    run = plan_run(value_of("PRESET", env), value_of("SEED", env), env=env)
    say(f"With these settings the report goes to {rel(run.folder)}/report.pdf")
    return 0


def help_text() -> int:
    say("DD2424 Assignment 4 workbook. Targets:")
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        found = re.match(r"^([a-z-]+):.*## (.*)", line)
        if found:
            say(f"  make {found[1]:<14}{found[2]}")
    say("Variables (make report VAR=value ...), handed to notebooks/planner.py as data:")
    for name, _, default, text in VARIABLES:
        say(f"  {name:<16}{text}" + (f" [{default}]" if default else ""))
    try:
        where()
    except PlanError as err:
        say(f"(with these settings: {err})")
    return 0


VERBS = {"report": report, "one": one, "batch": lambda: study("batch"), "compare": lambda: study("compare"),
         "study": lambda: study("study"), "lab": lab,
         "clean": clean, "where": where, "help": help_text}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in VERBS:
        say(f"usage: planner.py {' | '.join(VERBS)}", err=True)
        return 2
    sys.stdout, sys.stderr = _Tolerant(sys.stdout), _Tolerant(sys.stderr)
    sys.path[:0] = [str(HERE), str(ROOT)]       # run_report, workbook, study; rnn_core
    import logging
    for name in ("traitlets", "papermill", "nbclient"):   # "Kernel died ..." is said once, by us
        logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.pop("MPLBACKEND", None)      # Agg here would drop every inline plot from the notebooks
    try:
        return VERBS[argv[0]]()
    except PlanError as err:
        say(f"error: {err}", err=True)
        return 1
    except KeyboardInterrupt:
        say("error: interrupted", err=True)
        return 130
    except OSError as err:            # a full disk or a folder made read-only under us
        say(f"error: cannot write {err.filename or 'a file'}: {err.strerror}", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
