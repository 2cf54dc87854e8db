"""The notebooks and the report: each notebook under papermill, the whole `make report` with
tiny parameters and its PDF's text, bad input through make, and clean source notebooks."""
import csv
import hashlib
import html
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import papermill as pm
import pytest

import rnn_core as rc
from workbook import compare, files, notebook, params, render, runs, show, textfiles

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks"
STEPS = ["01_gradient_check", "02_train", "03_loss_plot", "04_synthesis", "05_compare"]
HAVE_TORCH = importlib.util.find_spec("torch") is not None   # the optional extra: check_torch "auto" uses it
TINY = {"m": 8, "n_updates": 3e2, "sample_every": 100, "check_m": [3, 6], "passage_length": 1000, "speed": False}   # 3e2: as make passes N_UPDATES=3e2


def make(*args, reports: Path, check=True):
    env = {**os.environ, "REPORTS": str(reports), "REPORTS_OUTSIDE": "1"}   # pytest's folders are outside
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
    for step in STEPS[:4]:
        names = set(pm.inspect_notebook(str(NB / f"{step}.ipynb")))
        params = {k: v for k, v in {**TINY, "run_dir": str(run)}.items() if k in names}
        pm.execute_notebook(str(NB / f"{step}.ipynb"), str(run / f"{step}.ipynb"), parameters=params,
                            cwd=str(NB), kernel_name="python3", progress_bar=False)
    return run


def test_gradient_check_notebook_writes_its_table(tiny_run):
    check = json.loads((tiny_run / "grad_check.json").read_text())
    rows = check["results"]
    methods = ("centred differences", "complex step") + (("autograd (PyTorch)",) if HAVE_TORCH else ())
    assert {(r["method"], r["m"], r["param"]) for r in rows} == {
        (meth, m, p) for meth in methods for m in (3, 6) for p in rc.RNN.NAMES}
    assert max(r["max"] for r in rows if r["method"] == "complex step") < 1e-10
    assert max(r["max"] for r in rows if r["method"] == "centred differences") < 1e-5
    executed = nbformat.read(tiny_run / "01_gradient_check.ipynb", as_version=4)
    shown = "".join(o.get("data", {}).get("text/markdown", "") for c in executed.cells for o in c.get("outputs", []))
    worst = max(r["max"] for r in rows if r["method"] == "complex step")
    assert (f"agrees with the complex-step derivative to a relative error of at most {worst:.1e}, machine "
            "precision: the backward pass computes the gradient of the loss exactly") in shown


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
    assert type(info["params"]["n_updates"]) is int     # 3e2 was taken as the whole number it is
    assert info["corpus"] == {"name": "shakespeare.txt", "characters": 1091710, "K": 76,
                              "train_characters": 982539, "val_characters": 109171, "val_scored_characters": 109171,
                              "line_endings_converted": 0, "sha256": [hashlib.sha256(
                                  (ROOT / "data" / "shakespeare.txt").read_bytes()).hexdigest()]}
    assert info["updates_per_second"] > 0 and info["wall_seconds"] > 0
    assert info["blas_threads"] == 1                # conftest runs the tests on one BLAS thread
    best, vocab, meta = files.load_model(tiny_run / "best_model.npz")
    assert best.m == 8 and vocab.K == 76 and meta["update"] == info["best_update"]
    assert meta["smooth_loss"] == pytest.approx(smooth.min())
    assert meta["start_h"].shape == (8,) and 0 <= meta["start_x"] < 76     # the state it carried then
    # the last validation point is the final model's continued reading; the zero-state one is beside it
    assert info["val_loss_final"] == float((tiny_run / "validation.csv").read_text().split(",")[-1])
    assert info["val_loss_final_from_zero"] > 0


PRIME = 'ROMEO: O\'er "the" {sea} & [more]'   # quotes, braces, & and brackets: all in the vocabulary


