"""The planner: every run that `make` asks for goes through here.

    python -m workbook report | one | batch | compare | study | clean | lab | where | help

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
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workbook import params
from workbook.artefacts import ARTEFACTS, STOP_FILE, written_by
from workbook.runs import (MARK, NOTEBOOKS, ROOT, USES_TORCH, VARIABLES, PlanError, Run, data_paths, fingerprint, given,
                           make_command, made_by_workbook, plan_run, read_plan, recipe_variables, rel, reports_folder,
                           resolve_params, resume_settings, run_folders, same_run, say, stale_steps, study_name,
                           trained, value_of, write_plan)

STARTED = time.time()         # when this planner started: a study's task (make bench reports the overhead)
# make lab's JupyterLab brings rfc3987-syntax, which jsonschema (under nbformat, under papermill) imports
# when present, building an IRI grammar for more than half a second in every run's planner; nbformat's
# notebook schema checks no IRI, so the planner leaves it unloaded.
sys.modules.setdefault("rfc3987_syntax", None)


def checkpoint_updates(folder: Path) -> int:
    """The update a folder's checkpoint.npz holds; -1 when there is none or it is unreadable."""
    path = folder / "checkpoint.npz"
    if not path.is_file():
        return -1
    try:
        from workbook.files import checkpoint_updates as updates
        return updates(path)
    except Exception:  # noqa: BLE001 - damaged: it counts as none
        return -1


# ----------------------------------------------------------------------------- the lock

class RunLock:
    """An exclusive lock on one name of REPORTS (a run, or a study's comparison), held for the
    planner's life: flock on .<name>.lock, released by the kernel when the process dies, so a
    dead holder never leaves a stale lock. The holder removes the file when it lets go; a process
    that locked a file just removed (its inode is no longer the path's) tries again."""

    def __init__(self, reports: Path, name: str, what: Path, wait: float = 0.0):
        self.path, self.what, self.f, self.wait = reports / f".{name}.lock", what, None, wait

    def __enter__(self):
        end = time.time() + self.wait       # a study's task waits for a lost worker's run to let go
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.f = open(self.path, "a+", encoding="utf-8")
            except OSError as err:
                raise PlanError(f"cannot write the run folder's parent {self.path.parent}: {err.strerror}; "
                                f"make it writable or choose another REPORTS") from None
            try:
                fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.f.seek(0)
                holder = self.f.read().strip() or "another process"
                self.f.close()
                if time.time() < end:
                    time.sleep(0.5)
                    continue
                raise PlanError(f"{self.what} is being made by {holder}; wait for it to finish, "
                                f"or stop it, then run this again") from None
            if same_file(self.f, self.path):
                break
            self.f.close()                  # locked a file its holder had just removed: again
        self.f.seek(0)
        self.f.truncate()
        self.f.write(f"process {os.getpid()} (since {time.strftime('%H:%M:%S')})")
        self.f.flush()
        return self

    def __exit__(self, *exc):
        try:
            self.path.unlink()              # still locked: a process waiting on this file sees it go
        except OSError:
            pass
        self.f.close()


def same_file(f, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
    except OSError:
        return False


def lock_held(reports: Path, name: str) -> bool:
    """Whether a planner holds the lock of this name now (a file left by nobody is not held)."""
    path = reports / f".{name}.lock"
    try:
        with open(path, encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


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


class Stop:
    """SIGINT, SIGTERM and SIGHUP stop a run cleanly. The first asks the run's training to stop
    through a file its kernel watches (artefacts.STOP_FILE: a signal sent to a kernel between two
    cells can lose its reply and leave papermill waiting for ever): training stops between two
    updates and writes its checkpoint, the notebook ends, and the planner keeps the attempt
    before the next notebook. A second signal stops at once."""

    def __init__(self):
        self.name, self.file = None, None

    def install(self):
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, self.handle)

    def handle(self, signum, frame):
        if self.name is not None or self.file is None:
            raise KeyboardInterrupt
        self.name = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM",
                     signal.SIGHUP: "SIGHUP (the terminal closed)"}[signum]
        try:
            self.file.write_text(self.name, encoding="utf-8")
        except OSError:
            raise KeyboardInterrupt from None


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


