"""Compare finished runs: run 05_compare with papermill and render comparison.pdf.

    python notebooks/run_compare.py --out reports/batch-classic reports/classic-seed-1 reports/classic-seed-2

Runs that failed or never finished are listed as failed in the report, not skipped silently.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_report import StepFailed, error_of, to_pdf  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for comparison.pdf, e.g. reports/batch-classic")
    ap.add_argument("--title", default="")
    ap.add_argument("--author", default=os.environ.get("AUTHOR", "DD2424 workbook"))
    ap.add_argument("--labels", default="[]", help="JSON list: each run's group (grid point or preset)")
    ap.add_argument("--grid", default="[]", help='JSON list of [parameter, [values]]: the study\'s axes')
    ap.add_argument("--errors", default="{}", help="JSON object: run folder -> the error of a run refused "
                                                   "before it made its folder")
    ap.add_argument("runs", nargs="+", help="run folders")
    args = ap.parse_args(argv)
    os.environ.pop("MPLBACKEND", None)
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    import workbook

    out = Path(args.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: cannot create {out}: {err.strerror}; choose another REPORTS folder", file=sys.stderr)
        return 1
    executed = out / "05_compare.ipynb"
    print(f"comparing {len(args.runs)} runs into {out}", flush=True)
    try:
        try:
            pm.execute_notebook(str(HERE / "05_compare.ipynb"), str(executed), cwd=str(HERE),
                                parameters={"runs": [str(Path(r).resolve()) for r in args.runs],
                                            "labels": json.loads(args.labels), "grid": json.loads(args.grid),
                                            "errors": {str(Path(r).resolve()): e
                                                       for r, e in json.loads(args.errors).items()},
                                            "out_dir": str(out)},
                                kernel_name="python3", progress_bar=False, log_output=False,
                                extra_arguments=workbook.KERNEL_ARGS)
        except PapermillExecutionError:
            raise StepFailed(error_of(executed), executed.name) from None
        nb = nbformat.read(executed, as_version=4)
        nb.cells = [c for c in nb.cells
                    if not set(c.metadata.get("tags", [])) & {"parameters", "injected-parameters"}]
        presets = sorted({Path(r).name.split("-seed-")[0] for r in args.runs})
        axes = [name for name, _ in json.loads(args.grid)]
        what = " and ".join(axes) if axes else " vs ".join(presets)
        nb.metadata.update({
            "title": args.title or f"DD2424 Assignment 4: {what} over "
                                   f"{len(args.runs)} run{'s' if len(args.runs) > 1 else ''}",
            "authors": [{"name": args.author}],
            "date": datetime.date.today().strftime("%-d %B %Y")})
        pdf = to_pdf(nb, out, "comparison")
    except StepFailed as err:
        print(f"error: {err.text(out)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(f"comparison: {pdf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