def test_a_prime_text_is_read_before_the_passage(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    pm.execute_notebook(str(NB / "04_synthesis.ipynb"), str(tmp_path / "04.ipynb"),
                        parameters={"run_dir": str(run), "prime_text": PRIME, "passage_length": 300,
                                    "temperatures": [1.0], "top_ps": []},
                        cwd=str(NB), kernel_name="python3", progress_bar=False)
    best, vocab, meta = files.load_model(run / "best_model.npz")
    prime = vocab.encode(PRIME)
    h = rc.feed(best, meta["start_h"], prime[:-1])
    expected = vocab.decode(rc.synthesize(best, h, int(prime[-1]), 300, rng=np.random.default_rng([1, 4])))
    assert (run / "passage.txt").read_text(encoding="utf-8") == expected
    shown = [o.get("data", {}).get("text/plain", "") for c in nbformat.read(tmp_path / "04.ipynb", as_version=4).cells
             for o in c.get("outputs", [])]
    assert any(s.endswith("then reading the prime text below:\nprime text (read by the model, not written by it)\n"
                          + PRIME) for s in shown)
    assert any(s.startswith("what the model writes next\n" + expected[:50]) for s in shown)


def test_plot_and_synthesis_notebooks(tiny_run):
    assert (tiny_run / "loss.pdf").read_bytes()[:4] == b"%PDF"
    passage = (tiny_run / "passage.txt").read_text(encoding="utf-8")
    assert len(passage) == 1000
    executed = nbformat.read(tiny_run / "03_loss_plot.ipynb", as_version=4)
    mimes = {k for c in executed.cells for o in c.get("outputs", []) for k in o.get("data", {})}
    assert "application/pdf" in mimes and "image/png" in mimes   # vector for the PDF, picture for Jupyter


def test_the_report_says_when_a_zero_state_reads_the_held_out_text_worse(tmp_path):
    """Seed 9 after 3,000 updates reads the held-out text worse than uniform guessing from h = 0
    (see test_training): the validation section says so, with the numbers of run.json."""
    params = {"seed": 9, "n_updates": 3000, "val_every": 3000, "sample_every": 3000, "run_dir": str(tmp_path)}
    for step in ("02_train", "03_loss_plot"):
        pm.execute_notebook(str(NB / f"{step}.ipynb"), str(tmp_path / f"{step}.ipynb"), parameters=params,
                            cwd=str(NB), kernel_name="python3", progress_bar=False)
    info = json.loads((tmp_path / "run.json").read_text())
    zero, final = info["val_loss_final_from_zero"], info["val_loss_final"]
    assert zero > math.log(76) > final
    said = "".join(o.get("data", {}).get("text/markdown", "") for c in
                   nbformat.read(tmp_path / "03_loss_plot.ipynb", as_version=4).cells for o in c.get("outputs", []))
    assert (f"Read from a zero hidden state instead, as if each piece started a new epoch, the final model scores "
            f"{zero:.3f} on the same text, {zero - final:.3f} above the continued reading and worse than guessing "
            f"uniformly among the 76 characters (ln 76 = 4.331)") in said


KEEP_FIGURES = 'get_ipython().run_line_magic("config", "InlineBackend.close_figures = False")'
READ_FIGURES = """
import json
import numpy as np
found = []
for num in plt.get_fignums():
    fig = plt.figure(num)
    fig.canvas.draw()
    for ax in fig.axes:
        box = ax.get_window_extent()
        for line in ax.get_lines():
            if line.get_transform() != ax.transData:      # an axvline: data across, axes up
                continue
            xy = ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float))
            marker = line.get_marker() not in (None, "", "None", " ")
            r = line.get_markersize() / 2 * fig.dpi / 72 if marker else 0.0
            found.append({"label": line.get_label(), "points": len(xy), "marker": marker,
                          "line": line.get_linestyle() not in ("None", "", " ") and len(xy) > 1,
                          "inside": bool(((xy[:, 0] - r >= box.x0 - 0.5) & (xy[:, 0] + r <= box.x1 + 0.5)
                                          & (xy[:, 1] - r >= box.y0 - 0.5) & (xy[:, 1] + r <= box.y1 + 0.5)).all())})
print(json.dumps(found))
"""


def plotted(run: Path, tmp_path: Path) -> list:
    """Every line of 03's figures, each point (and its marker's extent) checked against its axes in
    display coordinates, by cells added around the notebook's own."""
    nb = nbformat.read(NB / "03_loss_plot.ipynb", as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(KEEP_FIGURES))
    nb.cells.append(nbformat.v4.new_code_cell(READ_FIGURES))
    source = tmp_path / "03_figures.ipynb"
    nbformat.write(nb, source)
    pm.execute_notebook(str(source), str(tmp_path / "03_figures_out.ipynb"), parameters={"run_dir": str(run)},
                        cwd=str(NB), kernel_name="python3", progress_bar=False)
    out = nbformat.read(tmp_path / "03_figures_out.ipynb", as_version=4).cells[-1].outputs
    return json.loads("".join(o.get("text", "") for o in out))


def check_figures(lines: list) -> None:
    """Every point and marker inside its axes; every line in a legend is seen (a marker, or a line
    through two points or more)."""
    assert lines and all(f["inside"] for f in lines), [f for f in lines if not f["inside"]]
    assert all(f["marker"] or f["line"] for f in lines if not f["label"].startswith("_")), lines


def test_every_plotted_point_is_inside_its_axes_and_every_legend_entry_drawn(tiny_run, tmp_path):
    """One held-out score (the run is shorter than val_every): its point, said as one, inside."""
    lines = plotted(tiny_run, tmp_path)
    check_figures(lines)
    held_out = [f for f in lines if f["label"].startswith("held-out loss")]
    assert len(held_out) == 1 and held_out[0]["points"] == 1 and held_out[0]["marker"]


def test_samples_every_1000_updates_are_kept_and_every_10000th_shown(tiny_run, tmp_path):
    """The 2025-2026 course samples every 1,000 updates; the report shows the assignment's every 10,000th."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    text = json.loads((run / "samples.json").read_text())[0]["text"]
    (run / "samples.json").write_text(json.dumps([{"update": k, "smooth_loss": 2.0, "text": f"{k}:{text}"}
                                                  for k in range(0, 30_001, 1000)]))
    pm.execute_notebook(str(NB / "04_synthesis.ipynb"), str(tmp_path / "04.ipynb"),
                        parameters={"run_dir": str(run), "sample_every": 1000, "temperatures": [1.0], "top_ps": []},
                        cwd=str(NB), kernel_name="python3", progress_bar=False)
    cell = next(c for c in nbformat.read(tmp_path / "04.ipynb", as_version=4).cells
                if c.source.startswith("samples = "))
    shown = "\n".join(o["data"]["text/plain"] for o in cell.outputs if "text/plain" in o.get("data", {}))
    labels = re.findall(r"^(?:before the first update|after [\d,]+ updates), smooth loss [\d.]+$", shown, re.M)
    assert labels == ["before the first update, smooth loss 2.00"] + [
        f"after {k:,} updates, smooth loss 2.00" for k in (10_000, 20_000, 30_000)]
    said = "".join(o.get("data", {}).get("text/markdown", "") for o in cell.outputs)
    assert ("every 1,000 updates, the model as it was then drew 202 characters, starting from the hidden state it "
            "carried and the current input character: 31 samples, kept in `samples.json`; shown here are the 4 drawn "
            "before every 10,000th update.") in said


def test_a_crlf_book_in_random_order_through_the_notebooks(tmp_path):
    """A book saved with Windows line endings, trained in random order: the run table counts the
    line endings read as LF and names the order; validation and the plots work."""
    book = tmp_path / "book.txt"
    text = rc.load_text(ROOT / "data" / "shakespeare.txt")[:100_000]
    book.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
    params = {"data_path": str(book), "chunk_order": "random", "batch_size": 4, "m": 8, "n_updates": 1200,
              "val_every": 100, "sample_every": 400, "run_dir": str(tmp_path / "run")}     # 1.3 epochs
    for step in ("02_train", "03_loss_plot"):
        pm.execute_notebook(str(NB / f"{step}.ipynb"), str(tmp_path / f"{step}.ipynb"), parameters=params,
                            cwd=str(NB), kernel_name="python3", progress_bar=False)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["corpus"]["line_endings_converted"] == text.count("\n") and info["corpus"]["K"] == rc.Vocab(text).K
    said = "".join(o.get("data", {}).get("text/markdown", "") for c in
                   nbformat.read(tmp_path / "02_train.ipynb", as_version=4).cells for o in c.get("outputs", []))
    assert f"{text.count(chr(10)):,} line endings (CRLF or CR) read as LF" in said
    assert "from uniformly random positions, each from h = 0; mini-batches of 4 streams" in said
    curve = "".join(o.get("data", {}).get("text/markdown", "") for c in
                    nbformat.read(tmp_path / "03_loss_plot.ipynb", as_version=4).cells for o in c.get("outputs", []))
    assert info["epochs"] > 1 and "(1.33 epochs)" in curve    # epochs counted, yet nothing starts over:
    assert "dashed lines" not in curve and "bump" not in curve and "restarts" not in curve
    lines = plotted(tmp_path / "run", tmp_path)          # twelve held-out scores, the first far above the rest
    check_figures(lines)
    assert [f["points"] for f in lines if f["label"] == "held-out loss"] == [12]
    assert notebook.read_validation(tmp_path / "run" / "validation.csv").tolist()[0][0] == 100
    assert (tmp_path / "run" / "validation.pdf").exists()


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


def column_text(path: Path) -> str:
    """The text of each page's left half, then of each right half (A4: 595 points across): a box set
    in one column of two (the samples, the passage) reads whole, where pdftotext interleaves columns."""
    return "".join(subprocess.run(["pdftotext", "-x", str(x), "-y", "0", "-W", "298", "-H", "842", "-enc", "UTF-8",
                                   str(path), "-"], capture_output=True, text=True, check=True).stdout
                   for x in (0, 297))


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
    for heading in ("The run", "Gradient check", "Smooth loss", "Synthesized text", "During training",
                    "From the best model", "Beyond the assignment", "Held-out loss", "Sampling: temperature and top-p",
                    "Speed", "Conclusion", "Appendix: the code", "held-out characters", "repeated trigrams",
                    "def synthesize(", "times faster than the textbook version"):
        assert heading in text, heading
    body = text.split("Appendix: the code")[0]
    assert body.index("Synthesized text") < body.index("Beyond the assignment") < body.index("Held-out loss")
    flat = squeeze(column_text(run / "report.pdf"))
    samples = json.loads((run / "samples.json").read_text())
    assert [s["update"] for s in samples] == [0, 1000, 2000, 3000]
    for s in samples:
        assert squeeze(s["text"]) in flat, s["update"]
        assert squeeze(f"smooth loss {s['smooth_loss']:.2f}") in flat
    passage = squeeze((run / "passage.txt").read_text(encoding="utf-8"))
    assert passage in flat or passage in squeeze(text)          # in two columns when long, else across the page
    assert "training:" not in text and "upd/s" not in text   # no progress bar in the PDF
    said = " ".join(text.split())
    assert "tweet" not in said.split("Appendix: the code")[0].lower()   # a book's report says nothing of tweets
    assert "starting from the hidden state it carried at that update and the character that came next" in said
    # validation, scored once at 3,000 updates here: one point, said as one, with its protocol
    assert "Each score reads the held-out text as a continuation of the training text: from the hidden state" in said
    assert re.search(r"the loss was [\d.]+ \([\d.]+ bits per character\) after 3,000 updates", said)
    assert "went from" not in said.split("Held-out loss")[-1].split("Sampling:")[0]
    # temperature 1.0 and top-p 1.0 are one rule, the passage's: one row, said so, its text not shown again
    assert ("Temperature 1.0 and top-p 1.0 are the same rule, plain sampling from 𝑝𝑡 : the passage above, continued, "
            "and not shown again.") in said
    assert said.count("temperature 1.0 = top-p 1.0") == 1      # its row
    best, vocab, meta = files.load_model(run / "best_model.npz")
    plain = rc.synthesize(best, meta["start_h"].reshape(-1, 1), meta["start_x"], 2000,
                          rng=np.random.default_rng([1, 4]), temperature=1.0, top_p=1.0)   # the row's text
    assert vocab.decode(plain).startswith((run / "passage.txt").read_text(encoding="utf-8"))    # continued
    assert said.count("top-p 1.0") == said.count("= top-p 1.0") + said.count("and top-p 1.0 are the same rule")
    sampling = said.split("Appendix: the code")[0].split("Sampling: temperature and top-p")[-1]
    assert sampling.count("greedy") == 3                      # said what it is, a row, a text
    prose = said.split("Appendix: the code")[0]
    assert not [p.name for p in params.PARAMETERS if "_" in p.name and p.name in prose]   # no code names
    # a run of 0.08 epochs: no epoch boundary drawn or spoken of, and the conclusion says why it compares
    # the last updates with the ones before (other text, not the same chunks an epoch earlier)
    assert "dashed lines" not in prose and "new epoch" not in prose and "epoch boundary" not in prose
    assert "The run ended in its first epoch, so it read no chunk twice" in prose


def test_the_code_appendix_prints_the_assignment_and_names_the_rest(quick_report):
    """The appendix is rnn_core.py, whole; the package's modules the run used are named with their
    line counts and what they do, not printed."""
    run, _ = quick_report
    text = pdf_text(run / "report.pdf")
    appendix = text.split("Appendix: the code")[1]
    core = (ROOT / "rnn_core.py").read_text(encoding="utf-8").splitlines()
    assert f"rnn_core.py ({len(core)} lines) is the assignment" in " ".join(appendix.split())
    flat = squeeze(appendix)
    for line in (core[0], core[len(core) // 2], core[-1]):   # first, middle and last lines, printed
        code = line.split("  #")[0]                         # pdftotext sets a trailing comment apart
        assert squeeze(code) in flat, line
    modules = runs.modules_used(params.RUN_NOTEBOOKS)
    assert {"workbook/training.py", "workbook/notebook.py", "workbook/params.py"} <= set(modules)
    said = " ".join(appendix.split())
    table = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(run / "report.pdf"), "-"],
                           capture_output=True, text=True, check=True).stdout   # a row on one line
    for m in modules:
        lines = len((ROOT / m).read_text(encoding="utf-8").splitlines())
        assert re.search(rf"{re.escape(m)}\s+{lines}\s+\w", table), m     # named, with its line count
    assert "class RunReader(" not in appendix and "def forward_backward_batch(" not in appendix   # not printed
    assert "make report CODE=all prints them" in said


def test_make_report_again_does_no_work(quick_report):
    run, _ = quick_report
    before = (run / "report.pdf").stat().st_mtime_ns
    proc = make("report", "N_UPDATES=3000", "SAMPLE_EVERY=1000", "RUN=quick", reports=run.parent)
    assert "01_gradient_check" not in proc.stdout
    assert (run / "report.pdf").stat().st_mtime_ns == before


NOTES = """I ran this on my laptop, with the defaults.

## Smooth loss

The curve drops fast \U0001F600, then levels off; $\\ell$ is in nats.

## Conclusion

Next I would try an LSTM.
"""


def test_the_students_notes_go_where_they_belong_without_training_again(quick_report, tmp_path):
    """NOTES=file (a name with a space, an accent, a quote and a dollar): the opening text before
    the report's first section, each ## section at the end of the report's section of that title,
    in the PDF and the HTML, set apart as the author's; the run is not trained again."""
    run, _ = quick_report
    reports = tmp_path / "reports"
    shutil.copytree(run, reports / "quick")
    notes = tmp_path / "my notes é 'x' $y.md"
    notes.write_text(NOTES, encoding="utf-8")
    proc = make("report", "N_UPDATES=3000", "SAMPLE_EVERY=1000", "RUN=quick", f"NOTES={notes}", reports=reports)
    assert "02_train" not in proc.stdout and "01_gradient_check" not in proc.stdout
    text = " ".join(pdf_text(reports / "quick" / "report.pdf").split("Appendix: the code")[0].split())
    page = (reports / "quick" / "report.html").read_text(encoding="utf-8").split("<body")[1]
    flat = html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))
    text, flat = text.replace("\u2019", "'"), flat.replace("\u2019", "'")      # typographic apostrophes
    for said in (text, flat):
        order = [said.index(s) for s in (
            "Text beside a grey bar is the author's own", "I ran this on my laptop", "The run", "Smooth loss",
            "The curve drops fast", "Synthesized text", "Conclusion", "Next I would try an LSTM")]
        assert order == sorted(order), said[:300]
        assert said.count("The author's notes:") == 3
    assert "levels off" in text and "<blockquote>" in page
    changed = make("report", "N_UPDATES=3000", "SAMPLE_EVERY=1000", "RUN=quick", f"NOTES={notes}", reports=reports)
    assert "02_train" not in changed.stdout
    notes.write_text(NOTES.replace("## Conclusion", "## Conclusions"), encoding="utf-8")
    before = {p.name: p.read_bytes() for p in (reports / "quick").iterdir() if p.is_file()}
    bad = make("report", "N_UPDATES=3000", "SAMPLE_EVERY=1000", "RUN=quick", f"NOTES={notes}", reports=reports,
               check=False)
    error = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert bad.returncode and len(error) == 1 and "'## Conclusions' names no section of the report" in error[0]
    assert all(t in error[0] for t in render.notes_titles()) and "Traceback" not in bad.stderr
    assert {p.name: p.read_bytes() for p in (reports / "quick").iterdir() if p.is_file()} == before


