"""Running the notebooks headless with papermill, and rendering the report PDF.

The steps of one run, for the planner (which decides what to run, where, and what to keep
when it fails): execute() runs a notebook into a run folder, render() assembles the executed
notebooks and the code into report.pdf. A failure is a StepFailed with one line.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

from workbook import params
from workbook.runs import ROOT, NOTEBOOKS, modules_used

TEMPLATE = Path(__file__).resolve().parent / "pdf" / "workbook.tex.j2"
REPORT_ORDER = [params.TRAIN, params.GRADIENT_CHECK, params.LOSS_PLOT, params.SYNTHESIS]
# How each notebook's kernel starts: quiet, and with tornado's logger silenced, whose
# shutdown-time tracebacks (a ZMQ stream closed under a callback) would follow the one-line error.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL",
               '--IPKernelApp.exec_lines=["import logging", "logging.getLogger(\'tornado\').setLevel(logging.CRITICAL)"]']


class StepFailed(Exception):
    """One line; notebook and log name the files in the run folder that tell more (the folder
    itself may move before the message is printed)."""

    def __init__(self, message: str, notebook: str | None = None, log: str | None = None):
        super().__init__(message)
        self.message, self.notebook, self.log = message, notebook, log

    def text(self, folder: Path) -> str:
        return self.message + (f"; see {folder / self.log}" if self.log else "")


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


def execute(step: str, run_dir: Path, values: dict, quiet: bool) -> Path:
    """Run notebooks/<step>.ipynb with the values its cell declares into run_dir; its path."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    out = run_dir / f"{step}.ipynb"
    if not quiet:
        print(f"  {step} ...", flush=True)
    names = {p.name for p in params.of_notebook(step)}
    try:
        pm.execute_notebook(str(NOTEBOOKS / f"{step}.ipynb"), str(out),
                            parameters={k: v for k, v in values.items() if k in names}, cwd=str(NOTEBOOKS),
                            kernel_name="python3", progress_bar=False, log_output=False,
                            stderr_file=None if quiet else sys.stderr,   # the training bar, live
                            extra_arguments=KERNEL_ARGS)
    except PapermillExecutionError:
        raise StepFailed(notebook_error(out) or "the notebook failed", out.name) from None
    except (OSError, KeyboardInterrupt):
        raise
    except Exception as err:  # noqa: BLE001 - nbclient's DeadKernelError, a kernel that never started, ...
        what = type(err).__name__
        if what == "DeadKernelError" or "died" in str(err).lower():
            raise StepFailed(f"the Python kernel running {step} died (killed, or out of memory); "
                             f"the notebook up to there is kept", out.name if out.exists() else None) from None
        raise StepFailed(f"{step} could not run: {what}: {str(err).splitlines()[0] if str(err) else ''}") from None
    return out


