"""`make bench`: speed of rnn_core beside the textbook version, measured in the same run.

Prints updates per second of training (m=100, T=25, batch 1) and characters per second of
sampling, each as rnn_core / textbook with the ratio. Best of a few repeats, one BLAS thread.
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only cost time
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import rnn_core as rc  # noqa: E402
import textbook_rnn as tb  # noqa: E402

TARGETS = {"train": 4.0, "synthesize": 3.5}
BATCH_TARGET = 200_000   # chars/s at B=32; PyTorch nn.RNN (CPU, float32, 1 thread) did ~194,000 here


def best_rate(fn, count, repeats=3):
    """The highest count / seconds over `repeats` calls of fn()."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(count / (time.perf_counter() - t0))
    return max(rates)


def as_dict(rnn):
    return {n: a.copy() for n, a in zip(rc.RNN.NAMES, rnn.arrays())}


def main():
    text = rc.load_text(ROOT / "data" / "shakespeare.txt")
    vocab = rc.Vocab(text)
    data = vocab.encode(text)
    K, m = vocab.K, 100
    rnn = rc.init_rnn(K, m, rng=np.random.default_rng(0))
    h0 = np.zeros((m, 1))
    print(f"K={K}, m={m}, T=25, batch 1, numpy {np.__version__}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    rows = []

    n_fast, n_slow = 4000, 600
    fast = best_rate(lambda: rc.train(rnn.copy(), data, n_updates=n_fast, rng=np.random.default_rng(0),
                                      sample_every=10**9), n_fast)
    slow = best_rate(lambda: tb.train(as_dict(rnn), data, n_slow), n_slow)
    rows.append(("train", "updates/s", fast, slow))

    n_fast, n_slow = 40000, 6000
    fast = best_rate(lambda: rc.synthesize(rnn, h0, 0, n_fast, rng=np.random.default_rng(0)), n_fast)
    slow = best_rate(lambda: tb.synthesize(as_dict(rnn), h0, 0, n_slow, np.random.default_rng(0)), n_slow)
    rows.append(("synthesize", "chars/s", fast, slow))

    print(f"{'':12}{'unit':>10}{'rnn_core':>12}{'textbook':>12}{'ratio':>8}{'target':>8}")
    for name, unit, fast, slow in rows:
        ratio = fast / slow
        verdict = "ok" if ratio >= TARGETS[name] else "BELOW TARGET"
        print(f"{name:12}{unit:>10}{fast:12,.0f}{slow:12,.0f}{ratio:7.1f}x{TARGETS[name]:7.1f}x  {verdict}")

    # mini-batches: characters per second, and the loss reached per second of training
    print(f"\nmini-batches (m={m}, T=25, AdaGrad eta 0.1; target {BATCH_TARGET:,} chars/s at B=32):")
    print(f"{'B':>4}{'updates/s':>12}{'chars/s':>12}{'vs B=1':>8}   per-char smooth loss after 20 s")
    base = None
    for B in (1, 32):
        n = 3000 if B == 1 else 300
        rate = best_rate(lambda: rc.train(rnn.copy(), data, n_updates=n, rng=np.random.default_rng(0),
                                          batch_size=B, sample_length=0), n)
        chars = rate * B * 25
        base = base or chars
        budget = 20.0                          # equal wall time: how far does each get?
        hist = rc.train(rnn.copy(), data, n_updates=max(1, int(rate * budget)), rng=np.random.default_rng(0),
                        batch_size=B, sample_length=0)
        verdict = "" if B == 1 else ("  ok" if chars >= BATCH_TARGET else "  BELOW TARGET")
        print(f"{B:4}{rate:12,.0f}{chars:12,.0f}{chars / base:7.1f}x   {hist.smooth_loss[-1] / 25:.3f} "
              f"nats ({hist.updates:,} updates){verdict}")


if __name__ == "__main__":
    main()
