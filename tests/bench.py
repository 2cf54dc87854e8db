"""`make bench`: speed of rnn_core beside the textbook version, measured in the same run.

Prints updates per second of training (m=100, T=25, batch 1) against min-char-rnn's own loop
(rewritten here, as fast as the original), and characters per second of sampling against the
textbook version, each with the ratio (best of a few interleaved rounds, one BLAS thread);
then mini-batches: characters per second at B=32 in float64 and float32, on one BLAS thread
and on all (the fastest of them against the 200,000 chars/s target), and the held-out loss
that batch 1 and batch 32 reach in the same wall time; and the time of one held-out score of
110,000 characters (the 1 s target) beside the textbook's single forward reading.
With TORCH_PYTHON set to an interpreter that has PyTorch (`make bench-torch`), PyTorch's
nn.RNN runs the same mini-batch task in the same session, for a ratio free of the machine's
speed, which drifts.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

import rnn_core as rc
from workbook import lstm, training
from workbook import textbook as tb

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {"train": 5.0, "synthesize": 3.5}   # train: against min-char-rnn's loop; synthesize: the textbook's
EVAL_TARGET = 1.0        # seconds per held-out score of the 109,171 held-out characters (about 110k), m=100
BATCH_TARGET = 200_000   # chars/s at B=32
STUDY_TARGET = 0.95      # a study's JOBS=2 speed-up over what two plain numpy processes get
STARTUP_TARGET = 1.0     # seconds from a study run's task start to its first notebook cell
LSTM_TARGET = 4.0        # an LSTM update (m=100, B=1) at most this many times a vanilla RNN's
BLAS = ThreadpoolController()


def best_rate(fn, count, repeats=3):
    """The highest count / seconds over `repeats` calls of fn()."""
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(count / (time.perf_counter() - t0))
    return max(rates)


def best_rates(fns: dict, counts: dict, rounds=3) -> dict:
    """The highest count / seconds of each function over `rounds` rounds, the functions taking
    turns within each round: the machine's drift touches them alike."""
    rates = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            rates[k].append(counts[k] / (time.perf_counter() - t0))
    return {k: max(r) for k, r in rates.items()}


def min_char_rnn_train(P, data, n_updates, seq_length=25, eta=0.1):
    """The reference for training speed: min-char-rnn's loop (Karpathy, 2015) as its code does it,
    written here anew: one-hot input vectors, np.dot on column vectors, the states of a chunk kept in per-step dicts, a
    loss function returning the gradients, element-wise clipping and AdaGrad, the loss smoothed;
    sampling left out, as in rnn_core.train's loop here."""
    Wxh, Whh, Why, bh, by = P["U"], P["W"], P["V"], P["b"], P["c"]
    K, m = Wxh.shape[1], Whh.shape[0]
    mem = [np.zeros_like(a) for a in (Wxh, Whh, Why, bh, by)]
    hprev, p, smooth = np.zeros((m, 1)), 0, -np.log(1.0 / K) * seq_length

    def loss_fun(inputs, targets, hprev):
        xs, hs, ps, loss = {}, {-1: np.copy(hprev)}, {}, 0.0
        for t in range(len(inputs)):
            xs[t] = np.zeros((K, 1))
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
            y = np.dot(Why, hs[t]) + by
            ps[t] = np.exp(y) / np.sum(np.exp(y))
            loss += -np.log(ps[t][targets[t], 0])
        grads = [np.zeros_like(a) for a in (Wxh, Whh, Why, bh, by)]
        dWxh, dWhh, dWhy, dbh, dby = grads
        dhnext = np.zeros_like(hs[0])
        for t in reversed(range(len(inputs))):
            dy = np.copy(ps[t])
            dy[targets[t]] -= 1
            dWhy += np.dot(dy, hs[t].T)
            dby += dy
            dh = np.dot(Why.T, dy) + dhnext
            dhraw = (1 - hs[t] * hs[t]) * dh
            dbh += dhraw
            dWxh += np.dot(dhraw, xs[t].T)
            dWhh += np.dot(dhraw, hs[t - 1].T)
            dhnext = np.dot(Whh.T, dhraw)
        for d in grads:
            np.clip(d, -5, 5, out=d)
        return loss, grads, hs[len(inputs) - 1]

    for _ in range(n_updates):
        if p + seq_length + 1 >= len(data):
            hprev, p = np.zeros((m, 1)), 0
        inputs, targets = data[p:p + seq_length].tolist(), data[p + 1:p + seq_length + 1].tolist()  # ints, as there
        loss, grads, hprev = loss_fun(inputs, targets, hprev)
        smooth = smooth * 0.999 + loss * 0.001
        for param, d, mm in zip((Wxh, Whh, Why, bh, by), grads, mem):
            mm += d * d
            param += -eta * d / np.sqrt(mm + 1e-8)
        p += seq_length
    return smooth