def run_of(folder: str) -> str:
    """The run (or study) a folder of REPORTS belongs to: x for x, x.failed, x.failed-latest,
    x.failed-<settings>, .x.building, .x.old and .x.render."""
    name = re.sub(r"\.(building|old|render)$", "", folder[1:]) if folder.startswith(".") else folder
    return re.sub(r"\.failed(-[\w-]*)?$", "", name)


def attempts(run: Run) -> list:
    """This run's failed attempts: <run>.failed (the furthest of the latest attempt's settings),
    <run>.failed-latest (a later one of those settings that got less far) and
    <run>.failed-<settings> (the furthest of other settings, kept aside)."""
    found = [d for d in run.reports.glob(glob.escape(run.name) + ".failed*") if run_of(d.name) == run.name]
    return sorted(d for d in found if d.is_dir() and not d.is_symlink())


def keep_failed(run: Run, attempt: Path) -> Path:
    """Keep a failed attempt, losing none that got further or that is of other settings: an
    attempt of other settings in <run>.failed or .failed-latest moves aside to
    <run>.failed-<its settings>; then the furthest of this attempt's settings is <run>.failed
    and this attempt, if it got less far, <run>.failed-latest."""
    key = read_plan(attempt).get("resume")
    failed, latest = run.sibling(".failed"), run.sibling(".failed-latest")
    for d in (failed, latest):
        other = read_plan(d).get("resume")
        if d.exists() and other != key:
            keep_further(d, run.sibling(f".failed-{(other or 'unknown')[:8]}"))
    further = [d for d in (failed, latest) if d.exists() and checkpoint_updates(d) > checkpoint_updates(attempt)]
    if further:
        best = max(further, key=checkpoint_updates)
        if best != failed:
            shutil.rmtree(failed, ignore_errors=True)
            best.rename(failed)
        shutil.rmtree(latest, ignore_errors=True)
        attempt.rename(latest)
        return latest
    shutil.rmtree(latest, ignore_errors=True)
    shutil.rmtree(failed, ignore_errors=True)
    attempt.rename(failed)
    return failed


def keep_further(source: Path, target: Path) -> None:
    """Move an attempt to target, unless the one there (of the same settings) got further."""
    if target.exists() and checkpoint_updates(target) >= checkpoint_updates(source):
        shutil.rmtree(source, ignore_errors=True)
        return
    shutil.rmtree(target, ignore_errors=True)
    source.rename(target)


def resumable(run: Run, fp: dict) -> bool:
    """Whether an attempt of exactly this run (same fingerprint) left a checkpoint to go on from."""
    return any(read_plan(d).get("train") == fp["train"] and checkpoint_updates(d) > 0 for d in attempts(run))


def checkpoint_to_resume(run: Run, fp: dict) -> tuple[Path, int]:
    """The furthest checkpoint this run may continue: of its settings and text, at most at its
    n_updates, in the run's folder, a failed attempt, or a run of the same settings under another
    name in REPORTS. None fits: PlanError naming each checkpoint of the run's own folders, why it
    does not fit, and the command that continues it."""
    n, fits, others = run.params["n_updates"], [], []
    own = [run.folder, *attempts(run)]
    alike = [d for d in run_folders(run.reports) if d not in own and read_plan(d).get("resume") == fp["resume"]]
    for d in own + alike:
        k, plan = checkpoint_updates(d), read_plan(d)
        if k < 0:
            continue
        if plan.get("resume") != fp["resume"]:
            there = plan.get("settings") or {}
            diff = [f"{name}={there.get(name)!r} there, {v!r} now" for name, v in resume_settings(run.params).items()
                    if there.get(name) != v] or ["or another text"]
            others.append(f"{rel(d / 'checkpoint.npz')} (update {k:,}) is of other settings ({'; '.join(diff)})"
                          + (f"; this continues it: {plan['continues']}" if plan.get("continues") else ""))
        elif k > n:
            others.append(f"{rel(d / 'checkpoint.npz')} (update {k:,}) is beyond n_updates = {n:,}"
                          + (f"; this continues it: {plan['continues']}" if plan.get("continues") else ""))
        else:
            fits.append((d / "checkpoint.npz", k))
    if not fits:
        raise PlanError("\n  ".join([f"no checkpoint of these settings to resume for {rel(run.folder)}; run once "
                                     f"without RESUME=1 first"] + others))
    return max(fits, key=lambda pk: pk[1])


