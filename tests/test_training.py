"""Training beyond the assignment's plain loop (workbook/training.py and batched.py), each against
an independent expectation: mini-batches (numerical gradients of the textbook loss), stream
positions, shuffled chunks, validation on unseen text, checkpoints with exact resume, Ctrl-C, NaN,
damaged checkpoints; and the package's loop against rnn_core's own."""
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnn_core as rc
from workbook import batched, files, params, training
from workbook import textbook as tb

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus():
    text = rc.load_text(ROOT / "data" / "shakespeare.txt")[:60_000]
    vocab = rc.Vocab(text)
    return text, vocab, vocab.encode(text)


def as_dict(rnn):
    return {n: a.copy() for n, a in zip(rc.RNN.NAMES, rnn.arrays())}


# ----------------------------------------------------------------------------- the two loops

@pytest.mark.parametrize("settings", [{}, {"optimizer": "adam", "eta": 0.01, "loss_reduction": "mean"},
                                      {"optimizer": "rmsprop", "clip": 1.0, "seq_length": 11}])
def test_the_packages_training_with_its_defaults_is_rnn_cores_to_the_bit(corpus, settings):
    """workbook.training.train hands rnn_core.train richer collaborators; with nothing beyond the
    assignment asked for, the run is rnn_core's own, byte for byte."""
    _, vocab, data = corpus

    def run(train):
        rng = np.random.default_rng(4)
        rnn = rc.init_rnn(vocab.K, 12, rng=rng, sigma=0.1)
        return rnn, train(rnn, data[:3000], n_updates=330, rng=rng, sample_every=100, sample_length=40, **settings)

    (core_rnn, core), (wb_rnn, wb) = run(rc.train), run(training.train)
    assert type(core) is rc.History and isinstance(wb, training.RunHistory)
    for name in ("loss", "smooth_loss", "epoch"):
        assert getattr(core, name).tobytes() == getattr(wb, name).tobytes(), name
    assert [(k, s, ix.tobytes()) for k, s, ix in core.samples] == [(k, s, ix.tobytes()) for k, s, ix in wb.samples]
    assert (core.best_update, core.best_x, core.best_h.tobytes()) == (wb.best_update, wb.best_x, wb.best_h.tobytes())
    for a, b in zip(core.best.arrays() + core_rnn.arrays(), wb.best.arrays() + wb_rnn.arrays()):
        assert a.tobytes() == b.tobytes()
    assert core.epoch[-1] >= 1                      # the runs crossed an epoch's end


# ----------------------------------------------------------------------------- mini-batches

def batch_case(vocab, data, m, T, B, seed):
    """A model (sigma 0.1), B streams of T characters from the text's start, random h0 (m, B)."""
    rng = np.random.default_rng(seed)
    rnn = rc.init_rnn(vocab.K, m, rng=rng, sigma=0.1)
    X, Y = data[:T * B].reshape(B, T).T, data[1:T * B + 1].reshape(B, T).T
    return rnn, X, Y, rng.standard_normal((m, B)) * 0.1


@pytest.mark.parametrize("resets", [False, True])
def test_batch_gradients_match_the_complex_step_derivative_of_the_textbook_loss(corpus, resets):
    _, vocab, data = corpus
    rnn, X, Y, H0 = batch_case(vocab, data, m=5, T=9, B=3, seed=4)
    reset_ix = int(X[4, 0]) if resets else None      # some streams restart mid-chunk
    if resets:
        assert (X == reset_ix).sum() >= 1
    loss, G, _ = batched.loss_and_grads(rnn, X, Y, H0, reset_ix=reset_ix)
    P = as_dict(rnn)
    assert loss == pytest.approx(tb.batch_loss(P, X, Y, H0, reset_ix), rel=1e-12)
    # complex step on the textbook loss: Im L(theta + i s) / s, exact to round-off (no subtraction)
    Pc = {k: v.astype(complex) for k, v in P.items()}
    for name in rc.RNN.NAMES:
        num = np.zeros_like(P[name])
        for idx in np.ndindex(P[name].shape):
            Pc[name][idx] += 1e-30j
            num[idx] = tb.batch_loss(Pc, X, Y, H0, reset_ix).imag / 1e-30
            Pc[name][idx] = P[name][idx]
        err = rc.relative_error(getattr(G, name), num)
        assert err.max() < 1e-10, (name, err.max())


def test_a_wrong_reset_is_caught_by_the_gradient_comparison(corpus):
    """The same comparison fails when the backward pass ignores the resets: it has teeth."""
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, 5, rng=np.random.default_rng(4), sigma=0.3)
    X, Y = data[:27].reshape(3, 9).T, data[1:28].reshape(3, 9).T
    reset_ix = int(X[4, 0])
    _, G_reset, _ = batched.loss_and_grads(rnn, X, Y, np.zeros((5, 3)), reset_ix=reset_ix)
    _, G_plain, _ = batched.loss_and_grads(rnn, X, Y, np.zeros((5, 3)))
    assert rc.relative_error(G_reset.W, G_plain.W).max() > 1e-3


