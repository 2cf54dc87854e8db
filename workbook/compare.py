"""Comparing finished runs: what 05_compare reads of each run and says of them, and the command
that runs 05_compare with papermill and renders comparison.pdf:

    python -m workbook.compare --out reports/batch-classic reports/classic-seed-1 reports/classic-seed-2

Runs that failed or never finished are listed as failed in the report, not skipped silently.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from workbook import render
from workbook.notebook import need, read_history, read_json, read_validation
from workbook.show import fmt_seconds, fmt_small


def load_run(run_dir) -> dict:
    """A finished run's numbers for comparison; RNNError if the run did not finish."""
    d = Path(run_dir)
    info = read_json(need(d, "run.json"))
    need(d, "passage.txt")
    h = read_history(need(d, "history.csv"))
    p = info["params"]
    per = p["seq_length"] if p["loss_reduction"] == "sum" else 1
    val = read_validation(need(d, "validation.csv"))
    return {**info, "name": d.name, "per_char": h["smooth_loss"] / per,
            "best_per_char": info["best_smooth_loss"] / per,
            "val": val, "val_last": float(val[-1, 1]) if len(val) else None,
            "passage": (d / "passage.txt").read_text(encoding="utf-8")}


def failure_of(run_dir) -> str | None:
    """The one-line error of a failed run, from the executed notebooks kept in <run>.failed."""
    failed = Path(run_dir).with_name(Path(run_dir).name + ".failed")
    if not failed.is_dir():
        return None
    for path in sorted(failed.glob("0*.ipynb")):
        message = render.notebook_error(path)
        if message is not None:
            return f"{message} (in {path.name})"
    return f"it stopped before finishing; see {failed}"


NOT_COMPARED = {"seed"}


def compare_settings(runs: list, varied=()) -> list:
    """What differs between runs beyond the seed (and the study's `varied` parameters): corpus
    across all, parameters within a preset."""
    problems = []
    corpora = {(r["corpus"]["name"], r["corpus"]["characters"], r["corpus"]["K"]) for r in runs}
    if len(corpora) > 1:
        problems.append("corpus: " + "; ".join(f"`{n}` ({c:,} characters, K = {k})" for n, c, k in sorted(corpora)))
    by_preset = {}
    for r in runs:
        by_preset.setdefault(r["params"]["preset"], []).append(r)
    for preset, rs in by_preset.items():
        keys = sorted(set().union(*(r["params"] for r in rs)) - NOT_COMPARED - set(varied))
        for k in keys:
            values = {json.dumps(r["params"].get(k)) for r in rs}
            if len(values) > 1:
                problems.append(f"{preset}: `{k}` is " + ", ".join(
                    f"{r['params'].get(k)} (seed {r['params']['seed']})" for r in rs))
    updates = {r["updates"] for r in runs}
    if len(updates) > 1 and "n_updates" not in varied:
        problems.append("updates done: " + ", ".join(f"{r['updates']:,} ({r['name']})" for r in runs))
    return problems


MEASURES = {"val": "held-out loss", "smooth": "final smooth loss"}      # the one measure runs are ranked by
RULE = ("a setting leads when its mean is lower than the next one's by more than twice the largest seed spread "
        "(the standard deviation over the seeds of any setting)")


def measure_of(runs: list) -> str:
    """The measure a comparison ranks by: the final model's loss on held-out text when every run
    has one (the same text for all, never trained on), else the final smooth training loss."""
    return "val" if all(r["val_last"] is not None for r in runs) else "smooth"


def final_score(r: dict, metric: str) -> float:
    """A run's final number: its held-out loss ("val") or its final smooth loss, per character."""
    return r["val_last"] if metric == "val" else float(r["per_char"][-1])


def verdict(lead: float, spread: float) -> str:
    """The rule (RULE) applied: how a lead compares with the largest seed spread."""
    if math.isnan(spread):
        return "with one seed each, so the spread between seeds, and with it a lead, is unknown"
    if lead > 2 * spread:
        return f"more than twice the largest seed spread ({fmt_small(spread)}): it leads"
    if lead > spread:
        return (f"more than the largest seed spread ({fmt_small(spread)}) but less than twice it: "
                f"not a lead by this rule; more seeds would tell")
    return f"no more than the largest seed spread ({fmt_small(spread)}): within the noise between seeds"