def what_it_does(path: Path) -> str:
    """What a module does: the first clause of its docstring (up to its first colon or full stop)."""
    import ast
    import re
    doc = " ".join((ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").split())
    return re.split(r":\s|\.(?:\s|$)", doc, maxsplit=1)[0]


def appendix(code: str) -> list:
    """The code appendix's cells: rnn_core.py in full, then the package's modules that the run
    used, each named with its line count and what it does (printed in full with code "all")."""
    import nbformat

    def verbatim(path):
        return f"\\VerbatimInput[fontsize=\\scriptsize, numbers=left, numbersep=4pt]{{{path.as_posix()}}}\n"

    def lines(path):
        return len(path.read_text(encoding="utf-8").splitlines())

    core = ROOT / "rnn_core.py"
    modules = [ROOT / m for m in modules_used(params.RUN_NOTEBOOKS)]
    cells = [nbformat.v4.new_raw_cell(
        "\\clearpage\n\\section{Appendix: the code}\n"
        f"\\texttt{{rnn\\_core.py}} ({lines(core)} lines) is the assignment: text and vocabulary, parameters, the "
        "forward and backward pass of one chunk, the gradient checks, the optimisers, sampling and the training "
        "loop. Every notebook imports it; it is printed here in full.\n\n" + verbatim(core),
        metadata={"raw_mimetype": "text/latex"})]
    table = "\n".join(f"| `{m.relative_to(ROOT)}` | {lines(m)} | {what_it_does(m).replace('|', '/')} |" for m in modules)
    cells.append(nbformat.v4.new_markdown_cell(
        "What goes beyond the assignment is in the package `workbook/`, which builds on `rnn_core.py` "
        "and is never imported by it. The run used these modules of it"
        + (", printed after the table" if code == "all" else " (`make report CODE=all` prints them)") + ":\n\n"
        # the dashes set the columns' widths (pandoc, for tables wider than a line)
        "| module | lines | what it does |\n|:------------------|------:|:------------------------------------------------|\n"
        + table))
    if code == "all":
        cells += [nbformat.v4.new_raw_cell(f"\\subsection*{{{m.relative_to(ROOT).as_posix().replace('_', chr(92) + '_')}}}\n"
                                           + verbatim(m), metadata={"raw_mimetype": "text/latex"}) for m in modules]
    return cells


def assemble(run_dir: Path, code: str, author: str):
    """One notebook for the report: the executed notebooks in report order, then the code."""
    import nbformat
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    report = nbformat.v4.new_notebook()
    report.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "title": f"DD2424 Assignment 4: a character-level RNN on {info['corpus']['name']}",
        "authors": [{"name": author}],
        "date": datetime.date.today().strftime("%-d %B %Y"),
    }
    for step in REPORT_ORDER:
        nb = nbformat.read(run_dir / f"{step}.ipynb", as_version=4)
        for cell in nb.cells:
            tags = set(cell.metadata.get("tags", []))
            if tags & {"parameters", "injected-parameters"}:
                continue
            if "progress" in tags and not code:
                continue
            report.cells.append(cell)
    report.cells += appendix(code)
    return report


def render(run_dir: Path, code: str, author: str, out_dir: Path | None = None) -> Path:
    """The run's report.ipynb and report.pdf, rendered with our template into out_dir (the run's
    folder unless given); returns the PDF's path. code: "" shows no code cells, "cells" shows
    them, "all" also prints the package's modules."""
    return to_pdf(assemble(run_dir, code, author), out_dir or run_dir, "report", bool(code))


def to_pdf(report, run_dir: Path, stem: str, code: bool = False) -> Path:
    """Write the notebook `report` as <stem>.ipynb and render <stem>.pdf in run_dir."""
    import nbformat
    from nbconvert import PDFExporter
    from traitlets.config import Config
    nbformat.write(report, run_dir / f"{stem}.ipynb")
    c = Config()
    c.TemplateExporter.exclude_input = not code
    c.TemplateExporter.exclude_input_prompt = True
    c.TemplateExporter.exclude_output_prompt = True
    c.CoalesceStreamsPreprocessor.enabled = True
    c.PDFExporter.latex_count = 2
    c.PDFExporter.raw_mimetypes = ["text/latex"]   # its default is its own, application/pdf
    exporter = PDFExporter(config=c, template_file=str(TEMPLATE))
    try:
        pdf, _ = exporter.from_notebook_node(report, resources={"metadata": {"path": str(run_dir)}})
    except Exception as err:  # nbconvert raises LatexFailed with the whole log
        log = getattr(err, "output", "") or str(err)
        (run_dir / f"{stem}.log").write_text(log, encoding="utf-8", errors="replace")
        raise StepFailed("LaTeX could not render the report", log=f"{stem}.log") from None
    path, tmp = run_dir / f"{stem}.pdf", run_dir / f".{stem}.pdf.tmp"
    try:                                   # whole or not at all: an old PDF stays until a new one is written
        tmp.write_bytes(pdf)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
