"""Running the notebooks headless with papermill, and rendering the report: report.html always,
report.pdf where TeX is installed.

The steps of one run, for the planner (which decides what to run, where, and what to keep
when it fails): execute() runs a notebook into a run folder, render() assembles the executed
notebooks and the code into the report. A failure is a StepFailed with one line. What the PDF
needs from the system (TeX, pandoc, fonts) is declared here once: the planner's `tex` step
installs it, or says in one line how to.
"""
from __future__ import annotations

import contextlib
import datetime
import html
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from workbook import params
from workbook.runs import ROOT, NOTEBOOKS, modules_used
from workbook import show
from workbook.show import EMOJI, EMOJI_FONT, MONO_FONT

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEX_TEMPLATE, HTML_TEMPLATE = TEMPLATES / "workbook.tex.j2", TEMPLATES / "workbook.html.j2"
# What the PDF needs: programs, TeX files the template loads beyond TeX Live's xetex set, and
# the fonts it names (Symbola draws emoji; without it they are placeholders). Debian's packages
# for all of them, and BasicTeX's (macOS) for the TeX part; pdftotext (poppler) is for checking.
TEX_PROGRAMS = ("xelatex", "pandoc", "pdftotext")
TEX_FILES = ("fvextra.sty", "needspace.sty")
DEBIAN_PACKAGES = ("texlive-xetex", "texlive-fonts-recommended", "texlive-plain-generic", "pandoc", "poppler-utils",
                   "fonts-dejavu-core", "fonts-symbola")
TLMGR_PACKAGES = ("adjustbox", "collectbox", "tcolorbox", "pdfcol", "environ", "trimspaces", "titling", "enumitem",
                  "ucs", "eurosym", "ulem", "upquote", "soul", "fvextra", "lineno", "xstring", "needspace", "framed",
                  "greek-fontenc", "rsfs", "parskip", "caption", "float", "unicode-math", "booktabs", "dejavu",
                  "collection-fontsrecommended")
# The report's parts, each made of the notebooks' cells of that part (the tag "beyond" or
# "conclusion"; the rest are the assignment's deliverables), in these notebooks' order.
PARTS = (("", (params.TRAIN, params.GRADIENT_CHECK, params.LOSS_PLOT, params.SYNTHESIS)),
         ("beyond", (params.LOSS_PLOT, params.SYNTHESIS, params.GRADIENT_CHECK)),
         ("conclusion", (params.SYNTHESIS,)))
BEYOND = ("# Beyond the assignment\n\nWhat the workbook measures besides the assignment's deliverables: the "
          "loss on text the model never trained on, other ways to sample, and the speed of the code.")
NOTES = re.compile(r"""show\.notes\(notes, "([^"]+)"\)""")      # a notebook's notes cell, and its section
# How each notebook's kernel starts: quiet, and with tornado's logger silenced, whose
# shutdown-time tracebacks (a ZMQ stream closed under a callback) would follow the one-line error.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL",
               '--IPKernelApp.exec_lines=["import logging", "logging.getLogger(\'tornado\').setLevel(logging.CRITICAL)"]']


