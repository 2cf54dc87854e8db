"""The planner behind the Makefile: user values as data, run folders that lose nothing, a lock
per run, and the one-line messages. Each test drives `make` as a user would."""
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import rnn_core as rc
from workbook import params, runs

ROOT = Path(__file__).resolve().parents[1]

# a light run (the autograd check and the speed section have tests of their own: here they would only
# import PyTorch and time things)
TINY = ("m=8 check_m=[3] sample_every=100 val_every=100 passage_length=200 temperatures=[1.0] top_ps=[] speed=False "
        "check_torch=False")
INJECTIONS = ["x'; touch {mark}; echo '", 'x"; touch {mark}; echo "', "$(shell touch {mark})", "`touch {mark}`",
              "x; touch {mark}"]


def make(*args, reports: Path, check=True, timeout=600, **popen):
    env = {**os.environ, "REPORTS": str(reports), "REPORTS_OUTSIDE": "1"}
    env.pop("MAKEFLAGS", None)
    if popen:
        return subprocess.Popen(["make", "--no-print-directory", *args], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    proc = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f"make {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def errors(proc) -> list:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def tree(folder: Path) -> dict:
    """Every file under folder with the hash of its bytes: what 'untouched' means."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def pdf_first_page(path: Path) -> str:
    text = subprocess.run(["pdftotext", "-l", "1", "-enc", "UTF-8", str(path), "-"], capture_output=True,
                          text=True, check=True).stdout
    return " ".join(text.split())


def pdf_text_of(path: Path) -> str:
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def wait_for(predicate, timeout=120, what="it"):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


# ----------------------------------------------------------------------------- values are data

@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    """One run whose text's name and author hold quotes, $, spaces, é and LaTeX specials."""
    base = tmp_path_factory.mktemp("odd")
    book = base / "O'Brien $HOME & co_50% #1 ~a ^b {c} \\input{x} é.txt"
    book.write_text(rc.load_text(ROOT / "data" / "shakespeare.txt")[:150_000], encoding="utf-8")
    mark = base / "injected"
    author = "Conan O'Brien $HOME \\input{/etc/hostname} " + INJECTIONS[0].format(mark=mark)
    reports = base / "reports"
    proc = make("report", f"DATA={book}", "N_UPDATES=200", f"P={TINY}", f"AUTHOR={author}", reports=reports)
    run = next(d for d in reports.iterdir() if d.is_dir())
    return base, book, author, mark, reports, run, proc


def test_quotes_and_dollars_in_values_are_text_and_run_nothing(odd):
    base, book, author, mark, reports, run, proc = odd
    assert f"report: {run}/report.pdf" in proc.stdout
    page = pdf_first_page(run / "report.pdf")
    assert author in page and book.name in page            # as typed, on the title page
    assert json.loads((run / "run.json").read_text())["corpus"]["name"] == book.name
    assert run.parent == reports and run.name.startswith("classic-O_Brien_HOME_co_50_1_a_b_c_input_x_-seed-1-n200")
    assert " ".join(pdf_text_of(run / "report.pdf").split()).count(book.name) >= 2   # title, table
    # the strings that ran shell commands before: in every variable, through help, -n and report
    before = tree(reports)
    for template in INJECTIONS:
        value = template.format(mark=mark)
        make("help", f"DATA={value}", f"AUTHOR={value}", f"P=prime_text={value}", reports=reports, check=False)
        make("-n", "report", f"DATA={value}", f"RUN={value}", reports=reports, check=False)
        make("report", f"AUTHOR={value}", f"P=prime_text={value}", "M=0", reports=reports, check=False)
    assert not mark.exists()
    assert {k: v for k, v in tree(reports).items() if not k.startswith("classic-seed-1")} == before


def test_make_n_changes_no_file(odd):
    base, book, author, mark, reports, run, proc = odd
    before = tree(reports), sorted(p.name for p in reports.iterdir())
    make("-n", "report", f"DATA={book}", "N_UPDATES=300", reports=reports)
    make("-n", "clean", reports=reports)
    assert (tree(reports), sorted(p.name for p in reports.iterdir())) == before


def test_only_the_author_changed_renders_again_without_training(odd):
    base, book, author, mark, reports, run, proc = odd
    history = (run / "history.csv").stat().st_mtime_ns
    proc = make("report", f"DATA={book}", "N_UPDATES=200", f"P={TINY}", "AUTHOR=Ada Lovelace", reports=reports)
    assert "rendering the PDF again" in proc.stdout and "01_gradient_check" not in proc.stdout
    assert (run / "history.csv").stat().st_mtime_ns == history
    assert "Ada Lovelace" in pdf_first_page(run / "report.pdf")
    proc = make("report", f"DATA={book}", "N_UPDATES=200", f"P={TINY}", "AUTHOR=Ada Lovelace", reports=reports)
    assert "up to date" in proc.stdout and (run / "history.csv").stat().st_mtime_ns == history


def test_the_default_text_is_part_of_the_fingerprint(tmp_path):
    """No DATA and a preset without data_path: the notebooks' default text is still hashed, so
    editing data/shakespeare.txt makes the default run again."""
    env = {**os.environ, "REPORTS": str(tmp_path), "REPORTS_OUTSIDE": "1"}
    for name in ("DATA", "P", "RUN"):
        env.pop(name, None)
    run = runs.plan_run("classic", "1", env=env)
    run.params = runs.resolve_params(run)
    book = ROOT / "data" / "shakespeare.txt"
    assert run.params["data_path"] == str(book)
    assert runs.data_digests(run.params) == [hashlib.sha256(book.read_bytes()).hexdigest()]
    assert runs.fingerprint(run) == runs.fingerprint(run, runs.data_digests(run.params))
    assert runs.fingerprint(run)["train"] != runs.fingerprint(run, ["0" * 64])["train"]


def test_changed_data_trains_again(odd):
    """A text with spaces and quotes in its path: its content, not its name or date, decides."""
    base, book, author, mark, reports, run, proc = odd
    before = json.loads((run / "plan.json").read_text())
    with open(book, "a", encoding="utf-8") as f:
        f.write("\nA new line at the end of the book.\n")
    proc = make("report", f"DATA={book}", "N_UPDATES=200", f"P={TINY}", "AUTHOR=Ada Lovelace", reports=reports)
    assert "01_gradient_check" in proc.stdout
    info = json.loads((run / "run.json").read_text())
    assert json.loads((run / "plan.json").read_text())["train"] != before["train"]
    assert info["corpus"]["characters"] == 150_000 + len("\nA new line at the end of the book.\n")


# ----------------------------------------------------------------------------- each step, and each run, made once

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    reports = tmp_path_factory.mktemp("steps")
    make("report", "RUN=a", "N_UPDATES=200", f"P={TINY}", reports=reports)
    return reports


def results(folder: Path) -> dict:
    """The bytes of a run's results: every file but the planner's and the report."""
    return {k: v for k, v in tree(folder).items() if k != "plan.json" and not k.startswith("report.")}


def test_the_same_run_under_another_name_is_copied_not_trained(made):
    proc = make("report", "RUN=b", "N_UPDATES=200", f"P={TINY}", reports=made)
    assert f"run {made / 'b'}: the same run as {made / 'a'}" in proc.stdout and "02_train" not in proc.stdout
    assert results(made / "b") == results(made / "a") and (made / "b" / "report.pdf").is_file()


def test_a_change_runs_again_only_the_steps_that_read_it(made):
    """New temperatures: 04_synthesis runs again and the report is rendered; the gradient check,
    the training and the plots are kept, byte for byte."""
    run = made / "a"
    before, steps = tree(run), json.loads((run / "plan.json").read_text())["steps"]
    proc = make("report", "RUN=a", "N_UPDATES=200", f"P={TINY.replace('temperatures=[1.0]', 'temperatures=[0.7]')}",
                reports=made)
    assert f"run {run}: again only 04_synthesis; the rest is up to date" in proc.stdout
    assert "02_train" not in proc.stdout and "01_gradient_check" not in proc.stdout
    after = tree(run)
    kept = [k for k in before if runs.written_by(k) in ("01_gradient_check", "02_train", "03_loss_plot")]
    assert kept and [k for k in kept if after[k] != before[k]] == []
    assert after["04_synthesis.ipynb"] != before["04_synthesis.ipynb"] and after["report.pdf"] != before["report.pdf"]
    now = json.loads((run / "plan.json").read_text())["steps"]
    assert [s for s in steps if steps[s] != now[s]] == ["04_synthesis"]


def test_torch_counts_for_the_gradient_check_and_what_reads_it(monkeypatch, tmp_path):
    """Installing PyTorch changes 01's hash, and 04's (its conclusion quotes 01's table); the
    training's and the plots' stay."""
    import importlib.util
    env = {**os.environ, "REPORTS": str(tmp_path), "REPORTS_OUTSIDE": "1"}
    run = runs.plan_run("classic", "1", env=env)
    run.params = runs.resolve_params(run)
    find_spec = importlib.util.find_spec

    def steps(installed: bool) -> dict:       # torch found or not, whether or not this machine has it
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (object() if installed else None)
                            if name == "torch" else find_spec(name, *a))
        return runs.fingerprint(run, ["0" * 64])["steps"]
    with_torch, without = steps(True), steps(False)
    assert [s for s in with_torch if with_torch[s] != without[s]] == ["01_gradient_check", "04_synthesis"]


