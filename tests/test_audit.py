"""The third reliability audit: each reproduction as a test, and a variant of each that the
reproduction does not name. Nothing deleted that the workbook did not make, no resume from the
wrong run, a failed re-render that changes nothing, reading that cannot block, and the smaller
refusals (studies: test_audit_study.py)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbook import files
from test_planner import TINY, errors, make, tree, wait_for

ROOT = Path(__file__).resolve().parents[1]


def planner(*verb, env: dict, timeout=120):
    """python -m workbook <verb> with these variables, as make runs it (without make's own lines)."""
    env = {**os.environ, "REPORTS_OUTSIDE": "1", **env}
    env.pop("MAKEFLAGS", None)
    return subprocess.run([sys.executable, "-m", "workbook", *verb], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_error(proc) -> str:
    lines = errors(proc)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# ----------------------------------------------------------------------------- 1. resume from the right checkpoint

def interrupt_when(proc, ready, what):
    wait_for(ready, 180, what)
    os.killpg(proc.pid, signal.SIGINT)
    return proc.communicate(timeout=180)


@pytest.fixture(scope="module")
def run_of_300(tmp_path_factory):
    """A finished run x of 300 updates, which each test below copies into a REPORTS of its own."""
    r = tmp_path_factory.mktemp("x300") / "r"
    make("report", "RUN=x", "N_UPDATES=300", f"P={TINY}", reports=r)
    return r


def copy_of(reports: Path, tmp_path: Path) -> Path:
    shutil.copytree(reports, tmp_path / "r")
    return tmp_path / "r"


def test_resume_takes_only_a_checkpoint_of_its_own_settings(run_of_300, tmp_path):
    """The audit's case: a finished run x (eta 0.1), then an eta 0.05 attempt stopped at its
    first checkpoint, then the command that attempt printed. It must resume the eta 0.05
    checkpoint, and never take or delete the other one."""
    r = copy_of(run_of_300, tmp_path)
    finished = tree(r / "x")
    longer = ["RUN=x", "ETA=0.05", "N_UPDATES=3000", f"P={TINY} checkpoint_every=500"]
    proc = make("report", *longer, reports=r, start_new_session=True)
    out, err = interrupt_when(proc, lambda: (r / ".x.building" / "checkpoint.npz").exists(), "a checkpoint")
    command = re.search(r"this continues it: (make report .*)", err)[1]
    assert "RESUME=1" in command and "ETA=0.05" in command
    k = files.checkpoint_updates(r / "x.failed" / "checkpoint.npz")
    assert tree(r / "x") == finished
    resumed = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "REPORTS": str(r), "REPORTS_OUTSIDE": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {r / 'x.failed' / 'checkpoint.npz'} (update {k:,})" in resumed.stdout
    info = json.loads((r / "x" / "run.json").read_text())
    assert info["params"]["eta"] == 0.05 and info["resumed_from"] == k and info["updates"] == 3000


def test_resume_without_a_checkpoint_of_its_settings_names_the_others_and_deletes_nothing(run_of_300, tmp_path):
    r = copy_of(run_of_300, tmp_path)
    before = tree(r)
    proc = make("report", "RUN=x", "ETA=0.05", "N_UPDATES=600", f"P={TINY}", "RESUME=1", reports=r, check=False)
    line = one_error(proc)
    assert "no checkpoint of these settings" in line
    assert "x/checkpoint.npz (update 300) is of other settings (eta=0.1 there, 0.05 now)" in proc.stderr
    assert tree(r) == before                        # nothing deleted, nothing made
    command = re.search(r"continues it: (make report .*)", proc.stderr)[1].replace(str(run_of_300), str(r))  # copied
    assert "RESUME=1" in command and "ETA" not in command
    resumed = subprocess.run(command.replace("N_UPDATES=300", "N_UPDATES=400"), shell=True, cwd=ROOT,
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "REPORTS": str(r), "REPORTS_OUTSIDE": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((r / "x" / "run.json").read_text())["resumed_from"] == 300


def test_a_checkpoint_beyond_n_updates_is_not_taken(run_of_300, tmp_path):
    """The audit's second case: a finished run (here at 300 updates), then a shorter attempt
    (200) that failed after training (there: a full disk while rendering; here: Ctrl-C once the
    history is written). Its printed command must continue that attempt, not take the run's
    checkpoint at 300 (beyond n_updates) and delete the attempt."""
    r = copy_of(run_of_300, tmp_path)
    proc = make("report", "RUN=x", "N_UPDATES=200", f"P={TINY}", reports=r, start_new_session=True)
    out, err = interrupt_when(proc, lambda: (r / ".x.building" / "history.csv").exists(), "the history")
    assert proc.returncode != 0
    attempt = next(d for d in (r / "x.failed", r / "x.failed-latest") if d.exists())
    assert files.checkpoint_updates(attempt / "checkpoint.npz") == 200
    command = re.search(r"this continues it: (make report .*)", err)[1]
    resumed = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "REPORTS": str(r), "REPORTS_OUTSIDE": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {attempt / 'checkpoint.npz'} (update 200)" in resumed.stdout
    assert json.loads((r / "x" / "run.json").read_text())["updates"] == 200


# ----------------------------------------------------------------------------- 2, 3. make clean

def test_clean_removes_only_what_the_workbook_made(inside):
    reports = inside
    make("report", "RUN=ours", "N_UPDATES=200", f"P={TINY}", reports=reports)
    for name in ("plan.json", "run.json", "01_gradient_check.ipynb", "02_train.ipynb", "05_compare.ipynb"):
        mine = reports / f"notes-{name.split('.')[0]}"
        mine.mkdir()
        (mine / name).write_text("{}")                   # a file that only has our name
        (mine / "thesis.tex").write_text("mine")
    shutil.copytree(reports / "ours", reports / "annotated")
    (reports / "annotated" / "my-comments.txt").write_text("mine")   # our run, and a file of the user's
    proc = make("clean", reports=reports)
    left = sorted(p.name for p in reports.iterdir())
    assert "ours" not in left
    assert "annotated" in left and (reports / "annotated" / "my-comments.txt").exists()
    assert all(f"notes-{n}" in left for n in ("plan", "run", "01_gradient_check", "02_train", "05_compare"))
    assert "annotated/my-comments.txt" in proc.stdout         # named, and left


@pytest.mark.parametrize("folder, message", [("/etc", "is a system folder"), ("/usr/share", "is a system folder"),
                                             ("/var", "is a system folder"), ("/home", "run folders in /home itself")])
def test_reports_outside_refuses_system_folders(folder, message):
    proc = planner("clean", env={"REPORTS": folder})
    assert proc.returncode != 0 and message in one_error(proc)


def test_clean_outside_the_project_refuses_a_folder_with_files_it_did_not_make(tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    proc = planner("clean", env={"REPORTS": str(tmp_path)})
    assert proc.returncode != 0 and "thesis.tex" in one_error(proc)
    assert (tmp_path / "thesis.tex").exists()


def test_clean_leaves_a_run_that_is_being_made(tmp_path):
    reports = tmp_path / "r"
    proc = make("report", "RUN=c1", "N_UPDATES=3000000", f"P={TINY} checkpoint_every=500", reports=reports,
                start_new_session=True)
    wait_for(lambda: (reports / ".c1.building" / "checkpoint.npz").exists(), 180, "a checkpoint")
    cleaned = make("clean", reports=reports)
    assert "c1 is being made" in cleaned.stdout
    assert (reports / ".c1.building").is_dir() and (reports / ".c1.lock").exists()
    second = make("report", "RUN=c1", "N_UPDATES=200", f"P={TINY}", reports=reports, check=False)
    assert "is being made by process" in one_error(second)
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=180)
    assert (reports / "c1.failed" / "checkpoint.npz").exists()     # the attempt, kept whole


# ----------------------------------------------------------------------------- 6. a failed re-render

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    reports = tmp_path_factory.mktemp("finished")
    make("report", "RUN=f", "N_UPDATES=200", f"P={TINY}", reports=reports)
    return reports


def test_a_failed_render_leaves_every_file_of_the_run_as_it_was(finished, tmp_path):
    """LaTeX fails (an xelatex that exits 1 comes first on PATH): the new author's report is not
    made, and the run's report.ipynb, report.html, report.pdf and every other file stay byte for
    byte, with no log added beside them."""
    before = tree(finished / "f")
    (tmp_path / "xelatex").write_text("#!/bin/sh\necho 'a TeX that fails'\nexit 1\n")
    (tmp_path / "xelatex").chmod(0o755)
    proc = planner("report", env={"REPORTS": str(finished), "RUN": "f", "N_UPDATES": "200", "P": TINY,
                                  "AUTHOR": "Ada Lovelace", "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert proc.returncode != 0 and "could not render the report" in one_error(proc)
    assert tree(finished / "f") == before
    log = re.search(r"see (\S+report\.log)", proc.stderr)[1]
    assert Path(log).is_file() and not Path(log).is_relative_to(finished / "f")


@pytest.mark.parametrize("author", ["Alice\n\nBob", "Alice\nBob", "Alice\x07"])
def test_an_author_of_more_than_one_line_is_refused_before_any_work(finished, author):
    before = tree(finished / "f")
    proc = make("report", "RUN=f", "N_UPDATES=200", f"P={TINY}", f"AUTHOR={author}", reports=finished, check=False)
    assert "AUTHOR" in one_error(proc) and tree(finished / "f") == before


# ----------------------------------------------------------------------------- 7. reading cannot block

@pytest.mark.parametrize("path", ["/proc/kmsg", "/proc/self/environ", "/sys/kernel/notes"])
def test_files_of_the_kernel_are_refused_without_being_read(path, tmp_path):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    t0 = time.time()
    proc = make("report", f"DATA={path}", reports=tmp_path, check=False, timeout=60)
    assert time.time() - t0 < 30 and "is a file of the operating system" in one_error(proc)


# ----------------------------------------------------------------------------- 8. the smaller ones

@pytest.mark.parametrize("args, message", [
    (["P=run_dir=/tmp/x"], "run_dir is the planner's"),
    (["P=resume=True"], "resume is the planner's"),
    (["RUN=a\nb"], "is not a run folder name"),
    (["RUN=a\x07b"], "is not a run folder name"),
    (["RUN=~"], "is not a run folder name"),
    (["PRESET=../.."], "unknown preset '../..'"),
])
def test_the_smaller_refusals_are_one_line(args, message, tmp_path):
    proc = make("report", *args, reports=tmp_path, check=False)
    assert message in one_error(proc)
    assert not [p for p in tmp_path.iterdir()], list(tmp_path.iterdir())    # not even a lock file


def test_a_refused_and_a_finished_run_leave_no_lock_file(tmp_path):
    make("report", "RUN=l", "M=0", reports=tmp_path, check=False)
    make("report", "RUN=l", "N_UPDATES=200", f"P={TINY}", reports=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-16-le"])
def test_a_utf16_text_is_named_with_the_command_that_converts_it(encoding, tmp_path):
    book = tmp_path / "book.txt"
    book.write_bytes(("To be, or not to be\n" * 50).encode(encoding))
    proc = make("report", f"DATA={book}", reports=tmp_path / "r", check=False)
    line = one_error(proc)
    assert "is UTF-16, not UTF-8" in line and "iconv -f utf-16" in line


@pytest.mark.parametrize("grid, message", [
    ("batch_size=1,,2", "GRID takes name=value,value"),
    ("nosuch=1,2", "unknown parameter nosuch"),
    ("m=" + ",".join(map(str, range(1, 101))) + " seq_length=" + ",".join(map(str, range(1, 6))),
     "GRID x SEEDS makes 500 runs, more than MAX_RUNS=200"),
])
def test_a_bad_grid_is_refused_before_any_cluster_starts(grid, message, tmp_path):
    t0 = time.time()
    proc = make("study", f"GRID={grid}", "SEEDS=1", reports=tmp_path, check=False)
    assert message in one_error(proc) and "dashboard" not in proc.stdout and time.time() - t0 < 20