def as_dict(rnn):
    return {n: a.copy() for n, a in zip(rc.RNN.NAMES, rnn.arrays())}


def gemm_rate() -> float:
    """This machine's speed now: GMAC/s of a float32 (800 x 100) x (100 x 100) product, 1 thread."""
    a, w = np.ones((800, 100), np.float32), np.ones((100, 100), np.float32)
    out = np.empty((800, 100), np.float32)
    with BLAS.limit(limits=1, user_api="blas"):
        return best_rate(lambda: [np.matmul(a, w, out=out) for _ in range(200)], 200 * 800 * 100 * 100, 5) / 1e9


def torch_rates(B: int, T: int, m: int, thread_counts, cell: str = "rnn") -> list:
    python = os.environ.get("TORCH_PYTHON")
    if not python:
        return []
    proc = subprocess.run([python, str(ROOT / "tests" / "torch_reference.py"), str(ROOT / "data" / "shakespeare.txt"), cell,
                           *map(str, (B, T, m, 1, *thread_counts))], capture_output=True, text=True)
    if proc.returncode:
        print(f"PyTorch reference failed: {proc.stderr.strip().splitlines()[-1]}")
        return []
    return [json.loads(line) for line in proc.stdout.splitlines()]


def main():
    text = rc.load_text(ROOT / "data" / "shakespeare.txt")
    vocab = rc.Vocab(text)
    data = vocab.encode(text)
    K, m, T = vocab.K, 100, 25
    rnn = rc.init_rnn(K, m, rng=np.random.default_rng(0))
    h0 = np.zeros((m, 1))
    cores = os.cpu_count()
    print(f"K={K}, m={m}, T={T}, numpy {np.__version__}, {cores} cores; "
          f"float32 GEMM now at {gemm_rate():.1f} GMAC/s on one thread")
    rows = []

    with BLAS.limit(limits=1, user_api="blas"):
        n_fast, n_slow = 4000, 1000
        rates = best_rates({"fast": lambda: rc.train(rnn.copy(), data, n_updates=n_fast, rng=np.random.default_rng(0),
                                                     sample_every=10**9),
                            "slow": lambda: min_char_rnn_train(as_dict(rnn), data, n_slow)},
                           {"fast": n_fast, "slow": n_slow})
        rows.append(("train", "updates/s", rates["fast"], rates["slow"]))

        n_fast, n_slow = 40000, 6000
        fast = best_rate(lambda: rc.synthesize(rnn, h0, 0, n_fast, rng=np.random.default_rng(0)), n_fast)
        slow = best_rate(lambda: tb.synthesize(as_dict(rnn), h0, 0, n_slow, np.random.default_rng(0)), n_slow)
        rows.append(("synthesize", "chars/s", fast, slow))

    print(f"\nbatch 1, one BLAS thread (train against min-char-rnn's loop, synthesize against the textbook's):\n"
          f"{'':12}{'unit':>10}{'rnn_core':>12}{'reference':>12}{'ratio':>8}{'target':>8}")
    for name, unit, fast, slow in rows:
        ratio = fast / slow
        verdict = "ok" if ratio >= TARGETS[name] else "BELOW TARGET"
        print(f"{name:12}{unit:>10}{fast:12,.0f}{slow:12,.0f}{ratio:7.1f}x{TARGETS[name]:7.1f}x  {verdict}")

    # mini-batches: characters per second. The machine's speed drifts within minutes, so
    # the settings (and PyTorch, if given) take turns, three rounds, and each keeps its best.
    configs = ((1, "float64", 1), (32, "float64", 1), (32, "float32", 1),
               (32, "float64", cores), (32, "float32", cores))
    rates = {c: 0.0 for c in configs}
    torch = {}
    for _ in range(3):
        for B, dtype, threads in configs:
            n = 3000 if B == 1 else 300
            with BLAS.limit(limits=threads, user_api="blas"):
                rate = best_rate(lambda: training.train(rnn.copy(), data, n_updates=n, rng=np.random.default_rng(0),
                                                        batch_size=B, sample_length=0, dtype=dtype), n, repeats=1)
            rates[B, dtype, threads] = max(rates[B, dtype, threads], rate)
        for ref in torch_rates(32, T, m, sorted({1, cores})):
            key = (ref["torch"], ref["threads"])
            torch[key] = max(torch.get(key, 0.0), ref["chars_per_s"])
    print(f"\nmini-batches (AdaGrad; best of 3 rounds; target {BATCH_TARGET:,} chars/s at B=32):")
    print(f"{'B':>4}  {'dtype':8}{'BLAS threads':>13}{'updates/s':>11}{'chars/s':>11}{'vs B=1':>8}")
    base = rates[configs[0]] * T
    for (B, dtype, threads), rate in rates.items():
        chars = rate * B * T
        print(f"{B:4}  {dtype:8}{threads:13}{rate:11,.0f}{chars:11,.0f}{chars / base:7.1f}x")
    (B, dtype, threads), rate = max(((c, r) for c, r in rates.items() if c[0] == 32), key=lambda cr: cr[1])
    chars = rate * B * T
    verdict = "ok" if chars >= BATCH_TARGET else "BELOW TARGET"
    print(f"  fastest at B=32: {chars:,.0f} chars/s ({dtype}, {threads} BLAS thread(s)) against the target "
          f"of {BATCH_TARGET:,}: {verdict}")
    for (version, threads), chars in sorted(torch.items()):
        ours = rates[32, "float32", threads] * 32 * T
        print(f"  PyTorch {version} nn.RNN, float32, {threads} thread(s): {chars:,.0f} chars/s; "
              f"rnn_core float32 on as many BLAS threads: {ours / chars:.2f}x that")
    if not torch:
        print("  (make bench-torch runs PyTorch's nn.RNN on the same task here, for a side-by-side ratio)")

    lstm_rows(rnn, data, K, m, T, cores)

    # the held-out score as training takes it (64 pieces, each from the carried state through a
    # burn-in) against the textbook's one forward reading of the same text, and the 1 s target
    cut = int(len(data) * 0.9)          # the last 10% held out, here and below
    train_part, held_out = data[:cut], data[cut:]
    trained = rnn.copy()
    hist = rc.train(trained, train_part, n_updates=2000, rng=np.random.default_rng(0), sample_length=0)
    with BLAS.limit(limits=1, user_api="blas"):
        fast = best_rate(lambda: training.evaluate(trained, held_out, h0=hist.last_h, context=train_part), 1)
        h = rc.feed(trained, hist.last_h, train_part[-1000:])
        slow = best_rate(lambda: tb.stream_loss(as_dict(trained), held_out[:-1], held_out[1:], h), 1, repeats=1)
    verdict = "ok" if 1 / fast <= EVAL_TARGET else "BELOW TARGET"
    print(f"\nheld-out score of {len(held_out):,} characters, m={m} (continued, {training.VAL_STREAMS} pieces): "
          f"{1 / fast:.2f} s; the textbook's one reading {1 / slow:.2f} s ({slow and fast / slow:.0f}x); "
          f"target <= {EVAL_TARGET:.0f} s: {verdict}")

    validation_cost(rnn, train_part, held_out)

    # the loss reached in equal wall time, on text neither run trains on; each run is stopped
    # by the same Ctrl-C that a user would press (train returns what it has)
    budget = 20.0
    print(f"\nheld-out loss after {budget:.0f} s of training each (the last 10% of the text held out):")
    for B, dtype, threads in ((1, "float64", 1), (32, "float32", cores)):
        model = rnn.copy()
        t0 = time.perf_counter()

        def stop_when_due(done, smooth):
            if time.perf_counter() - t0 > budget:
                os.kill(os.getpid(), signal.SIGINT)
        with BLAS.limit(limits=threads, user_api="blas"):
            hist = training.train(model, train_part, n_updates=10**7, rng=np.random.default_rng(0), batch_size=B,
                                  sample_length=0, dtype=dtype, progress=stop_when_due)
        seconds = time.perf_counter() - t0
        print(f"{B:4}  {dtype:8} {threads} BLAS thread(s): {hist.updates:7,} updates, "
              f"{hist.updates * B * T / 1e6:4.1f}M characters in {seconds:4.1f} s: "
              f"{training.evaluate(model, held_out, h0=hist.last_h, context=train_part):.3f} nats/char held out "
              f"(read on from training, as the report does)")


