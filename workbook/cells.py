"""Write what is generated from the parameter spec (workbook/params.py): the `parameters` cell
of every notebook, and the table of parameters in docs/parameters.md.

    python -m workbook.cells          # rewrite them
    python -m workbook.cells --check  # exit 1 if one differs (a test runs this)

Papermill needs literal values in each notebook's own parameters cell; this keeps the
notebooks' shared parameters identical, with their defaults and comments, in one place.
"""
from __future__ import annotations

import sys

from workbook import params
from workbook.runs import NOTEBOOKS, ROOT

PARAMETER_PAGE = ROOT / "docs" / "parameters.md"     # its table of parameters is made here
TABLE_START, TABLE_END = "<!-- parameters: made by python -m workbook.cells -->", "<!-- end of parameters -->"


def cell_source(notebook: str) -> str:
    rows = params.of_notebook(notebook)
    width = max(len(f"{p.name} = {p.default}") for p in rows) + 2
    lines = ["# Parameters (papermill injects overrides after this cell). Paths are relative to notebooks/."]
    lines += [f"{f'{p.name} = {p.default}':<{width}}# {p.help}" for p in rows]
    return "\n".join(lines)


def parameter_table() -> str:
    """The run parameters as a Markdown table: name, default, what it may be, make variable, notebooks."""
    short = {params.GRADIENT_CHECK: "01", params.TRAIN: "02", params.LOSS_PLOT: "03", params.SYNTHESIS: "04"}
    rows = ["| parameter | default | what | values | make | used in |", "|:--|:--|:--|:--|:--|:--|"]
    for p in params.of_notebook(params.TRAIN):
        rows.append(f"| `{p.name}` | `{p.default}` | {p.help.replace('|', '/')} | {str(p.kind).replace('|', 'or')} | "
                    f"{p.make} | {'all' if params.START in p.used_by else ', '.join(short[n] for n in p.used_by)} |")
    return "\n".join(rows)


def main(check: bool) -> int:
    import nbformat
    stale = []
    for notebook in (*params.RUN_NOTEBOOKS, params.COMPARE):
        path = NOTEBOOKS / f"{notebook}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        want = cell_source(notebook)
        if cell.source != want:
            stale.append(path.name)
            if not check:
                cell.source = want
                nbformat.write(nb, path)
    text = PARAMETER_PAGE.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    if text[start:end] != "\n" + parameter_table() + "\n":
        stale.append(PARAMETER_PAGE.name)
        if not check:
            PARAMETER_PAGE.write_text(text[:start] + "\n" + parameter_table() + "\n" + text[end:], encoding="utf-8")
    if check and stale:
        print(f"out of date with workbook/params.py: {', '.join(stale)}; run python -m workbook.cells")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