def test_huge_logits_fall_back_to_the_shifted_softmax(corpus):
    """exp overflows past o = 709: the batch pass must then shift the logits, not return inf."""
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, 6, rng=np.random.default_rng(5), sigma=0.1)
    rnn.c[:5] = 800.0                    # five characters with logits beyond exp's range
    X, Y = data[:20].reshape(2, 10).T, data[1:21].reshape(2, 10).T
    H0 = np.zeros((6, 2))
    loss, G, _ = batched.loss_and_grads(rnn, X, Y, H0)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in G.arrays())
    want = 0.0                           # the stable log-sum-exp, written out here
    for j in range(2):
        h = np.zeros(6)
        for t in range(10):
            h = np.tanh(rnn.W @ h + rnn.U[:, X[t, j]] + rnn.b[:, 0])
            o = rnn.V @ h + rnn.c[:, 0]
            want += o.max() + np.log(np.exp(o - o.max()).sum()) - o[Y[t, j]]
    assert loss == pytest.approx(want / 2, rel=1e-12)
    shifted = rc.RNN(*(a.copy() for a in rnn.arrays()))
    shifted.c -= 800.0                   # softmax ignores a shift of every logit: same gradients
    _, G2, _ = batched.loss_and_grads(shifted, X, Y, H0)
    for name in ("U", "W", "V", "b"):
        np.testing.assert_allclose(getattr(G, name), getattr(G2, name), rtol=1e-9, atol=1e-12)


def float32_pass(rnn, X, Y, H0, keep=None, f=np.float32):
    """One batched pass with parameters, buffers and gradients in dtype f (float32 unless given)."""
    P = rnn.astype(f)
    G, _ = rc.RNN.packed(rnn.K, rnn.m, f)
    buf = batched.BatchBuffers(rnn.K, rnn.m, X.shape[0], X.shape[1], keep is not None, f)
    loss = batched.forward_backward_batch(P, X, Y, H0.T.astype(f), buf, G, keep)
    return loss, G, buf


@pytest.mark.parametrize("resets", [False, True])
def test_float32_pass_agrees_with_float64_to_float32_precision(corpus, resets):
    _, vocab, data = corpus
    B = 8
    rnn, X, Y, H0 = batch_case(vocab, data, m=30, T=25, B=B, seed=8)
    reset_ix = vocab.chars.index(" ") if resets else None
    loss64, G64, h64 = batched.loss_and_grads(rnn, X, Y, H0, reset_ix=reset_ix)
    keep = None if reset_ix is None else batched.resets(X, reset_ix, np.float32)
    loss32, G32, buf = float32_pass(rnn, X, Y, H0, keep)
    assert all(g.dtype == np.float32 for g in G32.arrays()) and buf.H.dtype == np.float32
    assert loss32 / B == pytest.approx(loss64, rel=1e-5)
    for name in rc.RNN.NAMES:
        g64, g32 = getattr(G64, name), getattr(G32, name) / B
        assert np.abs(g32 - g64).max() <= 1e-4 * np.abs(g64).max(), name
    np.testing.assert_allclose(buf.H[-1].T, h64, atol=1e-5)


def test_float32_training_follows_float64_and_returns_float64_models(corpus):
    _, vocab, data = corpus
    runs = {}
    for dtype in params.BY_NAME["dtype"].kind.options:
        rnn = rc.init_rnn(vocab.K, 16, rng=np.random.default_rng(2), sigma=0.1)
        runs[dtype] = (rnn, training.train(rnn, data[:20_000], n_updates=60, rng=np.random.default_rng(3),
                                     batch_size=4, sample_every=50, sample_length=20,
                                     val_data=data[20_000:22_000], val_every=30, dtype=dtype))
    (r64, h64), (r32, h32) = runs["float64"], runs["float32"]
    np.testing.assert_allclose(h32.loss, h64.loss, rtol=1e-3)
    np.testing.assert_allclose(h32.val_loss, h64.val_loss, rtol=1e-3)
    assert not np.array_equal(h32.loss, h64.loss)          # float32 did run
    for a, b in zip(r32.arrays(), h32.best.arrays()):
        assert a.dtype == np.float64 and b.dtype == np.float64
    np.testing.assert_allclose(r32.W, r64.W, atol=1e-3)


def test_unknown_dtype_is_refused_with_the_choices():
    with pytest.raises(rc.RNNError, match="unknown dtype 'float16'; choose one of: float64, float32"):
        params.check({"dtype": "float16"})


class FakeBlas:
    """Stands in for threadpoolctl's controller of one BLAS library."""

    def __init__(self, n):
        self.n, self.calls = n, []

    def get_num_threads(self):
        return self.n

    def set_num_threads(self, n):
        self.calls.append(n)
        self.n = n