def test_the_recipe_names_a_run_by_its_values_however_typed():
    values = {**{k: v for nb in params.RUN_NOTEBOOKS for k, v in params.defaults(nb).items()},
              "data_path": str(ROOT / "data" / "shakespeare.txt"), "m": 8, "temperatures": [0.5, 1.0],
              "chunk_order": "random", "notes": "mine.md", "run_dir": "/x"}
    assert runs.recipe_variables(values, {"RUN": "x", "NOTES": "n.md", "REPORTS": "r"}) == {
        "PRESET": "classic", "SEED": "1", "M": "8", "P": "chunk_order=random temperatures=[0.5,1.0]", "REPORTS": "r"}
    other = {**values, "data_path": "/tmp/a b.txt", "m": 100}
    assert runs.recipe_variables(other, {}) == {"PRESET": "classic", "SEED": "1", "DATA": "/tmp/a b.txt",
                                                "P": "chunk_order=random temperatures=[0.5,1.0]"}


# ----------------------------------------------------------------------------- the text, read once per run

class Opens:
    """How often a file is opened, as Linux's inotify sees it: a witness outside our code. Closes
    are watched too, since inotify merges identical events in a row (open, open) into one."""

    IN_CLOSE_NOWRITE, IN_OPEN = 0x10, 0x20

    def __init__(self, path: Path):
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0 and libc.inotify_add_watch(self.fd, str(path).encode(), self.IN_OPEN | self.IN_CLOSE_NOWRITE) >= 0

    def count(self) -> int:
        """The opens since the last count."""
        import struct
        n = 0
        while True:
            try:
                events = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return n
            at = 0
            while at < len(events):
                _, mask, _, length = struct.unpack_from("iIII", events, at)
                n += bool(mask & self.IN_OPEN)
                at += 16 + length