def test_make_notes_offers_a_starter_and_never_overwrites_one(tmp_path):
    notes = tmp_path / "notes é.md"
    first = make("notes", f"NOTES={notes}", reports=tmp_path)
    starter = notes.read_text(encoding="utf-8")
    assert [line[3:] for line in starter.splitlines() if line.startswith("## ")] == render.notes_titles()
    assert "Gradient check" in render.notes_titles() and str(notes) in first.stdout
    notes.write_text("mine", encoding="utf-8")
    again = make("notes", f"NOTES={notes}", reports=tmp_path, check=False)
    assert again.returncode and "never writes over it" in again.stderr and notes.read_text(encoding="utf-8") == "mine"


C0 = np.array([0x1f, 0x77, 0xb4])     # matplotlib's first colour: the smooth-loss curve


def blue_rows(png: Path) -> np.ndarray:
    """The rows of a screenshot where the smooth-loss curve's colour is seen."""
    import matplotlib.image
    rgb = (matplotlib.image.imread(png)[..., :3] * 255).round()
    return np.flatnonzero((np.abs(rgb - C0).max(axis=-1) <= 60).any(axis=1))   # lines are antialiased


def test_the_html_report_is_one_file_that_a_browser_draws(quick_report, tmp_path):
    """Nothing fetched (figures embedded, no scripts), the same sections as the PDF, mathematics as
    MathML; and headless Chromium, at a desktop's and a phone's width, draws the smooth-loss figure."""
    run, _ = quick_report
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and not re.search(r"""(src|href)=["']?(https?:)?//""", page.replace("<a href", ""))
    assert page.count('src="data:image/png;base64,') >= 2 and "<math" in page
    for heading in ("The run", "Gradient check", "Smooth loss", "Synthesized text", "Beyond the assignment",
                    "Held-out loss", "Conclusion", "Appendix: the code"):
        assert f">{heading}</h" in page, heading
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    seen = {}
    for name, size in (("desktop", "900,4000"), ("phone", "400,6000")):   # the page's top, tall enough
        png = tmp_path / f"{name}.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={size}", f"--screenshot={png}",
                        (run / "report.html").as_uri()], capture_output=True, timeout=120, check=True)
        seen[name] = blue_rows(png)
    for name, rows in seen.items():     # the curve, drawn below the first screen (the run, the gradient check)
        assert len(rows) > 20 and rows[0] > 1000, (name, rows[:5])