def test_recurrences_run_on_one_blas_thread_and_the_count_comes_back(monkeypatch):
    two, one = FakeBlas(2), FakeBlas(1)
    blas = batched.BlasThreads()
    monkeypatch.setattr(blas, "libs", [two, one])
    with blas.serial():
        assert (two.n, one.n) == (1, 1)
    assert (two.n, one.n) == (2, 1) and one.calls == []    # one that was at 1 is left alone
    with pytest.raises(ZeroDivisionError):
        with blas.serial():
            1 / 0
    assert two.n == 2                                       # restored after an error too


@pytest.mark.parametrize("threads, dtype, pieces", [(1, np.float32, 2), (2, np.float32, 1), (1, np.float64, 1)])
def test_weight_gradients_are_cut_into_row_pieces_only_for_float32_on_one_thread(
        corpus, monkeypatch, threads, dtype, pieces):
    _, vocab, data = corpus
    monkeypatch.setattr(batched.BLAS, "libs", [FakeBlas(threads)])
    rnn, X, Y, H0 = batch_case(vocab, data, m=30, T=25, B=16, seed=9)      # 400 rows
    loss, G, buf = float32_pass(rnn, X, Y, H0, f=dtype)
    assert buf.pieces == pieces
    loss64, G64, _ = batched.loss_and_grads(rnn, X, Y, H0)
    assert loss / 16 == pytest.approx(loss64, rel=1e-5)
    for name in rc.RNN.NAMES:
        g64 = getattr(G64, name)
        assert np.abs(getattr(G, name) / 16 - g64).max() <= 1e-4 * np.abs(g64).max(), name


def test_a_product_in_row_pieces_is_the_whole_product():
    rng = np.random.default_rng(4)
    A, B = rng.standard_normal((803, 30)), rng.standard_normal((803, 7))     # 803 = 4 uneven pieces
    buf = batched.BatchBuffers(7, 30, 1, 1, False)
    buf.pieces = 4
    out = np.empty((30, 7))
    batched.matmul_tn(A, B, out, buf)
    np.testing.assert_allclose(out, A.T @ B, rtol=1e-12, atol=1e-12)
    assert buf.spare[(30, 7)].shape == (30, 7)             # the pieces did run


def test_the_real_blas_is_switched_when_threadpoolctl_sees_it():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    ctl = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not ctl.lib_controllers:
        pytest.skip("threadpoolctl sees no BLAS library")
    with ctl.limit(limits=2):
        with batched.BLAS.serial():
            assert {lib.get_num_threads() for lib in ctl.lib_controllers} == {1}
        assert {lib.get_num_threads() for lib in ctl.lib_controllers} == {2}


def test_batch_of_one_is_the_single_stream_computation(corpus):
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, 20, rng=np.random.default_rng(1), sigma=0.1)
    h0 = np.random.default_rng(2).standard_normal((20, 1)) * 0.1
    l1, g1, h1 = rc.loss_and_grads(rnn, data[:25], data[1:26], h0)
    lb, gb, hb = batched.loss_and_grads(rnn, data[:25, None], data[1:26, None], h0)
    assert lb == pytest.approx(l1, rel=1e-13)
    for a, b in zip(g1.arrays(), gb.arrays()):
        np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(hb, h1, rtol=1e-13)