def tex_missing(optional: bool = False) -> list:
    """What the PDF needs and this machine lacks, by the names a user looks up; [] when the PDF
    can be made. optional: the emoji font too, which the PDF can do without."""
    missing = [p for p in TEX_PROGRAMS if not shutil.which(p)]
    for name in TEX_FILES:
        try:
            found = subprocess.run(["kpsewhich", name], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            found = False
        missing += [] if found else [name]
    missing += [f for f in (MONO_FONT,) + ((EMOJI_FONT,) if optional else ()) if not show.system_font(f)]
    return missing


def apt_command() -> str:
    return ("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            + " ".join(DEBIAN_PACKAGES))


def how_to_add_pdf() -> str:
    """One line: the commands that install what the PDF needs on this system, then make again."""
    if platform.system() == "Darwin":
        return ("brew install pandoc poppler && brew install --cask basictex, then sudo tlmgr update --self && "
                f"sudo tlmgr install {' '.join(TLMGR_PACKAGES)}, then make report again")
    if shutil.which("apt-get"):
        return f"sudo sh -c '{apt_command()}', then make report again"
    return (f"install TeX Live with XeLaTeX, pandoc, poppler and the fonts {MONO_FONT} and {EMOJI_FONT}, then "
            "make report again")


def no_pdf(missing: list) -> str:
    """The one line that says why there is no PDF, and how to add it."""
    return f"no PDF: this machine lacks {', '.join(missing)}; to add it: {how_to_add_pdf()}"


def install_tex() -> bool:
    """Install what the PDF needs with apt-get, as root or through sudo without a password;
    whether it was possible (nothing is asked: a user without either is told how instead)."""
    if not shutil.which("apt-get"):
        return False
    if os.geteuid() == 0:
        command = ["sh", "-c", apt_command()]
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        command = ["sudo", "-n", "sh", "-c", apt_command()]
    else:
        return False
    print(f"installing TeX for the PDF (once, about 60 s): {' '.join(DEBIAN_PACKAGES)}", flush=True)
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        print(f"apt-get failed: {(done.stderr.strip().splitlines() or [''])[-1]}", file=sys.stderr)
    return done.returncode == 0


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


@contextlib.contextmanager
def one_kernel():
    """One Python kernel for a run's notebooks (started by the first that runs in it): numpy,
    matplotlib and the rest are imported once, not once a notebook. Each notebook after the first starts from an
    empty namespace (execute clears it), as in a kernel of its own. An asynchronous manager, as
    nbclient's own: with a blocking one, a kernel that dies is never noticed."""
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    km = AsyncKernelManager(kernel_name="python3")
    try:
        yield km
    finally:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)   # as execute's: nothing in it is left to save


def clear(km) -> None:
    """The kernel's namespace emptied (%reset -f); the modules it imported stay loaded."""
    from jupyter_core.utils import run_sync

    async def reset():
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            await kc.execute_interactive("%reset -f", timeout=60, output_hook=lambda msg: None)
        finally:
            kc.stop_channels()
    run_sync(reset)()


def execute(step: str, run_dir: Path, values: dict, quiet: bool, km=None) -> Path:
    """Run notebooks/<step>.ipynb with the values its cell declares into run_dir; its path. km: a
    kernel (one_kernel) to run it in, emptied afterwards; else one of its own."""
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
                            extra_arguments=KERNEL_ARGS, **({"km": km} if km is not None else {}),
                            shutdown_kernel="immediate")   # the notebook is saved and its files are closed:
                                                           # a kernel's graceful exit would only take time
        if km is not None:
            clear(km)
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

    def listing(path):    # the HTML copy's: the file in a <pre>
        return f"<pre>{html.escape(path.read_text(encoding='utf-8'))}</pre>"

    core = ROOT / "rnn_core.py"
    modules = [ROOT / m for m in modules_used(params.RUN_NOTEBOOKS)]
    said = ("is the assignment: text and vocabulary, parameters, the forward and backward pass of one chunk, the "
            "gradient checks, the optimisers, sampling and the training loop. Every notebook imports it; it is "
            "printed here in full.")
    cells = [nbformat.v4.new_raw_cell(f"\\clearpage\n\\section{{Appendix: the code}}\n\\texttt{{rnn\\_core.py}} "
                                      f"({lines(core)} lines) {said}\n\n" + verbatim(core),
                                      metadata={"raw_mimetype": "text/latex"}),
             nbformat.v4.new_raw_cell(f"<h1>Appendix: the code</h1>\n<p><code>rnn_core.py</code> ({lines(core)} lines) "
                                      f"{said}</p>\n" + listing(core), metadata={"raw_mimetype": "text/html"})]
    table = "\n".join(f"| `{m.relative_to(ROOT)}` | {lines(m)} | {what_it_does(m).replace('|', '/')} |" for m in modules)
    cells.append(nbformat.v4.new_markdown_cell(
        "What goes beyond the assignment is in the package `workbook/`, which builds on `rnn_core.py` "
        "and is never imported by it. The run used these modules of it"
        + (", printed after the table" if code == "all" else " (`make report CODE=all` prints them)") + ":\n\n"
        # the dashes set the columns' widths (pandoc, for tables wider than a line)
        "| module | lines | what it does |\n|:------------------|------:|:------------------------------------------------|\n"
        + table))
    if code == "all":
        for m in modules:
            name = m.relative_to(ROOT).as_posix()
            cells += [nbformat.v4.new_raw_cell(f"\\subsection*{{{name.replace('_', chr(92) + '_')}}}\n" + verbatim(m),
                                               metadata={"raw_mimetype": "text/latex"}),
                      nbformat.v4.new_raw_cell(f"<h3>{html.escape(name)}</h3>\n" + listing(m),
                                               metadata={"raw_mimetype": "text/html"})]
    return cells