# ----------------------------------------------------------------------------- bad input, docs/bad-input.md's table

def bad_files(folder: Path) -> dict:
    """The bad data files of the table, made fresh."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"empty": b"", "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20,
             "latin1": "Once upon a time\nthere was a caf\xe9".encode("latin-1"), "short": b"To be or not",
             "notjson": b"this is not json"}
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.txt"
        paths[name].write_bytes(content)
    paths["folder"] = folder
    paths["dangling"] = folder / "gone.txt"
    if not paths["dangling"].is_symlink():
        paths["dangling"].symlink_to(folder / "nowhere.txt")
    paths["fifo"] = folder / "pipe.txt"
    if not paths["fifo"].exists():
        os.mkfifo(paths["fifo"])
    return paths




# (case, make variables, notebook parameters, the start of the one-line error); {f[...]} are bad_files
BAD_INPUT = [
    ("missing data", ["DATA=data/no_such_book.txt"], {"data_path": "../data/no_such_book.txt"}, "no such file: "),
    ("data is a folder", ["DATA={f[folder]}"], {"data_path": "{f[folder]}"}, "is a folder; give the path of a UTF-8 text file"),
    ("data is a device", ["DATA=/dev/zero"], {"data_path": "/dev/zero"}, "/dev/zero is a device, not a text file"),
    ("data is a link to nothing", ["DATA={f[dangling]}"], {"data_path": "{f[dangling]}"},
     "gone.txt is a link to "),
    ("data is a FIFO", ["DATA={f[fifo]}"], {"data_path": "{f[fifo]}"}, "pipe.txt is a FIFO (named pipe), not a text file"),
    ("empty data", ["DATA={f[empty]}"], {"data_path": "{f[empty]}"}, "is empty; give a text of at least seq_length + 1"),
    ("binary data", ["DATA={f[binary]}"], {"data_path": "{f[binary]}"}, "is a binary file (it has NUL bytes)"),
    ("non-UTF-8 data", ["DATA={f[latin1]}"], {"data_path": "{f[latin1]}"}, "is not UTF-8: byte 0xe9 at line 2, column 16"),
    ("text shorter than seq_length + 1", ["DATA={f[short]}"], {"data_path": "{f[short]}"},
     "has 12 characters, fewer than seq_length + 1 = 26"),
    ("m = 0", ["M=0"], {"m": 0}, "m must be >= 1, got 0"),
    ("eta <= 0", ["ETA=-1"], {"eta": -1}, "eta must be a number > 0, got -1"),
    ("seq_length = 0", ["SEQ_LENGTH=0"], {"seq_length": 0}, "seq_length must be >= 1, got 0"),
    ("n_updates = 0", ["N_UPDATES=0"], {"n_updates": 0}, "n_updates must be >= 1, got 0"),
    ("sample_every < 0", ["SAMPLE_EVERY=-5"], {"sample_every": -5}, "sample_every must be >= 1, got -5"),
    ("temperature <= 0", ["P=temperatures=[0.5,0]"], {"temperatures": [0.5, 0]}, "temperature must be a number > 0, got 0"),
    ("top_p outside (0, 1]", ["P=top_ps=[1.5]"], {"top_ps": [1.5]}, "top_p must be in (0, 1], got 1.5"),
    ("unknown optimizer", ["OPTIMIZER=sgd"], {"optimizer": "sgd"}, "unknown optimizer 'sgd'; choose one of: adagrad, rmsprop, adam"),
    ("unknown init", ["INIT=he"], {"init": "he"}, "unknown init 'he'; choose one of: normal, xavier"),
    ("unknown preset", ["PRESET=nope"], {"preset": "nope"}, "unknown preset 'nope'; choose one of: adam2025, classic, sigma0.1, tweets"),
    ("seed not an integer", ["SEED=1.5"], {"seed": 1.5}, "seed must be a whole number >= 0, got 1.5"),
    ("val_fraction out of range", ["P=val_fraction=1.5"], {"val_fraction": 1.5}, "val_fraction must be a number in [0, 0.9), got 1.5"),
    ("batch_size = 0", ["P=batch_size=0"], {"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ("unknown chunk_order", ["P=chunk_order=backwards"], {"chunk_order": "backwards"}, "unknown chunk_order 'backwards'; choose one of: sequential, shuffled, random"),
    ("unknown dtype", ["P=dtype=float16"], {"dtype": "float16"}, "unknown dtype 'float16'; choose one of: float64, float32"),
    ("best_by val without validation", ["P=best_by=val val_fraction=0"], {"best_by": "val", "val_fraction": 0},
     'best_by="val" needs a validation text: set val_fraction > 0'),
    ("tweets file that is not JSON", ["PRESET=tweets", "DATA={f[notjson]}"], {"corpus_format": "tweets", "data_path": "{f[notjson]}"},
     "is not JSON: Expecting value at line 1, column 1"),
    ("batch_size too large for the text", ["P=val_fraction=0.5 batch_size=100000"], {"val_fraction": 0.5, "batch_size": 100000},
     "(after holding out val_fraction = 0.5): batch_size 100000 leaves 5 characters per stream, fewer than seq_length = 25"),
    ("prime text outside the vocabulary", ["P=prime_text=To€be"], {"prime_text": "To€be"},
     "prime_text has characters the training text does not: '€'"),
    ("unknown parameter", ["P=learning_rate=0.1"], None, "unknown parameter learning_rate; the notebooks take:"),
    ("read-only reports folder", ["REPORTS={ro}"], {"run_dir": "{ro}/run"}, "cannot "),
    ("text above max_text_mb", ["P=max_text_mb=0.5"], {"max_text_mb": 0.5},
     "shakespeare.txt is 1 MB, more than max_text_mb = 0.5; reading a text takes about 2.5 times"),
    ("no folder for the runs", ["REPORTS="], None, "REPORTS is empty; give the folder for run folders"),
    ("a run name that is a path", ["RUN=../../elsewhere"], None, "RUN='../../elsewhere' is not a run folder name"),
    ("a value given twice", ["M=50", "P=m=100"], None, "m given twice (a variable and P, or twice in P)"),
]


def fill(value, files, ro):
    return value.format(f=files, ro=ro) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A folder no one may write in: chmod for a user; for root, who writes anywhere chmod
    forbids, a read-only tmpfs mounted there."""
    d = tmp_path_factory.mktemp("ro")
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield str(d)
        return
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here: {proc.stderr.strip()}")
    yield str(d)
    subprocess.run(["umount", str(d)], capture_output=True)