def copy_file(source: Path, target: Path) -> None:
    """Copy through a temporary name: the target is whole or absent, never half a file."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def check_data(values: dict) -> None:
    """The text must be a regular file: a FIFO, a device or a dangling link is refused here, in
    a second, before it is hashed or read."""
    import rnn_core
    from workbook.textfiles import check_text_file
    for path in data_paths(values):
        try:
            check_text_file(path)
        except (rnn_core.RNNError, TypeError) as err:
            raise PlanError(str(err) if isinstance(err, rnn_core.RNNError) else
                            f"data_path must be a path or a list of paths, got {path!r}") from None


def check_notes(run: Run) -> None:
    """The student's notes name only sections of the report."""
    from workbook import notes, render
    if run.notes:
        try:
            notes.read(run.notes, render.notes_titles())
        except (ValueError, OSError) as err:
            raise PlanError(str(err)) from None


def check_run(run: Run):
    """The text read and checked once for the run before any kernel starts, with the values
    that depend on it; the Corpus is returned, and build_new hands it to the notebooks in
    corpus.npz."""
    import rnn_core
    from workbook.notebook import read_and_check
    try:
        return read_and_check(run.params)
    except rnn_core.RNNError as err:
        raise PlanError(str(err)) from None


def build(run: Run, stop: Stop, quiet: bool = False) -> int:
    """Make one run (see the module's docstring); returns the exit status."""
    study = os.environ.get("DD2424_STUDY") == "1"
    with RunLock(run.reports, run.name, run.folder, wait=600.0 if study else 0.0):
        recover(run)
        try:
            run.params = resolve_params(run)     # every value checked, before the text is hashed or read
            check_data(run.params)
            check_notes(run)
        except PlanError as err:
            raise untouched(run, err) from None
        fp = fingerprint(run)
        plan = read_plan(run.folder)
        complete = trained(plan, fp)
        if study and not complete and resumable(run, fp):   # a study continues what a lost worker began
            run.resume = True
        if complete:                             # RESUME=1 too: nothing is left to train
            if not run.pdf or plan.get("render") == fp["render"] and rendered(run.folder, plan):
                say(f"{rel(run.folder)} is up to date" + ("" if quiet else ": nothing to do"))
                if run.pdf:
                    say_report(run.folder)
                return 0
            return render_again(run, plan, fp)
        stale = stale_steps(plan, fp)            # a complete run: only what changed runs again
        if len(stale) < len(params.RUN_NOTEBOOKS):
            return build_new(run, fp, stop, quiet, base=run.folder, steps=stale)
        found = None if run.resume else same_run(run, fp)
        if found is not None:                    # the same run, made under another name: its results
            return build_new(run, fp, stop, quiet, base=found, steps=[])
        return build_new(run, fp, stop, quiet)


def carried_over(base: Path, steps: list) -> list:
    """The files of a run that a new build of it takes as they are: all but the planner's, the
    report and what the steps that run again write."""
    return [base / name for name in ARTEFACTS if (base / name).is_file()
            and written_by(name) not in (*steps, "the planner", "the report")]


def rendered(folder: Path, plan: dict) -> bool:
    """Whether a run folder holds its report as last rendered: the HTML, and the PDF of the same
    render (plan.json's pdf_render) unless this machine has no TeX to make one."""
    from workbook import render
    pdf = (folder / "report.pdf").is_file() and plan.get("pdf_render") == plan.get("render")
    return (folder / "report.html").is_file() and (pdf or bool(render.tex_missing()))


def say_report(folder: Path) -> None:
    """Where the report is: the PDF, or the HTML and one line on how to add the PDF."""
    from workbook import render
    missing = render.tex_missing()
    if not missing:
        say(f"report: {folder / 'report.pdf'} (and report.html beside it)")
    else:
        earlier = " (report.pdf there is an earlier render's)" if (folder / "report.pdf").is_file() else ""
        say(f"report: {folder / 'report.html'}{earlier}", render.no_pdf(missing))


def untouched(run: Run, err: PlanError) -> PlanError:
    """A refusal before any work, saying so of an earlier run of the same name."""
    if run.folder.exists():
        return PlanError(f"{err}\n  nothing was made; the earlier run in {rel(run.folder)} is untouched")
    return err


