"""Write the `parameters` cell of every notebook from the one list below.

    python notebooks/sync_parameters.py          # rewrite the cells
    python notebooks/sync_parameters.py --check  # exit 1 if a notebook differs (a test runs this)

Papermill needs literal values in each notebook's own parameters cell; this keeps the
notebooks' shared parameters identical, with their defaults and comments, in one place.
Every notebook declares every run parameter, so the first one checks them all before any work.
"""
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

COMMON = [
    ("preset", '"classic"', "name of the recipe (params/<preset>.yaml sets the values below)"),
    ("overrides", "[]", 'values set on purpose against the preset, e.g. ["eta"]'),
    ("data_path", '"../data/shakespeare.txt"', 'UTF-8 text; the book: "../data/goblet_book.txt"'),
    ("corpus_format", '"text"', '"text", or "tweets": data_path is a tweet-archive JSON file'),
    ("seed", "1", "seeds every random draw of the run"),
    ("m", "100", "hidden units"),
    ("eta", "0.1", "learning rate"),
    ("seq_length", "25", "characters per chunk, T"),
    ("sigma", "0.01", "std of U, W, V when init is normal"),
    ("init", '"normal"', '"normal" (2017-2024) or "xavier" (2025)'),
    ("optimizer", '"adagrad"', '"adagrad", "rmsprop" or "adam"'),
    ("loss_reduction", '"sum"', '"sum" over the chunk (2017-2024) or "mean" (2025)'),
    ("clip", "5.0", "gradients clipped element-wise to [-clip, clip]"),
    ("n_updates", "100000", "training updates"),
    ("sample_every", "10000", "a sample of the text every this many updates"),
    ("batch_size", "1", "streams per update (mini-batch); 1 is the assignment's loop"),
    ("chunk_order", '"sequential"', '"sequential" (the assignment), "shuffled" each epoch, or "random" positions'),
    ("dtype", '"float64"', '"float64", or "float32": about twice as fast with batch_size > 1'),
    ("val_fraction", "0.1", "the end of the text held out for validation; 0 trains on all"),
    ("val_every", "5000", "updates between validation scores"),
    ("best_by", '"smooth"', 'best model by "smooth" training loss or "val" loss'),
    ("tweet_length", "140", "tweets: longest synthesized tweet (140 or 280)"),
    ("keep_retweets", "False", "tweets: keep retweets"),
    ("keep_links", "False", "tweets: keep http(s) links"),
    ("max_text_mb", "1000", "a larger text file is refused (reading one takes about 2.5x its size in memory)"),
    ("run_dir", '"../reports/by-hand"', "where this run's artefacts go (make's runs have names of their own)"),
    ("passage_length", "1000", "characters of the passage from the best model"),
    ("prime_text", '""', "text the best model reads before its passage (not for tweets)"),
    ("temperatures", "[0.5, 0.8, 1.0, 1.3]", "sampling section: temperatures to compare"),
    ("top_ps", "[0.5, 0.9, 1.0]", "sampling section: nucleus (top-p) settings; [] for none"),
    ("n_tweets", "12", "tweets: how many to synthesize"),
    ("checkpoint_every", "10000", "updates between checkpoints (run_dir/checkpoint.npz)"),
    ("resume", "False", "True: continue from run_dir/checkpoint.npz up to n_updates"),
    ("check_m", "[5, 100]", "gradient check: hidden sizes to check at"),
    ("check_sigma", "0.1", "gradient check: std of the weights"),
    ("check_h", "1e-4", "gradient check: step of the centred differences"),
    ("check_torch", '"auto"', 'gradient check against PyTorch autograd: "auto" (if installed), True, False'),
    ("speed", "True", "time the gradient computation against the textbook version (and PyTorch)"),
]
EXTRA = {   # parameters only one notebook uses; none now: all are in COMMON, checked by the first
    "01_gradient_check": [],
    "02_train": [],
    "03_loss_plot": [],
    "05_compare": "own",
    "04_synthesis": [],
}


OWN = {   # 05_compare reads finished runs; it takes only these
    "05_compare": [
        ("runs", "[]", "run folders to compare, e.g. [\"../reports/classic-seed-1\", ...]"),
        ("out_dir", '"../reports/batch-classic"', "where comparison.pdf and its figure go"),
        ("labels", "[]", "each run's group (its grid point or preset); [] groups by preset"),
        ("grid", "[]", "the study's axes, [[parameter, [values]], ...]; [] for none"),
        ("errors", "{}", "{run folder: error} of runs refused before they made a folder"),
    ],
}


def cell_source(step: str) -> str:
    rows = OWN[step] if step in OWN else COMMON + EXTRA[step]
    width = max(len(f"{n} = {v}") for n, v, _ in rows) + 2
    lines = ["# Parameters (papermill injects overrides after this cell). Paths are relative to notebooks/."]
    lines += [f"{f'{n} = {v}':<{width}}# {c}" for n, v, c in rows]
    return "\n".join(lines)


def main(check: bool) -> int:
    stale = []
    for step in EXTRA:
        path = HERE / f"{step}.ipynb"
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        want = cell_source(step)
        if cell.source != want:
            stale.append(path.name)
            if not check:
                cell.source = want
                nbformat.write(nb, path)
    if check and stale:
        print(f"parameters cells out of date in {', '.join(stale)}: run python notebooks/sync_parameters.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