def papermill(step: str, run_dir: Path, **params):
    import papermill as pm
    pm.execute_notebook(str(ROOT / "notebooks" / f"{step}.ipynb"), str(run_dir / f"{step}.ipynb"),
                        parameters={"run_dir": str(run_dir), **params}, cwd=str(ROOT / "notebooks"),
                        kernel_name="python3", progress_bar=False)


def tiny_params() -> dict:
    return {name: params.literal(value) for name, value in runs.p_pairs(TINY)}


def test_the_text_is_read_once_per_run(tmp_path):
    """make: the planner hashes the text (to decide) and reads it once, for every check and all
    notebooks; up to date, it only hashes it. By hand, the first notebook reads it for the rest."""
    book = tmp_path / "book.txt"
    book.write_text(rc.load_text(ROOT / "data" / "shakespeare.txt")[:150_000], encoding="utf-8")
    digest = hashlib.sha256(book.read_bytes()).hexdigest()
    opens = Opens(book)
    make("report", f"DATA={book}", "N_UPDATES=200", f"P={TINY}", "RUN=once", reports=tmp_path / "r")
    assert opens.count() == 2
    run = tmp_path / "r" / "once"
    corpus = json.loads((run / "run.json").read_text())["corpus"]
    assert corpus["sha256"] == [digest] and corpus["characters"] == 150_000
    assert "up to date" in make("report", f"DATA={book}", "N_UPDATES=200", f"P={TINY}", "RUN=once",
                                reports=tmp_path / "r").stdout
    assert opens.count() == 1
    hand = tmp_path / "by hand"
    hand.mkdir()
    for step in ("01_gradient_check", "02_train", "03_loss_plot", "04_synthesis"):
        papermill(step, hand, data_path=str(book), n_updates=200, **tiny_params())
    assert opens.count() == 1
    assert np.array_equal(np.load(hand / "best_model.npz")["W"], np.load(run / "best_model.npz")["W"])


