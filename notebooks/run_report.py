"""Run the workbook's notebooks headless with papermill, and render the report PDF.

The steps of one run, for notebooks/planner.py (which decides what to run, where, and what
to keep when it fails): execute() runs a notebook into a run folder, render() assembles the
executed notebooks and the code into report.pdf. A failure is a StepFailed with one line.
"""
from __future__ import annotations

import ast
import datetime
import functools
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS = ["01_gradient_check", "02_train", "03_loss_plot", "04_synthesis"]
REPORT_ORDER = ["02_train", "01_gradient_check", "03_loss_plot", "04_synthesis"]


class StepFailed(Exception):
    """One line; notebook and log name the files in the run folder that tell more (the folder
    itself may move before the message is printed)."""

    def __init__(self, message: str, notebook: str | None = None, log: str | None = None):
        super().__init__(message)
        self.message, self.notebook, self.log = message, notebook, log

    def text(self, folder: Path) -> str:
        return self.message + (f"; see {folder / self.log}" if self.log else "")


def literal(text: str):
    """A parameter value as papermill's CLI reads it: a number, bool or list when it parses as one."""
    try:
        value = ast.literal_eval(text)
        if isinstance(value, (int, float, bool, list)):
            return value
    except (ValueError, SyntaxError):
        pass
    return text


def error_of(notebook: Path) -> str:
    """The one-line message of the first error in an executed notebook."""
    import workbook
    return workbook.notebook_error(notebook) or "the notebook failed"


@functools.lru_cache(maxsize=None)   # read once per run, by check_names, defaults and execute
def _parameters(step: str) -> dict:
    import papermill as pm
    return pm.inspect_notebook(str(HERE / f"{step}.ipynb"))


def declared(step: str) -> frozenset:
    """The parameter names a notebook's parameters cell declares."""
    return frozenset(_parameters(step))


def defaults() -> dict:
    """Every parameter's value in the notebooks' parameters cells (the same in each notebook
    that declares it; tests/test_workbook.py checks that)."""
    values = {}
    for step in STEPS:
        for name, p in _parameters(step).items():
            values.setdefault(name, ast.literal_eval(p["default"]))
    return values


def preset_params(name: str | None) -> dict:
    """The values of params/<name>.yaml (papermill's parameter-file format)."""
    if not name:
        return {}
    import workbook
    try:
        return workbook.preset_values(name)
    except workbook.rc.RNNError as err:
        raise StepFailed(str(err)) from None


def check_names(params: dict) -> None:
    known = set().union(*(declared(step) for step in STEPS))
    unknown = sorted(set(params) - known)
    if unknown:
        raise StepFailed(f"unknown parameter {', '.join(unknown)}; the notebooks take: {', '.join(sorted(known))}")


def execute(step: str, run_dir: Path, params: dict, quiet: bool) -> None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    import workbook
    out = run_dir / f"{step}.ipynb"
    if not quiet:
        print(f"  {step} ...", flush=True)
    names = declared(step)
    try:
        pm.execute_notebook(str(HERE / f"{step}.ipynb"), str(out),
                            parameters={k: v for k, v in params.items() if k in names}, cwd=str(HERE),
                            kernel_name="python3", progress_bar=False, log_output=False,
                            stderr_file=None if quiet else sys.stderr,   # the training bar, live
                            extra_arguments=workbook.KERNEL_ARGS)
    except PapermillExecutionError:
        raise StepFailed(error_of(out), out.name) from None
    except (OSError, KeyboardInterrupt):
        raise
    except Exception as err:  # noqa: BLE001 - nbclient's DeadKernelError, a kernel that never started, ...
        what = type(err).__name__
        if what == "DeadKernelError" or "died" in str(err).lower():
            raise StepFailed(f"the Python kernel running {step} died (killed, or out of memory); "
                             f"the notebook up to there is kept", out.name if out.exists() else None) from None
        raise StepFailed(f"{step} could not run: {what}: {str(err).splitlines()[0] if str(err) else ''}") from None


def assemble(run_dir: Path, code: bool, author: str):
    """One notebook for the report: the executed notebooks in report order, then the code."""
    import json
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
    source = ROOT / "rnn_core.py"
    lines = source.read_text(encoding="utf-8").splitlines()
    beyond = next(i for i, line in enumerate(lines, 1) if line.startswith("# Beyond the assignment"))
    report.cells.append(nbformat.v4.new_raw_cell(
        "\\clearpage\n\\section{Appendix: the code}\n"
        "The engine every notebook imports, \\texttt{rnn\\_core.py}, in full. "
        f"Lines 1--{beyond - 2} follow the assignment: text and vocabulary, parameters, the forward and "
        "backward pass of one chunk, the gradient checks, the optimisers, sampling and the training loop. "
        f"From line {beyond - 1} on comes what goes beyond it: the batched pass (mini-batches, shuffled "
        "chunks), tweets, validation and files. The notebooks themselves are in \\texttt{notebooks/}.\n\n"
        f"\\VerbatimInput[fontsize=\\scriptsize, numbers=left, numbersep=4pt]{{{source.as_posix()}}}\n",
        metadata={"raw_mimetype": "text/latex"}))
    return report


def render(run_dir: Path, code: bool, author: str) -> Path:
    """report.ipynb -> report.pdf with our template; returns the PDF's path."""
    return to_pdf(assemble(run_dir, code, author), run_dir, "report", code)


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
    exporter = PDFExporter(config=c, template_file=str(HERE / "pdf" / "workbook.tex.j2"))
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