def render_again(run: Run, plan: dict, fp: dict) -> int:
    """Only the PDF depends on what changed: render it from the run's notebooks, beside the run
    (.<run>.render), and swap the new report in only when it is whole; a failure changes no file
    of the run and keeps the attempt, with LaTeX's log, in .<run>.render."""
    from workbook import render
    say(f"run {rel(run.folder)}: the results are up to date; rendering the PDF again")
    trial = run.sibling(".render", hidden=True)
    shutil.rmtree(trial, ignore_errors=True)
    try:
        trial.mkdir()
        shutil.copyfile(run.folder / "plan.json", trial / "plan.json")      # marks it as the workbook's
        made = render.render(run.folder, run.code, run.author, out_dir=trial, notes_file=run.notes)
        for name in ("report.ipynb", "report.html") + (("report.pdf",) if made["pdf"] else ()):
            os.replace(trial / name, run.folder / name)
        write_plan(run.folder, {**plan, "render": fp["render"], "author": run.author, "code": run.code,
                                "pdf_render": fp["render"] if made["pdf"] else plan.get("pdf_render")})
    except render.StepFailed as err:
        say(f"error: {err.text(trial)}", f"  the run in {rel(run.folder)} is untouched", err=True)
        return 1
    except OSError as err:
        say(f"error: cannot write the PDF: {err.strerror} ({err.filename}); the run in {rel(run.folder)} is "
            f"untouched", err=True)
        return 1
    shutil.rmtree(trial, ignore_errors=True)
    say_report(run.folder)
    return 0