def test_a_text_changed_during_the_run_is_not_mixed_in(tmp_path):
    """The run goes on with the text it started with, says so, and the next make trains on the new one."""
    book = tmp_path / "book.txt"
    book.write_text(rc.load_text(ROOT / "data" / "shakespeare.txt")[:150_000], encoding="utf-8")
    first = hashlib.sha256(book.read_bytes()).hexdigest()
    args = ("report", f"DATA={book}", "N_UPDATES=200", f"P={TINY}", "RUN=changed")
    proc = make(*args, reports=tmp_path / "r", start_new_session=True)
    wait_for(lambda: (tmp_path / "r" / ".changed.building" / "corpus.npz").exists(), 120, "corpus.npz")
    with open(book, "a", encoding="utf-8") as f:
        f.write("\nA line added while the run runs.\n")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "changed during the run, which went on with the text as it was when it started" in out
    run = tmp_path / "r" / "changed"
    corpus = json.loads((run / "run.json").read_text())["corpus"]
    assert corpus["sha256"] == [first] and corpus["characters"] == 150_000
    for step in ("01_gradient_check", "02_train"):
        assert "changed after this run read it" in (run / f"{step}.ipynb").read_text()
    proc = make(*args, reports=tmp_path / "r")
    assert "01_gradient_check" in proc.stdout and "changed during the run" not in proc.stdout
    assert json.loads((run / "run.json").read_text())["corpus"]["characters"] == 150_000 + 34


# ----------------------------------------------------------------------------- folders: REPORTS, RUN, clean

@pytest.mark.parametrize("verb", ["report", "clean", "batch"])
@pytest.mark.parametrize("reports", ["", "/", "~"])
def test_reports_empty_root_or_home_is_refused_and_deletes_nothing(tmp_path, verb, reports):
    home = tmp_path / "home"
    (home / "keep").mkdir(parents=True)
    (home / "keep" / "02_train.ipynb").write_text("{}")          # looks like a run folder
    env = {**os.environ, "REPORTS": reports, "HOME": str(home)}
    proc = subprocess.run(["make", "--no-print-directory", verb], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert len(errors(proc)) == 1 and "REPORTS" in errors(proc)[0], proc.stderr
    assert (home / "keep" / "02_train.ipynb").exists()


def test_reports_outside_the_project_needs_saying_so(tmp_path):
    proc = subprocess.run(["make", "--no-print-directory", "clean"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "REPORTS": str(tmp_path)})
    assert errors(proc) == [f"error: REPORTS={tmp_path} is outside the project; set REPORTS_OUTSIDE=1 to use it anyway"]


@pytest.mark.parametrize("name", ["../../elsewhere", "a/b", ".hidden", "..", "x.failed"])
def test_a_run_name_stays_one_folder_inside_reports(tmp_path, name):
    proc = make("report", f"RUN={name}", reports=tmp_path / "r", check=False)
    assert len(errors(proc)) == 1 and "is not a run folder name" in errors(proc)[0]
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "r" / "a").exists()


def test_odd_values_make_one_folder_name_inside_reports():
    env = {"P": "prime_text=../../x;y batch_size=2", "DATA": "a b/c'd$e.txt", "M": "8"}
    name = runs.run_name("classic", "1", env)
    assert name == "classic-c_d_e-seed-1-m8-prime_text.._.._x_y-batch_size2"
    assert "/" not in runs.run_name("classic", "1", {"P": "x=" + "/" * 300})
    assert len(runs.run_name("classic", "1", {"P": "x=" + "a" * 300})) <= runs.MAX_NAME


def test_clean_deletes_only_the_workbooks_folders(inside):
    reports = inside
    run = {"kind": runs.MARK + " run", "train": "0123456789abcdef"}
    for name, plan, names in (("classic-seed-1", run, ["history.csv"]), ("classic-seed-2.failed", run, ["02_train.ipynb"]),
                              (".classic-seed-3.building", run, []),
                              ("batch-classic", {"kind": runs.MARK + " comparison", "study": "0123456789abcdef"},
                               ["05_compare.ipynb", "comparison.pdf"]),
                              ("photos", None, ["cat.jpg"])):
        (reports / name).mkdir(parents=True)
        if plan:
            (reports / name / "plan.json").write_text(json.dumps(plan))
        for f in names:
            (reports / name / f).write_text("x")
    (reports / "notes.txt").write_text("mine")
    (reports / ".classic-seed-1.lock").write_text("")
    proc = make("clean", reports=reports)
    assert sorted(p.name for p in reports.iterdir()) == ["notes.txt", "photos"]
    assert "removed 4 folders" in proc.stdout and "2 other entries left alone" in proc.stdout