def test_batch_streams_start_evenly_spaced_and_wrap_together(corpus):
    _, vocab, data = corpus
    short = data[:1001]                  # N - 1 = 1000: B = 4 streams of 250, 10 chunks of 25 each
    rnn = rc.init_rnn(vocab.K, 12, rng=np.random.default_rng(3), sigma=0.1)
    hist = training.train(rnn.copy(), short, n_updates=35, rng=np.random.default_rng(0), batch_size=4,
                    sample_length=0)
    first = np.mean([rc.loss_and_grads(rnn, short[s:s + 25], short[s + 1:s + 26], np.zeros((12, 1)))[0]
                     for s in (0, 250, 500, 750)])
    assert hist.loss[0] == pytest.approx(first, rel=1e-12)
    assert hist.epoch.tolist() == [k // 10 for k in range(35)]


def test_shuffled_order_visits_every_chunk_once_per_epoch(corpus, monkeypatch):
    _, vocab, data = corpus
    short = data[:501]                   # 20 chunks of 25
    chunks = {tuple(short[s:s + 25].tolist()): s for s in range(0, 500, 25)}
    assert len(chunks) == 20             # each chunk recognisable by its characters
    calls = []
    real = training.forward_backward_batch

    def spy(P, X, Y, H0, buf, G, keep=None, scale=1.0):
        calls.append((chunks[tuple(X[:, 0].tolist())], bool(H0.any())))
        return real(P, X, Y, H0, buf, G, keep, scale)

    monkeypatch.setattr(training, "forward_backward_batch", spy)
    rnn = rc.init_rnn(vocab.K, 8, rng=np.random.default_rng(3), sigma=0.1)
    hist = training.train(rnn, short, n_updates=60, rng=np.random.default_rng(0), chunk_order="shuffled",
                    sample_length=0)
    assert not any(carried for _, carried in calls)      # every chunk from hprev = 0
    epochs = [[s for s, _ in calls[i:i + 20]] for i in range(0, 60, 20)]
    for ep in epochs:
        assert sorted(ep) == list(range(0, 500, 25))
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != sorted(epochs[0])
    assert hist.epoch.tolist() == [k // 20 for k in range(60)]


def test_random_order_starts_anywhere_uniformly_each_chunk_from_zero(corpus, monkeypatch):
    _, vocab, data = corpus
    short = data[:1001]                  # N = 1001, T = 25: starts 0..975, each a whole chunk of the text
    starts, carried = [], []
    real_next, real_pass = training.RunReader.next_chunk, training.forward_backward_batch

    def next_chunk(self, st):
        s = real_next(self, st)
        starts.append(s.copy())
        return s

    def spy(P, X, Y, H0, buf, G, keep=None, scale=1.0):
        carried.append(bool(H0.any()))
        np.testing.assert_array_equal(X, short[starts[-1][None, :] + np.arange(25)[:, None]])   # the chunks read
        return real_pass(P, X, Y, H0, buf, G, keep, scale)

    monkeypatch.setattr(training.RunReader, "next_chunk", next_chunk)
    monkeypatch.setattr(training, "forward_backward_batch", spy)
    rnn = rc.init_rnn(vocab.K, 6, rng=np.random.default_rng(3), sigma=0.1)
    hist = training.train(rnn, short, n_updates=2500, rng=np.random.default_rng(0), chunk_order="random",
                    batch_size=4, sample_length=0)
    s = np.concatenate(starts[:2500])    # the last call only samples (none here) and stops
    assert s.min() == 0 and s.max() == 975 and not any(carried)
    assert len(np.unique(s)) > 950                        # every position, not only chunk boundaries
    counts = np.bincount(s // 61, minlength=16)          # 16 bins of 61 starts (976 = 16 x 61)
    expected = len(s) / 16
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 37.7, counts                            # chi-square, 15 degrees of freedom, p = 0.001
    assert hist.epoch.tolist() == [k * 100 // 1000 for k in range(2500)]   # text lengths read


# ----------------------------------------------------------------------------- validation

def test_validation_scores_text_the_training_never_saw():
    train_text = "abab aab abba\n" * 300
    val_text = "cdc dcc\n" * 40                 # c and d occur only in the held-out text
    vocab = rc.Vocab(train_text + val_text)
    rng = np.random.default_rng(0)
    rnn = rc.init_rnn(vocab.K, 10, rng=rng, sigma=0.1)
    U0 = rnn.U.copy()
    val = vocab.encode(val_text)
    hist = training.train(rnn, vocab.encode(train_text), n_updates=250, rng=rng, val_data=val, val_every=100,
                    sample_length=0)
    for ch in "cd":                            # a column of U moves only when its character is an input
        np.testing.assert_array_equal(rnn.U[:, vocab.chars.index(ch)], U0[:, vocab.chars.index(ch)])
    assert not np.array_equal(rnn.U[:, vocab.chars.index("a")], U0[:, vocab.chars.index("a")])
    assert hist.val_update.tolist() == [100, 200, 250]
    train_ix = vocab.encode(train_text)   # scored as a continuation: from the state training carries
    assert hist.val_loss[-1] == training.evaluate(rnn, val, h0=hist.last_h, context=train_ix)
    # the score is the textbook's per-character loss of the held-out text, read in one stream
    expected = tb.stream_loss(as_dict(rnn), val[:-1], val[1:], np.zeros((10, 1))) / (len(val) - 1)
    assert training.evaluate(rnn, val, streams=1) == pytest.approx(expected, rel=1e-10)
    # ... and after reading the end of the training text from the carried state
    h = hist.last_h.reshape(-1, 1)
    for x in train_ix[-1000:]:
        h = np.tanh(rnn.W @ h + rnn.U[:, [x]] + rnn.b)
    expected = tb.stream_loss(as_dict(rnn), val[:-1], val[1:], h) / (len(val) - 1)
    assert training.evaluate(rnn, val, h0=hist.last_h, context=train_ix, streams=1) == pytest.approx(expected, rel=1e-10)
    assert hist.val_loss[-1] > 3 * hist.smooth_loss[-1] / 25   # unseen characters: far worse


def test_best_by_validation_picks_the_lowest_validation_score(corpus):
    _, vocab, data = corpus
    rng = np.random.default_rng(1)
    rnn = rc.init_rnn(vocab.K, 16, rng=rng)
    hist = training.train(rnn, data[:40_000], n_updates=600, rng=rng, val_data=data[50_000:55_000],
                    val_every=50, best_by="val", sample_length=0)
    i = int(np.argmin(hist.val_loss))
    assert hist.best_update == hist.val_update[i] and hist.best_val_loss == hist.val_loss[i]
    assert training.evaluate(hist.best, data[50_000:55_000], h0=hist.best_h, context=data[:40_000]) == hist.best_val_loss


# ----------------------------------------------------------------------------- checkpoints and resume

MODES = {
    "assignment": {},
    "batch": {"batch_size": 3},
    "shuffled": {"chunk_order": "shuffled"},
    "val+resets+mean": {"val_data": "held out", "val_every": 40, "best_by": "val", "reset_ix": "\n",
                        "optimizer": "adam", "eta": 0.01, "loss_reduction": "mean"},
    "float32 batch": {"batch_size": 12, "dtype": "float32"},   # 300 rows: weight gradients in pieces
    "random": {"chunk_order": "random", "batch_size": 3, "val_data": "held out", "val_every": 40},
}


def run(vocab, data, n, path, resume=False, stop_at=None, monkeypatch=None, **kw):
    kw = dict(kw)
    if kw.get("val_data") == "held out":
        kw["val_data"] = data[30_000:32_000]
    if kw.get("reset_ix") == "\n":
        kw["reset_ix"] = vocab.chars.index("\n")
    rng = np.random.default_rng(7)
    rnn = rc.init_rnn(vocab.K, 12, rng=rng, sigma=0.1)
    if stop_at is not None:               # a real SIGINT, delivered inside update number stop_at
        real_step = rc.Optimizer.step

        def step(self, theta, g):
            real_step(self, theta, g)
            if self.t == stop_at:
                os.kill(os.getpid(), signal.SIGINT)
        monkeypatch.setattr(rc.Optimizer, "step", step)
    try:
        return training.train(rnn, data[:6000], n_updates=n, rng=rng, sample_every=90, sample_length=30,
                        checkpoint=path, checkpoint_every=100, resume=resume, info={"vocab": vocab.chars},
                        **kw)
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()


def same_history(a, b):
    assert a.loss.tobytes() == b.loss.tobytes()
    assert a.smooth_loss.tobytes() == b.smooth_loss.tobytes()
    assert a.epoch.tobytes() == b.epoch.tobytes()
    assert [(k, s, ix.tobytes()) for k, s, ix in a.samples] == [(k, s, ix.tobytes()) for k, s, ix in b.samples]
    assert a.val_update.tobytes() == b.val_update.tobytes() and a.val_loss.tobytes() == b.val_loss.tobytes()
    assert (a.best_update, a.best_smooth_loss) == (b.best_update, b.best_smooth_loss)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.best.arrays(), b.best.arrays()))


@pytest.mark.parametrize("mode", MODES)
def test_interrupted_and_resumed_run_is_bit_identical(corpus, tmp_path, monkeypatch, mode):
    _, vocab, data = corpus
    whole = run(vocab, data, 400, tmp_path / "whole.npz", **MODES[mode])
    part = run(vocab, data, 400, tmp_path / "cut.npz", stop_at=237, monkeypatch=monkeypatch, **MODES[mode])
    assert part.stopped == "interrupted" and part.updates == 237 and "Ctrl-C" in part.message
    assert len(part.samples) == 3 and part.best is not None        # the run so far is usable
    resumed = run(vocab, data, 400, tmp_path / "cut.npz", resume=True, **MODES[mode])
    assert resumed.resumed_from == 237 and resumed.stopped == ""
    same_history(whole, resumed)


def test_progress_starts_where_a_resumed_run_starts(corpus, tmp_path):
    _, vocab, data = corpus
    run(vocab, data, 250, tmp_path / "ck.npz")
    calls = []
    run(vocab, data, 420, tmp_path / "ck.npz", resume=True, progress=lambda k, s: calls.append(k))
    assert calls == [250, 300, 400, 420]          # a bar starts at 250, not at 0


def test_a_finished_run_extends_to_more_updates_as_if_never_stopped(corpus, tmp_path):
    _, vocab, data = corpus
    whole = run(vocab, data, 450, tmp_path / "whole.npz", **MODES["val+resets+mean"])
    run(vocab, data, 250, tmp_path / "short.npz", **MODES["val+resets+mean"])
    extended = run(vocab, data, 450, tmp_path / "short.npz", resume=True, **MODES["val+resets+mean"])
    same_history(whole, extended)


def test_resume_refuses_another_text_settings_vocabulary_or_a_shorter_run(corpus, tmp_path):
    _, vocab, data = corpus
    path = tmp_path / "ck.npz"
    run(vocab, data, 120, path)
    rng = np.random.default_rng(7)
    rnn = rc.init_rnn(vocab.K, 12, rng=rng, sigma=0.1)
    base = dict(n_updates=200, rng=rng, sample_every=90, sample_length=30, checkpoint=path,
                checkpoint_every=100, resume=True, info={"vocab": vocab.chars})
    with pytest.raises(rc.RNNError, match="another text"):
        training.train(rnn, data[1:6001], **base)
    with pytest.raises(rc.RNNError, match=r"other settings \(eta=0.1 there, 0.2 now\)"):
        training.train(rnn, data[:6000], **{**base, "eta": 0.2})
    with pytest.raises(rc.RNNError, match="another vocabulary"):
        training.train(rnn, data[:6000], **{**base, "info": {"vocab": vocab.chars[::-1]}})
    with pytest.raises(rc.RNNError, match=r"other settings \(dtype='float64' there, 'float32' now\)"):
        training.train(rnn, data[:6000], **{**base, "dtype": "float32"})
    with pytest.raises(rc.RNNError, match="beyond n_updates = 100"):
        training.train(rnn, data[:6000], **{**base, "n_updates": 100})
    with pytest.raises(rc.RNNError, match="no checkpoint at .*missing.npz"):
        training.train(rnn, data[:6000], **{**base, "checkpoint": tmp_path / "missing.npz"})
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(rc.RNNError, match="not a readable checkpoint.*truncated"):
        training.train(rnn, data[:6000], **base)


def test_checkpoint_files_are_written_atomically_on_schedule(corpus, tmp_path, monkeypatch):
    _, vocab, data = corpus
    written = []
    real = files.write_checkpoint
    monkeypatch.setattr(files, "write_checkpoint", lambda path, config, state, *a: written.append(state["k"])
                        or real(path, config, state, *a))
    run(vocab, data, 350, tmp_path / "ck.npz")
    assert written == [100, 200, 300, 350]
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]       # no temporary file left


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    _, vocab, data = corpus
    rng = np.random.default_rng(0)
    rnn = rc.init_rnn(vocab.K, 12, rng=rng)
    path = tmp_path / "ck.npz"
    # eta 1e308: the first AdaGrad step moves weights to about 1e308, the second to infinity
    hist = training.train(rnn, data[:6000], n_updates=50, rng=rng, eta=1e308, checkpoint=path,
                    checkpoint_every=1, sample_length=0)
    assert hist.stopped == "diverged" and hist.updates == 1
    assert "the loss became nan at update 2" in hist.message and "Lower eta (now 1e+308)" in hist.message
    assert np.isfinite(hist.loss).all()
    # the best by smooth loss was the model after update 1: the one whose loss is nan. None is kept, said so
    assert hist.best is None and "no best model is kept" in hist.message
    assert "the checkpoint keeps update 1" in hist.message
    with np.load(path) as z:
        assert len(z["loss"]) == 1 and np.isfinite(z["theta"]).all()
    # without a checkpoint written yet, the message names none
    rng = np.random.default_rng(0)
    rnn = rc.init_rnn(vocab.K, 12, rng=rng)
    hist = training.train(rnn, data[:6000], n_updates=50, rng=rng, eta=1e308, checkpoint=tmp_path / "none.npz",
                    checkpoint_every=10, sample_length=0)
    assert "no checkpoint was written before it" in hist.message and "keeps update" not in hist.message
    assert not (tmp_path / "none.npz").exists()


def test_a_best_model_with_a_finite_loss_is_kept_when_training_diverges_later(corpus, monkeypatch):
    _, vocab, data = corpus
    rng = np.random.default_rng(0)
    rnn = rc.init_rnn(vocab.K, 12, rng=rng, sigma=0.1)
    real = training.RunReader.learn
    # losses raised from update 101 on keep the best at update 100 at the latest; update 151's is nan
    monkeypatch.setattr(training.RunReader, "learn", lambda self, st, starts: math.nan if st.k == 150 else
                        real(self, st, starts) + (1e3 if st.k >= 100 else 0.0))
    hist = training.train(rnn, data[:6000], n_updates=300, rng=rng, sample_length=0)
    assert hist.stopped == "diverged" and hist.updates == 150
    assert hist.best_update <= 100 and hist.best is not None
    assert f"the best model is that of update {hist.best_update:,}" in hist.message


def test_train_leaves_the_sigint_handler_as_it_found_it(corpus):
    _, vocab, data = corpus
    before = signal.getsignal(signal.SIGINT)
    training.train(rc.init_rnn(vocab.K, 5, rng=np.random.default_rng(0)), data[:2000], n_updates=3,
             rng=np.random.default_rng(0), sample_length=0)
    assert signal.getsignal(signal.SIGINT) is before


def test_evaluate_with_resets_equals_the_textbook_loss(corpus):
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, 10, rng=np.random.default_rng(2), sigma=0.2)
    text = data[:3000]
    reset_ix = vocab.chars.index("\n")
    expected = tb.stream_loss(as_dict(rnn), text[:-1], text[1:], np.zeros((10, 1)), reset_ix) / (len(text) - 1)
    assert training.evaluate(rnn, text, streams=1, reset_ix=reset_ix) == pytest.approx(expected, rel=1e-10)


