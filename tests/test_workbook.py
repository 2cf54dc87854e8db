"""The notebooks and the report: each notebook under papermill, the whole `make report` with
tiny parameters and its PDF's text, bad input through make, and clean source notebooks."""
import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import papermill as pm
import pytest

import rnn_core as rc

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks"
STEPS = ["01_gradient_check", "02_train", "03_loss_plot", "04_synthesis"]
TINY = {"m": 8, "n_updates": 300, "sample_every": 100, "check_m": [3, 6], "passage_length": 1000}


def make(*args, reports: Path, check=True):
    env = {**os.environ, "REPORTS": str(reports)}
    env.pop("MAKEFLAGS", None)
    proc = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"make {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The four notebooks run one after another with papermill, as a user would by hand."""
    run = tmp_path_factory.mktemp("run")
    for step in STEPS:
        names = set(pm.inspect_notebook(str(NB / f"{step}.ipynb")))
        params = {k: v for k, v in {**TINY, "run_dir": str(run)}.items() if k in names}
        pm.execute_notebook(str(NB / f"{step}.ipynb"), str(run / f"{step}.ipynb"), parameters=params,
                            cwd=str(NB), kernel_name="python3", progress_bar=False)
    return run


def test_gradient_check_notebook_writes_its_table(tiny_run):
    check = json.loads((tiny_run / "grad_check.json").read_text())
    rows = check["results"]
    assert {(r["method"], r["m"], r["param"]) for r in rows} == {
        (meth, m, p) for meth in ("centred differences", "complex step") for m in (3, 6) for p in rc.RNN.NAMES}
    assert max(r["max"] for r in rows if r["method"] == "complex step") < 1e-10
    assert max(r["max"] for r in rows if r["method"] == "centred differences") < 1e-5
    executed = nbformat.read(tiny_run / "01_gradient_check.ipynb", as_version=4)
    shown = "".join(o.get("data", {}).get("text/markdown", "") for c in executed.cells for o in c.get("outputs", []))
    assert "the gradients are bug-free" in shown