def compare_summary(groups: dict, metric: str = "smooth") -> str:
    """Mean and spread of each group's score on the one measure (MEASURES[metric]), and for two
    or more groups the leader by RULE, with the numbers it was decided on."""
    what = MEASURES[metric]
    stats = {}
    for label, rs in groups.items():
        final = np.array([final_score(r, metric) for r in rs])
        stats[label] = (final.mean(), final.std(ddof=1) if len(final) > 1 else float("nan"), len(final),
                        final.max() - final.min())
    parts = [f"**{g}**: {m:.3f} on average over {n} seed{'s' if n > 1 else ''}"
             + (f" (standard deviation {fmt_small(s)}, range {fmt_small(rg)})" if n > 1 else "")
             for g, (m, s, n, rg) in stats.items()]
    text = f"The runs are ranked by one measure, the {what} in nats per character (lower is better): " + \
        "; ".join(parts) + "."
    if len(stats) >= 2:
        ranked = sorted(stats.items(), key=lambda kv: kv[1][0])
        (first, (m1, *_)), (second, (m2, *_)) = ranked[0], ranked[1]
        spreads = [s for _, (_, s, _, _) in ranked if not math.isnan(s)]
        spread = max(spreads) if spreads else float("nan")
        text += (f" The rule: {RULE}. **{first}** has the lowest {what}, {fmt_small(m2 - m1)} below **{second}** "
                 f"({fmt_small((m2 - m1) / math.log(2))} bits), {verdict(m2 - m1, spread)}.")
    return text


# ----------------------------------------------------------------------------- the LSTM against the RNN

def cells_compared(axes: list) -> bool:
    """GRID is cell=rnn,lstm (in either order) and nothing else: the study that asks whether the
    LSTM's gates help; it gets a vanilla RNN of the LSTM's parameter count beside them (study.py)."""
    return len(axes) == 1 and axes[0][0] == "cell" and sorted(axes[0][1]) == ["lstm", "rnn"]


def varied_params(labels: list) -> list:
    """The parameters the study's labels set ("cell = rnn, m = 216"): the grid's, and the m of
    the matched RNN."""
    return sorted({part.split(" = ", 1)[0] for label in labels for part in label.split(", ") if " = " in part})


def score_at(r: dict, metric: str, update: int) -> tuple[float, int] | None:
    """A run's score (held-out or smooth loss per character) at its last measurement no later
    than `update`, and that measurement's update; None before the first."""
    if metric == "val":
        done = r["val"][r["val"][:, 0] <= update]
        return (float(done[-1, 1]), int(done[-1, 0])) if len(done) else None
    k = min(update, len(r["per_char"]))
    return (float(r["per_char"][k - 1]), k) if k >= 1 else None