# ----------------------------------------------------------------------------- the state object

def test_a_checkpoint_of_another_format_is_refused_in_one_line(corpus, tmp_path):
    """A checkpoint of another format (the first had no number in its config) is refused in one
    line, not upgraded."""
    _, vocab, data = corpus
    path = tmp_path / "ck.npz"
    run(vocab, data, 120, path)
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    config = files.from_json_array(members["config"])
    for version, config in ((1, {k: v for k, v in config.items() if k != "format"}), (9, {**config, "format": 9})):
        np.savez(path, **{**members, "config": files.json_array(config)})
        with pytest.raises(rc.RNNError) as err:
            run(vocab, data, 200, path, resume=True)
        assert f"checkpoint format {version}, this one reads {files.CHECKPOINT_FORMAT}" in str(err.value)
        assert "\n" not in str(err.value)


def test_a_field_added_to_the_state_is_saved_and_restored_with_nothing_else_changed(corpus):
    from dataclasses import dataclass, field

    @dataclass
    class Wider(training.RunState):
        extra: np.ndarray = field(default_factory=lambda: np.zeros(3))
        note: int = 0

    _, vocab, _ = corpus
    rnn = rc.init_rnn(vocab.K, 4, rng=np.random.default_rng(0))
    kw = dict(n_updates=10, batch_size=1, optimizer="adam", eta=0.1, dtype=np.float64)
    a = Wider.new(rnn, rng=np.random.default_rng(1), **kw)
    a.extra[:] = [1.5, -2.0, 3.25]
    a.note, a.opt.t, a.k = 7, 3, 2
    a.loss[:2], a.opt.S[:] = [4.0, 5.0], 0.5
    a.rng.random(5)
    saved = a.state_dict()
    assert {"extra", "note", "opt.M", "opt.S", "opt.t"} <= set(saved)
    b = Wider.new(rnn, rng=np.random.default_rng(99), **kw)
    b.load_state_dict(saved, "test")
    assert b.extra.tolist() == [1.5, -2.0, 3.25] and b.note == 7 and b.opt.t == 3
    assert b.loss[:2].tolist() == [4.0, 5.0] and (b.opt.S == 0.5).all()
    assert b.rng.random() == a.rng.random()           # the generator continues where it was
    assert b.P.W.base is b.theta or np.shares_memory(b.P.W, b.theta)   # P still views theta