def validation_cost(rnn, train_part, held_out, n: int = 20_000, val_every: int = 5000) -> None:
    """What a default run's held-out scores (every 5,000 updates) and checkpoints (every 10,000)
    add to its training time (target 5%), beside the least the scores could add in float64: their
    multiply-adds at this machine's rate for the score's own product shape, measured now."""
    import shutil
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="bench-checkpoint-"))
    both = {"val_data": held_out, "val_every": val_every, "checkpoint": folder / "c.npz", "checkpoint_every": 10_000}
    try:
        with BLAS.limit(limits=1, user_api="blas"):
            rates = best_rates({kind: lambda kw=kw: training.train(rnn.copy(), train_part, n_updates=n, sample_length=0,
                                                                    rng=np.random.default_rng(0), **kw)
                                for kind, kw in (("plain", {}), ("both", both))}, {"plain": n, "both": n}, rounds=2)
            S, m, K = training.VAL_STREAMS, rnn.m, rnn.K
            h, w, out = np.ones((S, m)), np.ones((m, m)), np.empty((S, m))
            gemm = best_rate(lambda: [np.dot(h, w, out=out) for _ in range(500)], 500 * S * m * m, 5)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    L = (len(held_out) - 1) // S
    macs = (training.VAL_BURN_IN + L) * S * m * m + S * L * m * K     # the reading, burn-in included; the outputs
    added = rates["plain"] / rates["both"] - 1
    floor = (n // val_every) * macs / gemm * rates["plain"] / n
    print(f"  held-out scores every {val_every:,} updates and checkpoints every 10,000 add {added:.1%} to training "
          f"(target <= 5%: {'ok' if added <= 0.05 else 'BELOW TARGET'}); the scores' {macs / 1e9:.1f} G multiply-adds "
          f"each, at {gemm / 1e9:.0f} GMAC/s (float64, one thread), would add {floor:.1%} even with nothing else")


def lstm_rows(rnn, data, K: int, m: int, T: int, cores: int) -> None:
    """The LSTM: an update at batch 1 against the vanilla RNN's (interleaved, one BLAS thread; it
    does about 4x the arithmetic), and characters per second at B=32 in float32 against PyTorch's
    nn.LSTM on the same task (make bench-torch), on one thread and on all, rounds taking turns."""
    P = lstm.init_lstm(K, m, rng=np.random.default_rng(0))
    n = 2000
    with BLAS.limit(limits=1, user_api="blas"):
        rates = best_rates({"rnn": lambda: rc.train(rnn.copy(), data, n_updates=n, rng=np.random.default_rng(0),
                                                    sample_every=10**9),
                            "lstm": lambda: training.train(P.copy(), data, n_updates=n, rng=np.random.default_rng(0),
                                                           sample_length=0)}, {"rnn": n, "lstm": n})
    ratio = rates["rnn"] / rates["lstm"]
    print(f"\nLSTM, m={m}, batch 1, one BLAS thread: {rates['lstm']:,.0f} updates/s, the vanilla RNN's "
          f"{rates['rnn']:,.0f}: an LSTM update takes {ratio:.1f}x as long (target <= {LSTM_TARGET:.0f}x: "
          f"{'ok' if ratio <= LSTM_TARGET else 'BELOW TARGET'})")
    ours, theirs, plain = {}, {}, {}
    for _ in range(3):
        for threads in sorted({1, cores}):
            with BLAS.limit(limits=threads, user_api="blas"):
                ours[threads] = max(ours.get(threads, 0.0), best_rate(
                    lambda: training.train(P.copy(), data, n_updates=300, rng=np.random.default_rng(0), batch_size=32,
                                           sample_length=0, dtype="float32"), 300 * 32 * T, repeats=1))
        for ref in torch_rates(32, T, m, sorted({1, cores}), cell="lstm"):
            theirs[ref["threads"]] = max(theirs.get(ref["threads"], 0.0), ref["chars_per_s"])
            plain[ref["threads"]] = max(plain.get(ref["threads"], 0.0), ref["chars_per_s_without_onednn"])
    for threads, chars in ours.items():
        line = f"  LSTM at B=32, float32, {threads} BLAS thread(s): {chars:,.0f} chars/s"
        if threads in theirs:
            r = chars / theirs[threads]
            line += (f"; PyTorch's nn.LSTM on as many threads: {theirs[threads]:,.0f}, so {r:.2f}x that "
                     f"(target >= 1: {'ok' if r >= 1 else 'BELOW TARGET'}); nn.LSTM without oneDNN's fused "
                     f"LSTM kernel (PyTorch's own ops): {plain[threads]:,.0f}, so {chars / plain[threads]:.2f}x that")
        print(line)
    if not theirs:
        print("  (make bench-torch runs PyTorch's nn.LSTM on the same task here, for a side-by-side ratio)")


def study_speedup(n_runs: int = 8) -> None:
    """The same study of n_runs short runs (seeds 1..n_runs) made with JOBS=1, then JOBS=2, in
    this session: the wall-time ratio, and each run's overhead from its task's start (the
    planner's) to the first notebook cell."""
    import datetime
    import shutil
    import tempfile
    P = "check_m=[5] speed=False sample_every=1000 val_every=2500 passage_length=200 temperatures=[1.0] top_ps=[]"
    seeds = " ".join(str(s) for s in range(1, n_runs + 1))
    times, overhead, phase = {}, [], {}
    for jobs in (1, 2):
        reports = Path(tempfile.mkdtemp(prefix=f"bench-study-{jobs}-"))
        env = {**os.environ, "REPORTS": str(reports), "REPORTS_OUTSIDE": "1", "SEEDS": seeds, "JOBS": str(jobs),
               "N_UPDATES": "5000", "P": P}
        env.pop("MAKEFLAGS", None)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "workbook", "batch"], env=env, cwd=ROOT,
                              capture_output=True, text=True)
        times[jobs] = time.perf_counter() - t0
        if proc.returncode:
            print(f"  the study with JOBS={jobs} failed: {proc.stderr.strip().splitlines()[-1:]}")
            return
        folders = list(reports.glob("classic-seed-*"))
        # the runs' own phase: the first run's start to the last run's end (its plan.json, written last)
        phase[jobs] = (max((run / "plan.json").stat().st_mtime for run in folders)
                       - min(json.loads((run / "plan.json").read_text())["planner_started"] for run in folders))
        for run in folders:
            start = json.loads((run / "plan.json").read_text())["planner_started"]
            nb = json.loads((run / "01_gradient_check.ipynb").read_text())
            first = next(c for c in nb["cells"] if c["cell_type"] == "code")["metadata"]["papermill"]["start_time"]
            overhead.append(datetime.datetime.fromisoformat(first.replace("Z", "+00:00")).timestamp() - start)
        shutil.rmtree(reports, ignore_errors=True)
    speedup = times[1] / times[2]
    # the reference, in the same session: two processes of pure numpy training, one after the other and side by side
    code = ("import sys; import numpy as np, rnn_core as rc; "
            "t = rc.load_text(sys.argv[1] + '/data/shakespeare.txt'); v = rc.Vocab(t); d = v.encode(t); "
            "rc.train(rc.init_rnn(v.K, 100, rng=np.random.default_rng(0)), d, n_updates=8000, "
            "rng=np.random.default_rng(0), sample_length=0)")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", code, str(ROOT)]
    t0 = time.perf_counter()
    for _ in range(2):
        subprocess.run(cmd, env=env, check=True)
    serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in [subprocess.Popen(cmd, env=env) for _ in range(2)]:
        p.wait()
    reference = serial / (time.perf_counter() - t0)
    share = speedup / reference
    print(f"\nstudy of {n_runs} runs (5,000 updates, m = 100 each) as Dask tasks, in this session: "
          f"JOBS=1 {times[1]:.0f} s, JOBS=2 {times[2]:.0f} s: speed-up {speedup:.2f}x; two processes of pure numpy "
          f"training side by side ran {reference:.2f}x as fast as one after the other, so the study reached "
          f"{share:.0%} of what this machine gave two processes (target {STUDY_TARGET:.0%}: "
          f"{'ok' if share >= STUDY_TARGET else 'BELOW TARGET'})")
    overhead.sort()
    runs_alone = phase[1] / phase[2]
    print(f"  the runs alone, first start to last end: JOBS=1 {phase[1]:.0f} s, JOBS=2 {phase[2]:.0f} s: "
          f"{runs_alone:.2f}x, {runs_alone / reference:.0%} of what two processes gave; the rest of each study "
          f"({times[1] - phase[1]:.0f} s and {times[2] - phase[2]:.0f} s) is its fixed part, the same for any "
          f"length of run: the planner, Dask's start and the comparison report; with runs that scaled as two "
          f"processes do, that fixed part alone would hold the whole study to "
          f"{(times[1] / (phase[1] / reference + times[2] - phase[2])) / reference:.0%}")
    median = overhead[len(overhead) // 2]
    print(f"  per run, from the task's start to the first notebook cell: median {median:.1f} s "
          f"(range {overhead[0]:.1f}-{overhead[-1]:.1f} s; target <= {STARTUP_TARGET:.0f} s: "
          f"{'ok' if median <= STARTUP_TARGET else 'BELOW TARGET'})")


if __name__ == "__main__":
    main()
    if os.cpu_count() >= 2:
        study_speedup()