def part_of(cell) -> str:
    tags = set(cell.get("metadata", {}).get("tags", []))
    return next((p for p, _ in PARTS if p and p in tags), "")


def notes_titles() -> list:
    """The sections the student's notes may name: the notebooks' notes cells, in the report's order."""
    found = []
    for part, steps in PARTS:
        for step in steps:
            cells = json.loads((NOTEBOOKS / f"{step}.ipynb").read_text(encoding="utf-8"))["cells"]
            found += [t for c in cells if c["cell_type"] == "code" and part_of(c) == part
                      for t in NOTES.findall("".join(c["source"]))]
    return found


def assemble(run_dir: Path, code: str, author: str, notes_file=None):
    """One notebook for the report: the executed notebooks' cells part by part (PARTS), the
    student's notes (notes_file, read now) where the notebooks' notes cells are, then the code."""
    import nbformat
    from workbook import notes
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    student = notes.read(notes_file, notes_titles()) if notes_file else {}
    report = nbformat.v4.new_notebook()
    report.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "title": f"DD2424 Assignment 4: a character-level "
                 f"{'LSTM' if info['params']['cell'] == 'lstm' else 'RNN'} on {info['corpus']['name']}",
        "authors": [{"name": author}],
        "date": datetime.date.today().strftime("%-d %B %Y"),
    }
    if student:
        report.cells.append(nbformat.v4.new_markdown_cell(
            "*Text beside a grey bar is the author's own; the rest was measured and written by the workbook from "
            "this run's files.*" + ("\n\n" + show.Notes(student[notes.OPENING])._repr_markdown_()
                                     if notes.OPENING in student else "")))
    for part, steps in PARTS:
        if part == "beyond":
            report.cells.append(nbformat.v4.new_markdown_cell(BEYOND))
        for step in steps:
            for cell in nbformat.read(run_dir / f"{step}.ipynb", as_version=4).cells:
                tags = set(cell.metadata.get("tags", []))
                if part_of(cell) != part or tags & {"parameters", "injected-parameters"} \
                        or "progress" in tags and not code:
                    continue
                title = NOTES.findall(cell.source) if cell.cell_type == "code" else []
                if title:                   # the notes as they are now, where the notebook shows them
                    if title[0] in student:
                        report.cells.append(nbformat.v4.new_markdown_cell(show.Notes(student[title[0]])._repr_markdown_()))
                    continue
                report.cells.append(cell)
    report.cells += appendix(code)
    return report


def render(run_dir: Path, code: str, author: str, out_dir: Path | None = None, notes_file=None) -> dict:
    """The run's report.ipynb, report.html and, where TeX is installed, report.pdf, rendered with
    our templates into out_dir (the run's folder unless given), with the student's notes from
    notes_file; returns {"html": path, "pdf": path or None}. code: "" shows no code cells, "cells"
    shows them, "all" also prints the package's modules."""
    return write_report(assemble(run_dir, code, author, notes_file), out_dir or run_dir, "report", bool(code))