def test_a_damaged_state_field_is_named_in_one_line(corpus, tmp_path):
    _, vocab, data = corpus
    path = tmp_path / "ck.npz"
    run(vocab, data, 120, path)
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    cases = {"theta": members["theta"][:-1], "hprev": members["hprev"].astype(np.float32)}
    for name, bad in cases.items():
        np.savez(path, **{**members, name: bad})
        with pytest.raises(rc.RNNError, match=rf"ck.npz: {name} is float\d+ of shape .*, expected float64 of "
                                              rf"shape .*; the file is damaged"):
            run(vocab, data, 200, path, resume=True)


def test_a_state_out_of_range_is_refused_before_it_resumes(corpus, tmp_path):
    """Values of the right type but impossible for this text and model (a position far past
    the end, samples whose lengths do not add up, NaN weights, a shuffled order pointing past
    the last chunk) are named in one line, not resumed into a silently different run."""
    _, vocab, data = corpus
    path = tmp_path / "ck.npz"
    run(vocab, data, 120, path, chunk_order="shuffled")
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    state = files.from_json_array(members["state"])
    theta = members["theta"].copy()
    theta[3] = np.nan
    cases = {
        "e": ({"state": files.json_array({**state, "e": 10**12})}, r"its position e = 1,000,000,000,000 is outside"),
        "pos": ({"state": files.json_array({**state, "pos": -3})}, "its shuffled order points outside"),
        "order": ({"order": members["order"] + 10**6}, "its shuffled order points outside"),
        "lengths": ({"sample_text_lengths": members["sample_text_lengths"] + 7}, "the lengths of sample_text do not add up"),
        "theta": ({"theta": theta}, "theta holds NaN or infinite values"),
        "sample": ({"sample_text": members["sample_text"] + 10**4}, "its samples hold characters outside"),
        "best": ({"state": files.json_array({**state, "best_update": 10**9})}, "it names updates beyond its own 120"),
    }
    for name, (change, message) in cases.items():
        np.savez(path, **{**members, **change})
        with pytest.raises(rc.RNNError) as err:
            run(vocab, data, 200, path, resume=True, chunk_order="shuffled")
        assert message in str(err.value) and "\n" not in str(err.value), name
        assert "the file is damaged" in str(err.value)
    np.savez(path, **members)                    # the file as written resumes
    assert run(vocab, data, 200, path, resume=True, chunk_order="shuffled").resumed_from == 120