@pytest.mark.parametrize("case, args, params, message", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_through_make_is_one_line_and_keeps_the_good_run(quick_report, tmp_path, read_only,
                                                                   case, args, params, message):
    run, _ = quick_report
    files = bad_files(tmp_path / "bad")
    good = (run / "report.pdf").read_bytes()
    args = [fill(a, files, read_only) for a in args]
    reports = Path(args[0][8:]) if args[0].startswith("REPORTS=") else run.parent
    proc = make("report", "N_UPDATES=3000", "SAMPLE_EVERY=1000", "RUN=quick", *args, reports=reports, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and "No rule to make" not in proc.stderr
    assert (run / "report.pdf").read_bytes() == good
    # every value and the text are checked before any notebook starts: no attempt to keep
    assert not (reports / "quick.failed").exists() and not (reports / ".quick.building").exists()


@pytest.mark.parametrize("case, args, params, message", [c for c in BAD_INPUT if c[2] is not None],
                         ids=[c[0] for c in BAD_INPUT if c[2] is not None])
def test_bad_input_through_papermill_is_named(tmp_path, read_only, case, args, params, message):
    files = bad_files(tmp_path / "bad")
    params = {k: fill(v, files, read_only) for k, v in params.items()}
    step = "04_synthesis" if {"temperatures", "top_ps"} & set(params) else "02_train"
    params.setdefault("run_dir", str(tmp_path / "run"))
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(NB / f"{step}.ipynb"), str(tmp_path / "out.ipynb"), parameters=params,
                            cwd=str(NB), kernel_name="python3", progress_bar=False)
    assert err.value.ename == "RNNError" and message in err.value.evalue
    assert "\n" not in err.value.evalue


# ----------------------------------------------------------------------------- the run's text, read once

def test_corpus_npz_holds_the_text_as_read(tmp_path, capsys):
    """load_corpus against reading the file by hand; corpus.npz used while the file is the same,
    read again when it changes (unless pinned: then the run keeps its text and says so), and a
    damaged corpus.npz is read again, never trusted."""
    book = tmp_path / "book.txt"
    book.write_bytes("To be, or not\r\nto be: 🦉 that is\r\n".encode() * 300)
    run = tmp_path / "run"
    run.mkdir()
    textfiles.forget_corpus()
    corpus = textfiles.load_corpus(str(book), "text", 0.1, run_dir=run)
    text = book.read_bytes().decode().replace("\r\n", "\n")
    vocab = rc.Vocab(text)
    cut = len(text) - round(len(text) * 0.1)
    assert corpus.vocab == vocab and corpus.cut == cut and corpus.line_endings_converted == 600
    assert np.array_equal(corpus.codes, vocab.encode(text)) and corpus.text(cut) == text[cut:]
    assert corpus.sha256 == (hashlib.sha256(book.read_bytes()).hexdigest(),)
    assert (run / "corpus.npz").is_file()

    def fresh(**kw):
        textfiles.forget_corpus()                 # as a new kernel would
        return textfiles.load_corpus(str(book), "text", 0.1, run_dir=run, **kw)

    (run / "corpus.npz").chmod(0o644)
    again = fresh()
    assert np.array_equal(again.codes, corpus.codes) and again.key == corpus.key
    for damage in (b"not a zip", (run / "corpus.npz").read_bytes()[:-100]):
        (run / "corpus.npz").write_bytes(damage)
        assert np.array_equal(fresh().codes, corpus.codes)
        assert np.array_equal(np.load(run / "corpus.npz")["codes"], corpus.codes)   # written again
    with open(book, "ab") as f:           # changed: read again (not pinned)
        f.write(b"More.\n")
    assert fresh().text().endswith("that is\nMore.\n")
    textfiles.save_corpus(fresh(), run, pin=True)   # as the planner writes it
    with open(book, "ab") as f:
        f.write(b"And more.\n")
    capsys.readouterr()
    kept = fresh()
    assert kept.text().endswith("More.\n") and "changed after this run read it" in capsys.readouterr().err
    assert fresh(quiet=True).text().endswith("More.\n") and capsys.readouterr().err == ""
    other = textfiles.load_corpus(str(book), "text", 0.2, run_dir=run)      # other settings: not this run's text
    assert other.text().endswith("And more.\n")
    textfiles.forget_corpus()


def test_the_docs_list_every_bad_input_case():
    table = (ROOT / "docs" / "bad-input.md").read_text(encoding="utf-8")
    assert len(BAD_INPUT) >= 20
    for case, _, _, message in BAD_INPUT:
        assert case in table, case


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


def test_parameter_cells_and_the_docs_table_are_in_sync_with_the_spec():
    proc = subprocess.run([sys.executable, "-m", "workbook.cells", "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_parameter_cells_hold_literals_only():
    import ast
    for step in STEPS:
        nb = nbformat.read(NB / f"{step}.ipynb", as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        for node in ast.parse(cell.source).body:
            assert isinstance(node, ast.Assign), step
            ast.literal_eval(node.value)


# ----------------------------------------------------------------------------- tweets

def tweet_archive(path: Path, n: int = 300) -> Path:
    """A small file of the tweet-archive format, written here: we ship no real tweets."""
    rng = np.random.default_rng(0)
    words = ["great", "people", "tonight", "America", "news", "big", "win", "thank", "you", "vote"]
    tweets = []
    for i in range(n):
        text = " ".join(rng.choice(words, size=int(rng.integers(3, 12))))
        if i % 7 == 0:
            text += " &amp; more &gt; less https://t.co/abc" + str(i)
        if i % 11 == 0:
            text += " \U0001F600"
        tweets.append({"source": "web", "id_str": str(i), "text": ("RT @x: " if i % 5 == 0 else "") + text,
                       "created_at": "Mon Jan 01 00:00:00 +0000 2018", "retweet_count": 1,
                       "in_reply_to_user_id_str": None, "favorite_count": 2, "is_retweet": i % 5 == 0})
    path.write_text(json.dumps(tweets), encoding="utf-8")
    return path


def batched_paragraph(notebook: Path) -> str:
    """The executed gradient check's paragraph on the batched pass."""
    texts = [o.get("data", {}).get("text/markdown", "") for c in nbformat.read(notebook, as_version=4).cells
             for o in c.get("outputs", [])]
    return next(t for t in texts if t.startswith("## The batched pass"))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_tweets_run_writes_a_dozen_tweets_that_stop_at_the_end_character(tmp_path, cell):
    archive = tweet_archive(tmp_path / "tweets é.json")
    params = {"corpus_format": "tweets", "data_path": str(archive), "cell": cell, "m": 16, "n_updates": 400,
              "sample_every": 200, "run_dir": str(tmp_path / "run"), "tweet_length": 140, "n_tweets": 12,
              "val_fraction": 0.1, "val_every": 100, "check_m": [4], "speed": False}
    for step in ("01_gradient_check", "02_train", "04_synthesis"):
        names = set(pm.inspect_notebook(str(NB / f"{step}.ipynb")))
        pm.execute_notebook(str(NB / f"{step}.ipynb"), str(tmp_path / f"{step}.ipynb"),
                            parameters={k: v for k, v in params.items() if k in names},
                            cwd=str(NB), kernel_name="python3", progress_bar=False)
    tweets = (tmp_path / "run" / "passage.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(tweets) == 12 and all(len(t) <= 140 and textfiles.EOT not in t for t in tweets)
    assert any(len(t) < 140 for t in tweets)          # most end at the end-of-tweet character
    assert "machine precision" in batched_paragraph(tmp_path / "01_gradient_check.ipynb")   # resets, each cell
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    text = textfiles.load_tweets(archive)
    assert info["corpus"]["characters"] == len(text) and info["params"]["corpus_format"] == "tweets"
    assert text[:info["corpus"]["train_characters"]].endswith(textfiles.EOT)   # held out at a tweet's end
    batched = [r for r in json.loads((tmp_path / "run" / "grad_check.json").read_text())["results"]
               if r["method"] == "complex step, batched pass"]  # the pass with resets, checked in 01
    assert len(batched) == 5 and max(r["max"] for r in batched) < 1e-10
    shown = batched_paragraph(tmp_path / "01_gradient_check.ipynb")
    assert "(one stream of 25 characters, h restarting at each tweet's start), at m = " in shown
    said = "".join(o.get("data", {}).get("text/plain", "") for c in
                   nbformat.read(tmp_path / "04_synthesis.ipynb", as_version=4).cells for o in c.get("outputs", []))
    assert "writes 12 tweets, each from a zero hidden state after an end-of-tweet character" in said


def test_gradient_check_also_checks_the_batched_pass_that_training_uses(tmp_path):
    params = {"batch_size": 6, "dtype": "float32", "check_m": [4, 7], "run_dir": str(tmp_path / "run"), "speed": False}
    pm.execute_notebook(str(NB / "01_gradient_check.ipynb"), str(tmp_path / "01.ipynb"), parameters=params,
                        cwd=str(NB), kernel_name="python3", progress_bar=False)
    results = json.loads((tmp_path / "run" / "grad_check.json").read_text())["results"]
    batched = [r for r in results if r["method"] == "complex step, batched pass"]
    assert {r["m"] for r in batched} == {4} and {r["param"] for r in batched} == set(rc.RNN.NAMES)
    assert max(r["max"] for r in batched) < 1e-10
    shown = batched_paragraph(tmp_path / "01.ipynb")
    assert "4 streams of 25 characters side by side (the first 4 of the run's 6)" in shown
    assert "at m = 4:" in shown and "machine precision" in shown and "float32" in shown


def test_the_gradient_check_adds_pytorch_autograd_and_times_the_implementations(tmp_path):
    pytest.importorskip("torch", reason="PyTorch is not installed (make torch installs it)")
    import torch
    params = {"check_torch": True, "check_m": [10], "m": 20, "run_dir": str(tmp_path / "run")}
    pm.execute_notebook(str(NB / "01_gradient_check.ipynb"), str(tmp_path / "01.ipynb"), parameters=params,
                        cwd=str(NB), kernel_name="python3", progress_bar=False)
    check = json.loads((tmp_path / "run" / "grad_check.json").read_text())
    auto = [r for r in check["results"] if r["method"] == "autograd (PyTorch)"]
    assert check["torch"] == torch.__version__ and {r["param"] for r in auto} == set(rc.RNN.NAMES)
    assert max(r["max"] for r in auto) < 1e-10
    speed = json.loads((tmp_path / "run" / "speed.json").read_text())
    assert set(speed["pass"]) == {"rnn_core", "textbook", "PyTorch autograd"} and speed["m"] == 20
    assert set(speed["update"]) == {"rnn_core", "PyTorch autograd"}
    said = "".join(o.get("data", {}).get("text/markdown", "") for c in
                   nbformat.read(tmp_path / "01.ipynb", as_version=4).cells for o in c.get("outputs", []))
    assert f"PyTorch {torch.__version__}'s automatic differentiation of the same loss" in said
    ratio = speed["pass"]["textbook"]["median_ms"] / speed["pass"]["rnn_core"]["median_ms"]
    assert f"{ratio:.1f} times faster than the textbook version" in said


def test_a_timed_function_on_its_own_clock_counts_the_seconds_it_returns():
    """The speed section times an update by the training loop's own clock, which leaves out
    train()'s set-up: a function named in own_clock is counted at what it returns, the others
    at their wall time; they take turns, each called once a round."""
    import time
    from workbook import timing
    calls = []

    def slow_setup():
        calls.append("own")
        time.sleep(0.02)                 # set-up, not counted
        return 0.001                     # what its own clock measured

    def plain():
        calls.append("wall")
        time.sleep(0.01)
        return 123.0                     # a result, not a time
    got = timing.interleaved_times({"own": slow_setup, "wall": plain}, rounds=3, budget=60, own_clock={"own"})
    assert got["own"] == [0.001] * 3 and all(0.01 <= t < 1 for t in got["wall"])
    assert calls == ["own", "wall"] * 3


def test_characters_outside_the_pdf_font_are_boxed_and_invisible_ones_left_out():
    """An emoji is drawn where Symbola is installed (make setup), else boxed like a CJK character
    (DejaVu Sans Mono has none); BEL and ESC are boxed; a joiner and a variation selector have no
    glyph and are left out. Each is counted in the box's note."""
    emoji = bool(show.system_font(show.EMOJI_FONT))
    safe, changed = show.for_pdf("win \U0001F600 café ¶ \u4e2d\u200d\ufe0f\x07\x1b")
    assert safe == "win " + ("\U0001F600" if emoji else "□") + " café ¶ □□□"
    assert changed == {"invisible": 2, "control": 2, "missing": 1 + (not emoji)}
    latex = show.Text("so \u4e2d good\x07\u200d")._repr_mimebundle_()["text/latex"]
    assert "so □ good□\n" in latex
    assert ("In this box: 1 character that no font here draws and 1 control character, as □; 1 invisible character "
            "(joiners, variation selectors, skin tones) left out.") in latex


def test_spreads_and_differences_keep_their_digits_in_the_comparison():
    assert [show.fmt_small(x) for x in (0.0123, 0.00034, 0.0, 2.5)] == ["0.012", "0.00034", "0", "2.500"]
    runs = [{"per_char": np.array([2.0 + d])} for d in (0.0001, 0.0003, 0.0002)]
    text = compare.compare_summary({"a": runs, "b": [{"per_char": np.array([2.1])}, {"per_char": np.array([2.1003])}]})
    assert "standard deviation 0.00010, range 0.00020" in text and "0.000," not in text


def test_a_legend_below_the_axes_is_crossed_by_no_line():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.plot([0, 1], [0, 1], label="a curve")
    ax.axvline(0.9, ls="--", label="epoch boundary")    # from the bottom of the axes to the top
    ax.set_xlabel("update")
    show.legend_below(ax)
    fig.tight_layout()
    fig.canvas.draw()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    label = ax.xaxis.label.get_window_extent()
    assert legend.y1 <= axes.y0 and not legend.overlaps(label) and legend.y0 >= 0
    plt.close(fig)


# ----------------------------------------------------------------------------- presets, batch, resume

def test_a_preset_sets_the_run_and_variables_override_it(tmp_path):
    import yaml
    preset = yaml.safe_load((ROOT / "params" / "adam2025.yaml").read_text())
    pm.execute_notebook(str(NB / "02_train.ipynb"), str(tmp_path / "02.ipynb"),
                        parameters={**preset, "m": 8, "n_updates": 30, "run_dir": str(tmp_path)},
                        cwd=str(NB), kernel_name="python3", progress_bar=False)
    p = json.loads((tmp_path / "run.json").read_text())["params"]
    assert (p["preset"], p["optimizer"], p["eta"], p["loss_reduction"], p["init"], p["m"]) == \
        ("adam2025", "adam", 0.001, "mean", "xavier", 8)


def test_a_preset_named_but_not_applied_stops_the_run(tmp_path):
    """In Jupyter, preset = "adam2025" alone changed only the label; now it stops, naming what disagrees."""
    import yaml
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(NB / "02_train.ipynb"), str(tmp_path / "02.ipynb"),
                            parameters={"preset": "adam2025", "m": 8, "n_updates": 30, "run_dir": str(tmp_path)},
                            cwd=str(NB), kernel_name="python3", progress_bar=False)
    assert err.value.ename == "RNNError" and "\n" not in err.value.evalue
    assert err.value.evalue.startswith(
        "preset 'adam2025' sets eta=0.001, optimizer='adam', loss_reduction='mean', init='xavier', check_m=[10, 100], "
        "sample_every=1000 but this run has eta=0.1, optimizer='adagrad', loss_reduction='sum', init='normal', "
        "check_m=[5, 100], sample_every=10000: apply it (make report PRESET=adam2025")
    assert not (tmp_path / "history.csv").exists()
    # applied, with one value kept against it on purpose: the run trains, and its table says so
    preset = yaml.safe_load((ROOT / "params" / "adam2025.yaml").read_text())
    pm.execute_notebook(str(NB / "02_train.ipynb"), str(tmp_path / "02.ipynb"),
                        parameters={**preset, "eta": 0.1, "overrides": ["eta"], "m": 8, "n_updates": 30,
                                    "run_dir": str(tmp_path)},
                        cwd=str(NB), kernel_name="python3", progress_bar=False)
    p = json.loads((tmp_path / "run.json").read_text())["params"]
    assert (p["preset"], p["optimizer"], p["eta"], p["init"]) == ("adam2025", "adam", 0.1, "xavier")
    said = "".join(o.get("data", {}).get("text/markdown", "") for c in
                   nbformat.read(tmp_path / "02.ipynb", as_version=4).cells for o in c.get("outputs", []))
    assert "adam2025; m = 8 (the preset has 100); eta = 0.1 (the preset has 0.001); seed 1" in said


BATCH = ["PRESET=sigma0.1", "N_UPDATES=200", "P=m=8 check_m=[3] sample_every=100 val_every=100 passage_length=300 speed=False"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    reports = tmp_path_factory.mktemp("batch")
    proc = make("batch", "SEEDS=1 2 x", *BATCH, reports=reports, check=False)
    return reports, proc


def test_batch_trains_each_seed_and_compares_them(batch):
    reports, proc = batch
    runs = sorted(d for d in reports.iterdir() if d.name.startswith("sigma0.1-seed-"))
    names = [d.name for d in runs]
    assert any(n.startswith("sigma0.1-seed-1-") for n in names) and any(n.startswith("sigma0.1-seed-2-") for n in names)
    ok = [d for d in runs if not d.name.endswith(".failed")]
    infos = [json.loads((d / "run.json").read_text()) for d in ok]
    assert [i["params"]["sigma"] for i in infos] == [0.1, 0.1]             # the preset's value
    assert [i["params"]["seed"] for i in infos] == [1, 2]
    h1, h2 = ((d / "history.csv").read_text() for d in ok)
    assert h1 != h2
    pdf = next(reports.glob("batch-sigma0.1*/comparison.pdf"))
    text = pdf_text(pdf)
    assert "seed 1" in text and "seed 2" in text
    assert "failed" in text and "seed must be a whole number" in text      # the bad seed, reported
    assert "Check: every run used the same corpus" in text


def test_batch_again_trains_nothing(batch):
    reports, _ = batch
    ok = [d for d in reports.iterdir() if d.name.startswith("sigma0.1-seed-") and not d.name.endswith(".failed")]
    before = {d: (d / "history.csv").stat().st_mtime_ns for d in ok}
    proc = make("batch", "SEEDS=1 2", *BATCH, reports=reports)
    assert "run " not in proc.stdout, proc.stdout
    assert {d: (d / "history.csv").stat().st_mtime_ns for d in ok} == before


def test_resume_through_make_extends_the_run_exactly(quick_report):
    run, _ = quick_report
    before = (run / "history.csv").read_text().splitlines()
    first = json.loads((run / "run.json").read_text())["wall_seconds"]
    lighter = "P=speed=False check_m=[5] check_torch=False"   # the report's other sections are tested above
    make("report", "N_UPDATES=4000", "SAMPLE_EVERY=1000", "RUN=quick", "RESUME=1", lighter, reports=run.parent)
    info = json.loads((run / "run.json").read_text())
    assert info["resumed_from"] == 3000 and info["updates"] == 4000
    after = (run / "history.csv").read_text().splitlines()
    assert len(after) == 4001 and after[:3001] == before
    # the time is the whole run's: the first session's and this one's
    assert info["wall_seconds"] > first and info["updates_per_second"] == pytest.approx(4000 / info["wall_seconds"])
    text = " ".join(pdf_text(run / "report.pdf").split())
    assert re.search(r"[\d.]+ s in all \([\d,]+ updates/s\), [\d.]+ s of it in this session", text)
    again = make("report", "N_UPDATES=4000", "SAMPLE_EVERY=1000", "RUN=quick", "RESUME=1", lighter, reports=run.parent)
    assert "is up to date: nothing to do" in again.stdout and "02_train" not in again.stdout


def test_a_resume_with_nothing_left_to_train_says_so(tiny_run, tmp_path):
    """02 resumed from a checkpoint at n_updates (a run that failed after training, or whose
    training code changed): nothing to train, said so, and no speed of 0 updates/s."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    names = set(pm.inspect_notebook(str(NB / "02_train.ipynb")))
    pm.execute_notebook(str(NB / "02_train.ipynb"), str(tmp_path / "02.ipynb"), cwd=str(NB), kernel_name="python3",
                        parameters={**{k: v for k, v in TINY.items() if k in names}, "run_dir": str(run), "resume": True},
                        progress_bar=False)
    said = " ".join("".join(o.get("data", {}).get("text/markdown", "") for c in
                            nbformat.read(tmp_path / "02.ipynb", as_version=4).cells for o in c.get("outputs", [])).split())
    assert "where the run had already reached n_updates: nothing was left to train" in said
    assert " 0 updates/s" not in said


def test_data_path_with_spaces_and_non_ascii_works_through_make(tmp_path):
    book = tmp_path / "my book é.txt"
    book.write_text(rc.load_text(ROOT / "data" / "shakespeare.txt")[:200_000], encoding="utf-8")
    proc = make("report", f"DATA={book}", "N_UPDATES=200",
                "P=m=8 check_m=[3] sample_every=100 val_every=100 passage_length=200 temperatures=[1.0] top_ps=[] speed=False "
                "check_torch=False",
                reports=tmp_path / "reports")
    run = next((tmp_path / "reports").glob("classic-my_book_-seed-1-*"))
    assert f"report: {run}/report.pdf" in proc.stdout
    assert json.loads((run / "run.json").read_text())["corpus"]["name"] == "my book é.txt"
    assert "my book é.txt" in pdf_text(run / "report.pdf")


def test_a_tornado_error_at_kernel_shutdown_stays_out_of_the_terminal(tmp_path):
    """The scripts' kernel arguments silence tornado's logger in the kernel: a traceback it
    logs while the kernel shuts down (seen once after a one-line error) must not reach stderr."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
        'import atexit, logging\n'
        'atexit.register(lambda: logging.getLogger("tornado.general").error("ZMQ stream closed under a callback"))\n'
        'raise ValueError("the notebook failed")')]
    nbformat.write(nb, tmp_path / "t.ipynb")
    script = ("import sys, papermill as pm\nfrom workbook.render import KERNEL_ARGS\n"
              "args = KERNEL_ARGS if sys.argv[1] == 'ours' else ['--IPKernelApp.log_level=CRITICAL']\n"
              "try:\n    pm.execute_notebook('t.ipynb', 'o.ipynb', kernel_name='python3', progress_bar=False,\n"
              "                        log_output=False, extra_arguments=args)\n"
              "except pm.PapermillExecutionError:\n    print('error: the notebook failed', file=sys.stderr)\n")
    stderr = {}
    for kind in ("ours", "plain"):
        proc = subprocess.run([sys.executable, "-c", script, kind], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        stderr[kind] = proc.stderr
    assert "ZMQ stream closed" in stderr["plain"]          # the leak is real without the arguments
    assert stderr["ours"].strip() == "error: the notebook failed"


def test_an_author_with_latex_characters_is_printed_as_typed(tiny_run, tmp_path):
    """The name on the title page is text: LaTeX's special characters and commands appear as typed."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    author = "Smith & Jones_50% $5 #1 ~a ^b {c} O'Brien \\input{/etc/hostname}"
    pdf = render.render(run, code="", author=author)["pdf"]
    first_page = subprocess.run(["pdftotext", "-l", "1", "-enc", "UTF-8", str(pdf), "-"], capture_output=True,
                                text=True, check=True).stdout
    assert author in " ".join(first_page.split())


def test_code_all_prints_the_packages_modules_after_the_assignment(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    text = pdf_text(render.render(run, code="all", author="A")["pdf"])
    appendix = text.split("Appendix: the code")[1]
    assert "def train(" in appendix                                  # rnn_core.py, then
    for module, line in (("workbook/training.py", "class RunReader("), ("workbook/batched.py",
                                                                          "def forward_backward_batch(")):
        assert module in appendix and line in appendix.split(module)[-1], module
    assert appendix.index("def train(") < appendix.index("class RunReader(")
    assert "import numpy as np" in text.split("Appendix: the code")[0]   # and the code cells
