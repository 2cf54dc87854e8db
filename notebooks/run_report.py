"""Run the workbook's notebooks headless with papermill and render the report PDF.

    python notebooks/run_report.py --run-dir reports/seed-1 -p seed 1 -p n_updates 100000 [--code]

The run's folder is built in place; an earlier run in the same folder is moved aside first
and comes back untouched if anything fails. A failed run is kept as <run>.failed with the
executed notebook that holds the error, and the problem is printed in one line.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import functools
import os
import shutil
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS = ["01_gradient_check", "02_train", "03_loss_plot", "04_synthesis"]
REPORT_ORDER = ["02_train", "01_gradient_check", "03_loss_plot", "04_synthesis"]
PATH_PARAMS = ("data_path", "run_dir")


class StepFailed(Exception):
    def __init__(self, message: str, notebook: Path | None = None):
        super().__init__(message)
        self.notebook = notebook


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


@functools.lru_cache(maxsize=None)   # read once per run, by check_names and by execute
def declared(step: str) -> frozenset:
    """The parameter names a notebook's parameters cell declares."""
    import papermill as pm
    return frozenset(pm.inspect_notebook(str(HERE / f"{step}.ipynb")))


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
        raise StepFailed(error_of(out), out) from None


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
        raise StepFailed(f"LaTeX could not render the report; see {run_dir / f'{stem}.log'}") from None
    path = run_dir / f"{stem}.pdf"
    path.write_bytes(pdf)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="the run's folder, e.g. reports/seed-1")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a notebook parameter")
    ap.add_argument("--code", action="store_true", help="keep the code cells in the PDF")
    ap.add_argument("--no-pdf", action="store_true", help="run the notebooks only")
    ap.add_argument("--author", default=os.environ.get("AUTHOR", "DD2424 workbook"))
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--preset", help="a recipe from params/<PRESET>.yaml; -p values override it")
    ap.add_argument("--resume", action="store_true",
                    help="continue the run from its checkpoint (in the run folder or <run>.failed)")
    args = ap.parse_args(argv)

    run_dir = Path(args.run_dir).resolve()
    try:
        preset = preset_params(args.preset)
        if isinstance(preset.get("data_path"), str):        # written relative to notebooks/
            preset["data_path"] = str((HERE / preset["data_path"]).resolve())
        params = {**preset, **{name: literal(value) for name, value in args.p}}
        # what the user gave explicitly beside a preset is an override on purpose, not a preset unapplied
        params["overrides"] = sorted({name for name, _ in args.p} & set(preset) - {"preset", "data_path"})
    except StepFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.resume:
        params["resume"] = True
    for name in PATH_PARAMS:
        if isinstance(params.get(name), str):
            params[name] = str(Path(params[name]).resolve())   # notebooks run with cwd notebooks/
    params["run_dir"] = str(run_dir)
    os.environ.pop("MPLBACKEND", None)      # Agg here would drop every inline plot from the notebooks

    previous = run_dir.with_name(f".{run_dir.name}.previous")
    failed = run_dir.with_name(f"{run_dir.name}.failed")
    checkpoint = None
    if args.resume:
        found = [d / "checkpoint.npz" for d in (run_dir, failed) if (d / "checkpoint.npz").is_file()]
        if not found:
            print(f"error: no checkpoint to resume from in {run_dir} or {failed}; "
                  f"run once without RESUME=1 first", file=sys.stderr)
            return 1
        checkpoint = max(found, key=lambda p: p.stat().st_mtime)   # the latest state of the run
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # make's kill: clean up as for Ctrl-C
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(previous, ignore_errors=True)
        if run_dir.exists():
            run_dir.rename(previous)
        run_dir.mkdir()
        if checkpoint is not None:
            source = previous / "checkpoint.npz" if checkpoint.parent == run_dir else checkpoint
            shutil.copy2(source, run_dir / "checkpoint.npz")
            print(f"resuming from {checkpoint}", flush=True)
    except OSError as err:
        print(f"error: cannot write the run folder {run_dir}: {err.strerror}; "
              f"make {run_dir.parent} writable or choose another REPORTS folder", file=sys.stderr)
        return 1

    start = time.perf_counter()
    print(f"run {run_dir.relative_to(Path.cwd()) if run_dir.is_relative_to(Path.cwd()) else run_dir}", flush=True)
    try:
        check_names(params)
        for step in STEPS:
            execute(step, run_dir, params, args.quiet)
        pdf = None if args.no_pdf else render(run_dir, args.code, args.author)
    except (StepFailed, KeyboardInterrupt) as err:
        message = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err)
        shutil.rmtree(failed, ignore_errors=True)
        run_dir.rename(failed)
        if previous.exists():
            previous.rename(run_dir)
        where = getattr(err, "notebook", None)
        print(f"error: {message}", file=sys.stderr)
        if where is not None:
            print(f"  the executed notebook with the error: {failed / where.name}", file=sys.stderr)
        if run_dir.exists():
            print(f"  the earlier run in {run_dir} is untouched", file=sys.stderr)
        return 130 if message == "interrupted" else 1
    shutil.rmtree(previous, ignore_errors=True)
    shutil.rmtree(failed, ignore_errors=True)
    done = f"done in {time.perf_counter() - start:.0f} s"
    print(f"{done}: {pdf}" if pdf else f"{done}: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