def write_report(report, out_dir: Path, stem: str, code: bool = False) -> dict:
    """<stem>.ipynb, <stem>.html and, where TeX is installed, <stem>.pdf in out_dir, each
    written whole or not at all; {"html": path, "pdf": path or None}."""
    import nbformat
    nbformat.write(report, out_dir / f"{stem}.ipynb")
    page = to_html(report, code)
    write_whole(out_dir / f"{stem}.html", page.encode("utf-8"))
    pdf = to_pdf(report, out_dir, stem, code) if not tex_missing() else None
    return {"html": out_dir / f"{stem}.html", "pdf": pdf}


def write_whole(path: Path, data: bytes) -> None:
    """Whole or not at all: an old file stays until a new one is written."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def exporter_config(code: bool, exporter: str, raw: str):
    from traitlets.config import Config
    c = Config()
    c.TemplateExporter.exclude_input = not code
    c.TemplateExporter.exclude_input_prompt = True
    c.TemplateExporter.exclude_output_prompt = True
    c.CoalesceStreamsPreprocessor.enabled = True
    c[exporter].raw_mimetypes = [raw]     # the appendix has a raw cell for each format
    return c


def markdown_sources(report) -> list:
    """Where the report holds Markdown: [(set, source)], set(html) putting its HTML in place."""
    found = []
    for cell in report.cells:
        if cell.cell_type == "markdown":
            def put(h, cell=cell):
                cell.cell_type, cell.source = "raw", h
                cell.metadata["raw_mimetype"] = "text/html"
                cell.pop("attachments", None)
            found.append((put, cell.source))
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/markdown" in data and "text/html" not in data:
                def put(h, data=data):
                    data["text/html"] = h
                    del data["text/markdown"]
                found.append((put, data["text/markdown"]))
    return found


def to_html(report, code: bool = False) -> str:
    """The report as one self-contained HTML page: figures embedded, nothing fetched; the Markdown
    set by pandoc with its maths as MathML (without pandoc, nbconvert's own, maths as TeX)."""
    import copy
    from nbconvert import HTMLExporter
    report = copy.deepcopy(report)
    if shutil.which("pandoc"):
        places = markdown_sources(report)
        cut = f"wb-cut-{uuid.uuid4().hex}"     # a paragraph no report holds, between the pieces
        joined = f"\n\n<div class=\"{cut}\"></div>\n\n".join(src for _, src in places)
        done = subprocess.run(["pandoc", "--from=markdown-smart", "--to=html5", "--mathml"], input=joined,
                              capture_output=True, text=True, encoding="utf-8")
        pieces = re.split(f'<div class="{cut}">\\s*</div>', done.stdout)
        if done.returncode == 0 and len(pieces) == len(places):
            for (put, _), piece in zip(places, pieces):
                put(piece)
    exporter = HTMLExporter(config=exporter_config(code, "HTMLExporter", "text/html"), template_file=str(HTML_TEMPLATE))
    exporter.embed_images = True
    page, _ = exporter.from_notebook_node(report, resources={"metadata": {"name": report.metadata.get("title", "")}})
    return page


def to_pdf(report, run_dir: Path, stem: str, code: bool = False) -> Path:
    """Render the notebook `report` as <stem>.pdf in run_dir (a failure leaves LaTeX's log as
    <stem>.log)."""
    from nbconvert import PDFExporter
    c = exporter_config(code, "PDFExporter", "text/latex")
    c.PDFExporter.latex_count = 2
    exporter = PDFExporter(config=c, template_file=str(TEX_TEMPLATE))
    try:
        pdf, _ = exporter.from_notebook_node(report, resources={"metadata": {"path": str(run_dir)},
                                                                "emoji_ranges": EMOJI, "mono_font": MONO_FONT,
                                                                "emoji_font": EMOJI_FONT})
    except Exception as err:  # nbconvert raises LatexFailed with the whole log
        log = getattr(err, "output", "") or str(err)
        (run_dir / f"{stem}.log").write_text(log, encoding="utf-8", errors="replace")
        raise StepFailed("LaTeX could not render the report", log=f"{stem}.log") from None
    write_whole(run_dir / f"{stem}.pdf", pdf)
    return run_dir / f"{stem}.pdf"