def mean_sd(values) -> tuple[float, float]:
    v = np.array(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def said(mean: float, sd: float) -> str:
    return f"{mean:.3f}" + ("" if math.isnan(sd) else f" ± {fmt_small(sd)}")


def cell_study(groups: dict, metric: str, K: int) -> tuple[list, list, str]:
    """The study of cell=rnn,lstm: rows at equal updates and at equal wall time (the fastest
    setting's mean training time: each run's score at its last measurement before it), and the
    sentence that answers "does the gate help?" with the numbers and the lead rule (RULE)."""
    from workbook.nets import NETS
    lstm_g = "cell = lstm"
    others = [g for g in groups if g != lstm_g]              # the RNN of the same m, then the matched one
    order = [lstm_g] + others
    what = MEASURES[metric]
    p = {g: groups[g][0]["params"] for g in order}
    name = {g: f"{NETS[p[g]['cell']].label}, m = {p[g]['m']}" for g in order}
    count = {g: NETS[p[g]["cell"]].n_params(K, p[g]["m"]) for g in order}
    seconds = {g: float(np.mean([r["wall_seconds"] for r in groups[g]])) for g in order}
    budget = min(seconds.values())

    def scores(g, at_time):
        """(mean, sd) of the group's scores, and the mean update they were measured at; None
        when a run had no measurement yet."""
        got = [score_at(r, metric, int(budget * r["updates"] / r["wall_seconds"])) if at_time else
               (final_score(r, metric), r["updates"]) for r in groups[g]]
        if not all(got):
            return None
        return mean_sd([s for s, _ in got]), int(np.mean([k for _, k in got]))

    def compared(table) -> str:
        spreads = [sd for v in table.values() if v for _, sd in [v[0]] if not math.isnan(sd)]
        spread = max(spreads) if spreads else float("nan")
        mine = table[lstm_g][0][0]
        parts = []
        for g in others:
            if table[g] is None:
                continue
            theirs = table[g][0][0]
            lower = "the LSTM" if mine < theirs else f"the {name[g]}"
            parts.append(f"{said(*table[g][0])} for the {name[g]} ({count[g]:,} parameters): {lower} is lower by "
                         f"{fmt_small(abs(theirs - mine))}, {verdict(abs(theirs - mine), spread)}")
        return "; and ".join(parts)

    end = {g: scores(g, False) for g in order}
    timed = {g: scores(g, True) for g in order}
    equal_rows = [[name[g], f"{count[g]:,}", said(*end[g][0]), fmt_seconds(seconds[g])] for g in order]
    time_rows = [[name[g], f"{timed[g][1]:,}", said(*timed[g][0])] if timed[g] else [name[g], "none yet", ""]
                 for g in order]
    sentence = (f"At equal updates ({end[lstm_g][1]:,}), the LSTM ({count[lstm_g]:,} parameters) reaches a {what} of "
                f"{said(*end[lstm_g][0])} nats per character, against {compared(end)}.")
    if timed[lstm_g] is not None and budget < seconds[lstm_g]:
        sentence += (f" At equal wall time ({fmt_seconds(budget)}, the fastest setting's mean training time), the "
                     f"LSTM had made {timed[lstm_g][1]:,} updates and scored {said(*timed[lstm_g][0])}, against "
                     f"{compared(timed)}.")
    return equal_rows, time_rows, sentence


# ----------------------------------------------------------------------------- the command

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

    out = Path(args.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: cannot create {out}: {err.strerror}; choose another REPORTS folder", file=sys.stderr)
        return 1
    print(f"comparing {len(args.runs)} runs into {out}", flush=True)
    try:
        executed = render.execute("05_compare", out, {
            "runs": [str(Path(r).resolve()) for r in args.runs], "labels": json.loads(args.labels),
            "grid": json.loads(args.grid), "errors": {str(Path(r).resolve()): e for r, e in json.loads(args.errors).items()},
            "out_dir": str(out)}, quiet=True)
        nb = nbformat.read(executed, as_version=4)
        nb.cells = [c for c in nb.cells
                    if not set(c.metadata.get("tags", [])) & {"parameters", "injected-parameters"}]
        presets = sorted({Path(r).name.split("-seed-")[0] for r in args.runs})
        axes = [name for name, _ in json.loads(args.grid)]
        what = ("the LSTM against the vanilla RNN" if cells_compared(json.loads(args.grid)) else
                " and ".join(axes) if axes else " vs ".join(presets))
        nb.metadata.update({
            "title": args.title or f"DD2424 Assignment 4: {what} over "
                                   f"{len(args.runs)} run{'s' if len(args.runs) > 1 else ''}",
            "authors": [{"name": args.author}],
            "date": datetime.date.today().strftime("%-d %B %Y")})
        made = render.write_report(nb, out, "comparison")
    except render.StepFailed as err:
        print(f"error: {err.text(out)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if made["pdf"]:
        print(f"comparison: {made['pdf']} (and comparison.html beside it)")
    else:
        print(f"comparison: {made['html']}\n{render.no_pdf(render.tex_missing())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