def test_checkpoint_json_that_is_not_ours_is_named_in_one_line(corpus, tmp_path):
    """A config without K, a state that is a list, JSON nested 100,000 deep: one line each,
    never a KeyError, TypeError or RecursionError."""
    _, vocab, data = corpus
    path = tmp_path / "ck.npz"
    run(vocab, data, 120, path)
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    config = files.from_json_array(members["config"])
    deep = np.frombuffer(b"[" * 100_000 + b"]" * 100_000, dtype=np.uint8)
    for change in ({"config": files.json_array({k: v for k, v in config.items() if k != "K"})},
                   {"state": files.json_array([1, 2])}, {"state": deep}, {"config": members["theta"]}):
        np.savez(path, **{**members, **change})
        with pytest.raises(rc.RNNError, match="is not a readable checkpoint .*damaged"):
            run(vocab, data, 200, path, resume=True)


def test_temporary_files_of_dead_writers_are_removed_by_the_next_write(corpus, tmp_path):
    """kill -9 during a checkpoint leaves .ck.npz.<pid>.tmp; the next write of that file removes
    those of processes that no longer run (and leaves a live writer's alone)."""
    _, vocab, data = corpus
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale, live = tmp_path / f".ck.npz.{dead}.tmp", tmp_path / f".ck.npz.{os.getppid()}.tmp"
    other = tmp_path / f".other.npz.{dead}.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"half a checkpoint")
    run(vocab, data, 120, tmp_path / "ck.npz")
    assert not stale.exists() and live.exists() and other.exists()