def build_new(run: Run, fp: dict, stop: Stop, quiet: bool, base: Path | None = None,
              steps: list = params.RUN_NOTEBOOKS) -> int:
    """Make the run in <run>.building and swap it in whole: every step, or with base (a complete
    run: this one, or the same one under another name), base's results and only `steps` again."""
    from workbook import render, textfiles
    from workbook.render import StepFailed
    building = run.sibling(".building", hidden=True)
    try:
        corpus = check_run(run)
    except PlanError as err:
        raise untouched(run, err) from None
    fp = fingerprint(run, list(corpus.sha256))   # names the text as it was read, which the run will use
    read_as = corpus.key                     # to tell if the file changes during the run
    source = checkpoint_to_resume(run, fp) if run.resume else None
    shutil.rmtree(building, ignore_errors=True)
    plan = {"kind": f"{MARK} run", "status": "building", **fp, "name": run.name, "preset": run.preset,
            "seed": run.seed, "explicit": run.explicit, "settings": resume_settings(run.params),
            "author": run.author, "code": run.code, "variables": run.variables,
            "continues": run.command, "recipe": recipe_variables(run.params, run.variables),
            "notes": str(run.notes or ""),
            "pdf": run.pdf, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "planner_started": STARTED,
            "command": make_command("report", run.variables)}
    try:
        building.mkdir(parents=True)
        write_plan(building, plan)
        for path in carried_over(base, steps) if base is not None else []:
            copy_file(path, building / path.name)
        if source is not None:
            copy_file(source[0], building / "checkpoint.npz")
        textfiles.save_corpus(corpus, building, pin=True)  # every notebook reads the text from here
        textfiles.forget_corpus()                          # its memory goes before the notebooks start
        del corpus
    except OSError as err:
        shutil.rmtree(building, ignore_errors=True)
        raise PlanError(f"cannot write the run folder {rel(building)}: {err.strerror}; "
                        f"{'free some space' if err.errno == 28 else 'make it writable'} or choose another "
                        f"REPORTS; nothing was changed") from None
    if source is not None:
        say(f"resuming from {rel(source[0])} (update {source[1]:,})")
    if base is not None and base != run.folder:
        say(f"run {rel(run.folder)}: the same run as {rel(base)} (settings, text and code): its results, not trained "
            f"again")
    elif base is not None:
        say(f"run {rel(run.folder)}: again only {', '.join(steps) or 'the report'}; the rest is up to date")
    else:
        say(f"run {rel(run.folder)}")
    values = {**run.params, "run_dir": str(building), "resume": bool(run.resume)}
    start = time.perf_counter()
    failure = notebook = log = None
    stop.file = run.sibling(".stop", hidden=True)    # the kernels' training watches it
    stop.file.unlink(missing_ok=True)
    os.environ[STOP_FILE] = str(stop.file)
    try:
        with render.one_kernel() as km:          # the gradient check has its own: PyTorch stays out of the rest
            for step in steps:
                render.execute(step, building, values, quiet, None if step == USES_TORCH else km)
                if stop.name:
                    raise Interrupted
        made = render.render(building, run.code, run.author, notes_file=run.notes) if run.pdf else {"pdf": None}
        write_plan(building, {**plan, "status": "complete", "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "pdf_render": fp["render"] if made["pdf"] else None})
    except StepFailed as err:
        failure, notebook, log = err.message, err.notebook, err.log
    except (Interrupted, KeyboardInterrupt):
        failure = f"interrupted by {stop.name or 'Ctrl-C'}"
    except OSError as err:
        failure = (f"cannot write {err.filename or 'the run folder'}: {err.strerror}"
                   + ("; free some space and run again" if err.errno == 28 else ""))
    finally:
        stop.file.unlink(missing_ok=True)
    if failure is None:
        swap(run, building)
        note_failed_further(run)
        if textfiles.changed_on_disk(read_as):
            say(f"note: {', '.join(data_paths(run.params))} changed during the run, which went on with the text "
                f"as it was when it started; make again to train on the new text")
        took = f"done in {time.perf_counter() - start:.0f} s"
        say(f"{took}: {rel(run.folder)}")
        if run.pdf:
            say_report(run.folder)
        return 0
    return report_failure(run, building, failure, notebook, log)


def swap(run: Run, building: Path) -> None:
    """The complete new run takes the old one's place; the old one is deleted only then."""
    old = run.sibling(".old", hidden=True)
    if run.folder.exists():
        run.folder.rename(old)
    building.rename(run.folder)
    shutil.rmtree(old, ignore_errors=True)


def note_failed_further(run: Run) -> None:
    """After a success, a failed attempt of the run's settings is deleted unless it got further
    than the run; one of other settings is kept, and named."""
    done, key = checkpoint_updates(run.folder), read_plan(run.folder).get("resume")
    for d in attempts(run):
        k, plan = checkpoint_updates(d), read_plan(d)
        if plan.get("resume") != key:
            say(f"  {rel(d)} is kept: an attempt of other settings (update {k:,}); "
                + (f"this continues it: {plan['continues']}; " if plan.get("continues") and k > 0 else "")
                + "make clean deletes it")
        elif k > done:
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
    """One run of a study, without its PDF (the comparison is the study's report). A run whose
    study was stopped before it started does not start."""
    stop_file = os.environ.get("DD2424_STOP_FILE")
    if stop_file and os.path.exists(stop_file):
        say("error: not started: the study was stopped", err=True)
        return 130
    run = plan_run(value_of("PRESET", env), value_of("SEED", env), env=env, pdf=False)
    stop = Stop()
    stop.install()
    if os.environ.get("DD2424_STUDY") == "1":
        Watchdog()
    return build(run, stop, quiet=True)


def matched_rnn(pts: list) -> list:
    """The study of cell=rnn,lstm gets, for each seed, a vanilla RNN of the LSTM's parameter count:
    its m from the run's m and the text's vocabulary, said here."""
    from workbook import lstm, study as st, textfiles
    from rnn_core import RNNError
    first = plan_run(pts[0].preset, pts[0].seed, env=pts[0].env(dict(os.environ)), pdf=False)
    values = resolve_params(first)
    try:
        K = textfiles.read_corpus(values["data_path"], values["corpus_format"], keep_retweets=values["keep_retweets"],
                                  keep_links=values["keep_links"]).vocab.K
    except RNNError as err:
        raise PlanError(str(err)) from None
    extra = st.matched_points(pts, values["m"], K)
    if extra:
        mm = dict(extra[0].values)["m"]
        say(f"study: with each seed, a vanilla RNN of m = {mm} ({lstm.n_params('rnn', K, int(mm)):,} parameters), "
            f"the LSTM's count at m = {values['m']} ({lstm.n_params('lstm', K, values['m']):,}) on K = {K} characters")
    return extra


def study(verb: str) -> int:
    """make study / batch / compare: every point of GRID (none for batch; the presets for
    compare), for every seed, each an ordinary run made by `python -m workbook one` as a Dask task
    (see study.py); then 05_compare over them all, into a folder named by the study's values and
    seeds and locked while the study runs. A failed run stops none of the others; a run up to
    date is not submitted."""
    import hashlib
    import rnn_core
    from workbook import compare, study as st
    presets = value_of("PRESETS").split() if verb == "compare" else [value_of("PRESET")]
    seeds = value_of("SEEDS").split()
    axes = st.parse_grid(given("GRID")) if verb == "study" else []
    if verb == "study" and not axes:
        raise PlanError('make study needs GRID, e.g. GRID="chunk_order=sequential,shuffled batch_size=1,32"')
    try:
        params.check_names([name for name, _ in axes])
    except rnn_core.RNNError as err:
        raise PlanError(f"GRID: {err}") from None
    try:
        jobs, most = max(1, int(value_of("JOBS"))), int(value_of("MAX_RUNS"))
    except ValueError:
        raise PlanError(f"JOBS and MAX_RUNS must be whole numbers, got {value_of('JOBS')!r} and "
                        f"{value_of('MAX_RUNS')!r}") from None
    if given("RUN"):
        raise PlanError(f"RUN names one run; make {verb} names its runs from the parameters")
    if not presets or not seeds:
        raise PlanError("give at least one preset and one seed (PRESETS, SEEDS)")
    pts = st.points(presets, seeds, axes)
    if compare.cells_compared(axes):
        pts += matched_rnn(pts)
    if len(pts) > most:
        raise PlanError(f"GRID x SEEDS makes {len(pts)} runs, more than MAX_RUNS={most}; make a smaller study, "
                        f"or set MAX_RUNS={len(pts)} to make them all")
    runs = [plan_run(p.preset, p.seed, env=p.env(dict(os.environ)), pdf=False) for p in pts]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise PlanError("two runs of the study would share a folder; give each GRID value once")
    reports = reports_folder()
    out = reports / study_name(verb, presets, seeds, axes)
    with RunLock(reports, out.name, out):
        results = st.run_study(runs, pts, jobs=jobs, scheduler=given("SCHEDULER"))
        if results is None:                          # interrupted: said there
            return 130
        labels = [p.label for p in pts] if axes else [p.preset for p in pts]
        errors = {str(r.folder): res["error"] for r, res in zip(runs, results) if res["code"] and res["error"]}
        code = compare.main(["--out", str(out), "--author", value_of("AUTHOR"),
                             "--labels", json.dumps(labels), "--grid", json.dumps(axes),
                             "--errors", json.dumps(errors),
                             *map(str, (r.folder for r in runs))])
        if code == 0:
            key = hashlib.sha256(json.dumps([out.name, names]).encode()).hexdigest()[:16]
            write_plan(out, {"kind": f"{MARK} comparison", "study": key, "runs": names})
    return code


def clean(env=None) -> int:
    """Delete what the workbook made in REPORTS, nothing else: the folders of runs, attempts and
    studies whose plan.json is its own and that hold only files it writes, each under the lock of
    its run (a run being made is left alone). A folder of ours holding other files is named and
    left. Outside the project, a REPORTS that holds anything the workbook did not make is refused."""
    reports = reports_folder(env)
    if not reports.is_dir():
        say(f"{rel(reports)} holds nothing to clean")
        return 0
    entries = sorted(reports.iterdir())
    folders = {d for d in entries if d.is_dir() and not d.is_symlink() and read_plan(d)}
    ours = {d for d in entries if d in folders or d.is_file() and re.fullmatch(r"\..+\.(lock|stop)", d.name)}
    if not reports.is_relative_to(ROOT) and set(entries) - ours:
        raise PlanError(f"REPORTS={reports} holds what the workbook did not make "
                        f"({', '.join(d.name for d in sorted(set(entries) - ours)[:5])}); make clean deletes only in "
                        f"a folder of its own")
    removed, left = 0, [d for d in entries if d not in ours and d.name not in (".gitkeep", "example-page.png")]
    for name in sorted({run_of(d.name) for d in folders}):
        try:
            with RunLock(reports, name, reports / name):
                for d in sorted(d for d in folders if run_of(d.name) == name):
                    foreign = [f for f in d.rglob("*") if not (f.is_file() and f.parent == d and made_by_workbook(f.name))]
                    if foreign:
                        say(f"  {rel(d)} holds files the workbook did not make, so it is left: "
                            + ", ".join(str(f.relative_to(reports)) for f in foreign[:5]))
                        left.append(d)
                    else:
                        shutil.rmtree(d)
                        removed += 1
        except PlanError:
            say(f"  {name} is being made: left alone")
    for d in entries:                   # what dead planners left: their locks' files, stop requests
        if d in ours and d.is_file() and not lock_held(reports, run_of(d.name[:-5])):
            d.unlink(missing_ok=True)
    say(f"removed {removed} folder{'s' if removed != 1 else ''} from {rel(reports)}"
        + (f"; {len(left)} other entr{'ies' if len(left) != 1 else 'y'} left alone" if left else ""))
    return 0


def write_notes() -> int:
    """make notes: a starter file for the student's own words, with the report's sections; never
    over one that exists."""
    from workbook import notes, render
    path = Path(value_of("NOTES")).expanduser()
    if path.exists():
        raise PlanError(f"{path} exists, and make notes never writes over it; edit it, or give NOTES=another.md")
    try:
        path.write_text(notes.starter(render.notes_titles()), encoding="utf-8")
    except OSError as err:
        raise PlanError(f"cannot write {path}: {err.strerror}") from None
    say(f"wrote {path}: put your own words under its headings; make report adds them to the report"
        + ("" if path.name == "notes.md" and path.parent.resolve() == ROOT else f" (with NOTES={path})"))
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
    os.chdir(NOTEBOOKS)
    os.execv(str(jupyter), args)


def tex() -> int:
    """make setup's TeX step: what the PDF needs, installed with apt-get where this user may (as
    root, or through sudo without a password); else nothing is asked, and make report writes the
    HTML and says in one line how to add the PDF."""
    from workbook import render
    if render.tex_missing(optional=True):
        render.install_tex()
    return 0


def need_tex() -> int:
    """make test's: the tests read PDFs, so what the PDF needs must be there, the emoji font too."""
    from workbook import render
    tex()
    missing = render.tex_missing(optional=True)
    if missing:
        raise PlanError(f"the tests read PDFs, and this machine lacks {', '.join(missing)}; to add them: "
                        f"{render.how_to_add_pdf()}")
    return 0


def where(env=None) -> int:
    run = plan_run(value_of("PRESET", env), value_of("SEED", env), env=env)
    say(f"With these settings the report goes to {rel(run.folder)}/report.pdf (and report.html)")
    return 0


EXAMPLE_PAGE = ROOT / "reports" / "example-page.png"     # the README's picture


def example_page(env=None) -> int:
    """make example-page: the README's picture, the page of this run's report.pdf (make report
    first) where the smooth loss begins, at 80 dots per inch."""
    run = plan_run(value_of("PRESET", env), value_of("SEED", env), env=env)
    pdf = run.folder / "report.pdf"
    if not pdf.is_file():
        raise PlanError(f"{rel(pdf)} is not there; make report first (with the same settings)")
    pages = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True,
                           check=True).stdout.split("\f")
    page = next((i + 1 for i, text in enumerate(pages) if re.search(r"(?m)^\d*\s*Smooth loss$", text)), 1)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", str(page), "-l", str(page), "-singlefile", str(pdf),
                        str(Path(tmp) / "page")], check=True)
        shutil.copyfile(Path(tmp) / "page.png", EXAMPLE_PAGE)
    say(f"{rel(EXAMPLE_PAGE)}: page {page} of {rel(pdf)}")
    return 0


def help_text() -> int:
    say("DD2424 Assignment 4 workbook. Targets:")
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        found = re.match(r"^([a-z-]+):.*## (.*)", line)
        if found:
            say(f"  make {found[1]:<14}{found[2]}")
    say("Variables (make report VAR=value ...), handed to the planner (workbook/planner.py) as data:")
    for v in VARIABLES:
        say(f"  {v.name:<16}" + (f"{v.param}: " if v.param else "") + v.help + (f" [{v.default}]" if v.default else ""))
    try:
        where()
    except PlanError as err:
        say(f"(with these settings: {err})")
    return 0


VERBS = {"report": report, "one": one, "batch": lambda: study("batch"), "compare": lambda: study("compare"),
         "study": lambda: study("study"), "lab": lab, "notes": write_notes,
         "clean": clean, "where": where, "help": help_text, "tex": tex, "need-tex": need_tex,
         "example-page": example_page}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in VERBS:
        say(f"usage: python -m workbook {' | '.join(VERBS)}", err=True)
        return 2
    sys.stdout, sys.stderr = _Tolerant(sys.stdout), _Tolerant(sys.stderr)
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