def test_train_notebook_artefacts_round_trip(tiny_run):
    with open(tiny_run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["update"]) for r in rows] == list(range(1, 301))
    smooth = np.array([float(r["smooth_loss"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    np.testing.assert_array_equal(smooth[1:], 0.999 * smooth[:-1] + 0.001 * loss[1:])   # exact: full precision
    samples = json.loads((tiny_run / "samples.json").read_text())
    assert [s["update"] for s in samples] == [0, 100, 200, 300]
    assert all(len(s["text"]) == 200 for s in samples)
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["params"]["m"] == 8 and info["params"]["n_updates"] == 300
    assert info["corpus"] == {"name": "shakespeare.txt", "characters": 1091710, "K": 76}
    assert info["updates_per_second"] > 0 and info["wall_seconds"] > 0
    best, vocab, meta = rc.load_model(tiny_run / "best_model.npz")
    assert best.m == 8 and vocab.K == 76 and meta["update"] == info["best_update"]
    assert meta["smooth_loss"] == pytest.approx(smooth.min())


def test_plot_and_synthesis_notebooks(tiny_run):
    assert (tiny_run / "loss.pdf").read_bytes()[:4] == b"%PDF"
    passage = (tiny_run / "passage.txt").read_text(encoding="utf-8")
    assert len(passage) == 1000
    executed = nbformat.read(tiny_run / "03_loss_plot.ipynb", as_version=4)
    mimes = {k for c in executed.cells for o in c.get("outputs", []) for k in o.get("data", {})}
    assert "application/pdf" in mimes and "image/png" in mimes   # vector for the PDF, picture for Jupyter


def test_same_seed_same_artefacts(tiny_run, tmp_path):
    """A second papermill run of the training notebook with the same seed gives the same bytes."""
    pm.execute_notebook(str(NB / "02_train.ipynb"), str(tmp_path / "02_train.ipynb"),
                        parameters={"m": 8, "n_updates": 300, "sample_every": 100, "run_dir": str(tmp_path)},
                        cwd=str(NB), kernel_name="python3", progress_bar=False)
    for name in ("history.csv", "samples.json"):
        assert (tmp_path / name).read_bytes() == (tiny_run / name).read_bytes(), name


def pdf_text(path: Path) -> str:
    """The PDF's text, without the page numbers that stand before each page break."""
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True,
                          text=True, check=True).stdout
    return re.sub(r"\n\s*\d+\s*\f", "\n", text)


def squeeze(s: str) -> str:
    """Text without white space, the marks fvextra adds where it breaks a line, and dashes
    (pdftotext joins a line ending in '-' to the next as if it were a hyphen)."""
    return re.sub(r"[\s\u21aa\u2192\u230b-]", "", s)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    proc = make("report", "N_UPDATES=3000", "SAMPLE_EVERY=1000", "RUN=quick", reports=reports)
    return reports / "quick", proc


def test_make_report_writes_a_pdf_with_every_section(quick_report):
    run, proc = quick_report
    assert f"report: {run}/report.pdf" in proc.stdout
    text = pdf_text(run / "report.pdf")
    for heading in ("The run", "Gradient check", "Smooth loss", "Synthesized text",
                    "Evolution during training", "A passage from the best model", "Appendix: the code",
                    "the gradients are bug-free", "def synthesize("):
        assert heading in text, heading
    flat = squeeze(text)
    samples = json.loads((run / "samples.json").read_text())
    assert [s["update"] for s in samples] == [0, 1000, 2000, 3000]
    for s in samples:
        assert squeeze(s["text"]) in flat, s["update"]
        assert f"smooth loss {s['smooth_loss']:.2f}" in text
    assert squeeze((run / "passage.txt").read_text(encoding="utf-8")) in flat
    assert "training:" not in text and "upd/s" not in text   # no progress bar in the PDF


def test_make_report_again_does_no_work(quick_report):
    run, _ = quick_report
    before = (run / "report.pdf").stat().st_mtime_ns
    proc = make("report", "N_UPDATES=3000", "SAMPLE_EVERY=1000", "RUN=quick", reports=run.parent)
    assert "01_gradient_check" not in proc.stdout
    assert (run / "report.pdf").stat().st_mtime_ns == before


@pytest.mark.parametrize("args, message", [
    (["DATA=data/no_such_book.txt"], "error: no such file: "),
    (["ETA=-1"], "error: eta must be a number > 0, got -1"),
    (["OPTIMIZER=sgd"], "error: unknown optimizer 'sgd'; choose one of: adagrad, rmsprop, adam"),
    (["SEED=abc"], "error: seed must be a whole number >= 0, got 'abc'"),
])
def test_bad_input_stops_make_with_one_line_and_keeps_the_good_run(quick_report, args, message):
    run, _ = quick_report
    good = (run / "report.pdf").read_bytes()
    proc = make("report", "N_UPDATES=3000", "SAMPLE_EVERY=1000", "RUN=quick", *args, reports=run.parent, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr
    failed = run.parent / "quick.failed" / "01_gradient_check.ipynb"
    assert failed.exists() and "RNNError" in failed.read_text()
    assert (run / "report.pdf").read_bytes() == good


def test_non_utf8_data_is_named_with_its_position(quick_report, tmp_path):
    run, _ = quick_report
    book = tmp_path / "latin1 book é.txt"
    book.write_bytes("Once upon a time\nthere was a caf\xe9".encode("latin-1"))
    proc = make("report", f"DATA={book}", "RUN=latin", reports=run.parent, check=False)
    assert proc.returncode != 0
    assert "is not UTF-8: byte 0xe9 at line 2, column 16" in proc.stderr


def test_source_notebooks_are_committed_without_outputs():
    for step in STEPS:
        nb = nbformat.read(NB / f"{step}.ipynb", as_version=4)
        assert nb.cells[1].metadata.get("tags") == ["parameters"] or nb.cells[0].metadata.get("tags") == ["parameters"]
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, step


def test_parameter_cells_hold_literals_only():
    import ast
    for step in STEPS:
        nb = nbformat.read(NB / f"{step}.ipynb", as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        for node in ast.parse(cell.source).body:
            assert isinstance(node, ast.Assign), step
            ast.literal_eval(node.value)