def test_training_time_adds_up_over_sessions(corpus, tmp_path):
    _, vocab, data = corpus
    first = run(vocab, data, 200, tmp_path / "ck.npz")
    second = run(vocab, data, 400, tmp_path / "ck.npz", resume=True)
    assert 0 < first.seconds < second.seconds
    with np.load(tmp_path / "ck.npz") as z:
        assert files.from_json_array(z["state"])["seconds"] == pytest.approx(second.seconds, abs=0.05)


# ----------------------------------------------------------------------------- scores and samples from a state the model knows

@pytest.fixture(scope="module")
def stuck_from_zero():
    """Seed 9 of the workbook's default run (m = 100, sigma 0.01, AdaGrad, the last 10% held out)
    after 3,000 updates: a model that falls into a state it never leaves when it starts from h = 0."""
    text = rc.load_text(ROOT / "data" / "shakespeare.txt")
    vocab = rc.Vocab(text)
    cut = len(text) - int(round(len(text) * 0.1))
    train, val = vocab.encode(text[:cut]), vocab.encode(text[cut:cut + 30_000])
    rng = np.random.default_rng(9)
    rnn = rc.init_rnn(vocab.K, 100, rng=rng, sigma=0.01)
    hist = training.train(rnn, train, n_updates=3000, rng=rng, sample_length=0, val_data=val, val_every=3000)
    return vocab, train, val, rnn, hist


def test_held_out_loss_is_read_as_a_continuation_of_training(stuck_from_zero):
    vocab, train, val, rnn, hist = stuck_from_zero
    uniform = math.log(vocab.K)
    zero = training.evaluate(rnn, val)                             # every piece from h = 0
    continuous = training.evaluate(rnn, val, h0=hist.last_h, context=train, streams=1)   # one reading
    delivered = hist.val_loss[-1]                            # what training reports: 64 pieces
    assert zero > uniform                                    # worse than guessing: the model never learned h = 0
    assert delivered < uniform - 1.0
    assert abs(delivered - continuous) < 0.01                # the pieces do not change the score
    # the continued reading, written out: from the carried state, through the training text's end
    h = hist.last_h.copy()
    for x in train[-1000:]:
        h = np.tanh(rnn.W @ h + rnn.U[:, x] + rnn.b[:, 0])
    textbook = tb.stream_loss(as_dict(rnn), val[:-1], val[1:], h.reshape(-1, 1)) / (len(val) - 1)
    assert continuous == pytest.approx(textbook, rel=1e-9)


def prose_share(text: str) -> float:
    """The share of letters, spaces, line breaks and common punctuation: about 1.00 in the book."""
    return sum(ch.isalpha() or ch in " \n,.;:'!?-" for ch in text) / len(text)


def test_a_passage_from_the_state_the_best_model_carried_is_text_not_noise(stuck_from_zero):
    vocab, train, _, _, hist = stuck_from_zero
    assert prose_share(vocab.decode(train[:5000])) > 0.97
    draw = lambda h0, x0: vocab.decode(rc.synthesize(hist.best, h0, x0, 600, rng=np.random.default_rng(4)))
    carried = draw(hist.best_h, hist.best_x)
    zero = draw(np.zeros(100), vocab.chars.index("\n"))
    assert prose_share(carried) > 0.9, carried[:200]
    assert prose_share(zero) < 0.6, zero[:200]               # the test tells noise from text
    assert 0 <= hist.best_x < vocab.K and hist.best_h.shape == (100,) and np.abs(hist.best_h).max() > 0.1
