"""The LSTM beside the vanilla RNN (workbook/lstm.py), each part against an independent
expectation: its gradients against the complex step of a textbook forward pass (one stream, and
streams side by side with tweets' resets and carried states) and against torch.nn.LSTM; training
that resumes to the bit; held-out scoring against a one-character-at-a-time reading; sampling
against the softmax it should draw from; model files; a whole run's report; and the numbers of
the study that compares the two cells."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

import rnn_core as rc
from workbook import compare, files, lstm, nets, pytorch, study, training
from test_planner import TINY, make, pdf_first_page, pdf_text_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus():
    text = rc.load_text(ROOT / "data" / "shakespeare.txt")[:40_000]
    vocab = rc.Vocab(text)
    return vocab, vocab.encode(text).astype(np.intp)


def worst(G, N) -> float:
    return max(float(rc.relative_error(a, b).max()) for a, b in zip(G.arrays(), N.arrays()))


def test_the_shapes_count_four_gates_and_the_forget_bias_starts_at_one():
    P = lstm.init_lstm(7, 5, rng=np.random.default_rng(0))
    assert {n: a.shape for n, a in zip(P.NAMES, P.arrays())} == {
        "b": (20, 1), "c": (7, 1), "U": (20, 7), "W": (20, 5), "V": (7, 5)}
    assert (P.m, P.K) == (5, 7) and lstm.state_size(P) == 10
    assert (P.b[10:15] == 1).all() and (P.b[:10] == 0).all() and (P.b[15:] == 0).all()   # rows o, i, f, g
    assert lstm.n_params("lstm", 7, 5) == sum(a.size for a in P.arrays()) == 4 * 5 * (7 + 5 + 1) + 7 * 6
    mm = lstm.matching_m(76, 100)
    counts = [abs(lstm.n_params("rnn", 76, k) - lstm.n_params("lstm", 76, 100)) for k in (mm - 1, mm, mm + 1)]
    assert counts[1] == min(counts)


def test_one_streams_gradients_are_the_complex_steps_and_the_centred_differences(corpus):
    vocab, data = corpus
    P = lstm.init_lstm(vocab.K, 6, rng=np.random.default_rng(1), sigma=0.1)
    x, y = data[:25], data[1:26]
    s0 = np.random.default_rng(2).standard_normal((12, 1)) * 0.3     # a carried [h; C], not zeros
    loss, G, last = lstm.loss_and_grads(P, x, y, s0)
    assert worst(G, lstm.complex_step_grads(P, x, y, s0)) < 1e-10
    assert worst(G, lstm.numerical_grads(P, x, y, s0)) < 1e-4
    losses = lstm.perturbed_losses(P, x, y, s0, "c", 0.0)             # the independent forward pass
    assert math.isclose(loss, losses[0].sum(), rel_tol=1e-12)
    assert np.allclose(last, lstm.feed(P, s0, x), atol=1e-14)         # the state it carries on with


def test_streams_side_by_side_with_resets_are_each_streams_own_gradient_averaged(corpus):
    vocab, data = corpus
    m, B, T = 5, 3, 25
    P = lstm.init_lstm(vocab.K, m, rng=np.random.default_rng(3), sigma=0.1)
    L = (len(data) - 1) // B
    X = np.stack([data[j * L:j * L + T] for j in range(B)], axis=1)
    Y = np.stack([data[j * L + 1:j * L + T + 1] for j in range(B)], axis=1)
    reset = int(X[7, 1])                                              # some character restarts the state
    S0 = np.random.default_rng(4).standard_normal((2 * m, B)) * 0.3
    _, G, _ = lstm.loss_and_grads(P, X, Y, S0, reset_ix=reset)
    expected = [np.zeros_like(a) for a in G.arrays()]
    for j in range(B):
        cuts = [0] + [t for t in range(1, T) if X[t, j] == reset] + [T]
        for a, b in zip(cuts, cuts[1:]):
            fresh = a > 0 or X[0, j] == reset
            g = lstm.complex_step_grads(P, X[a:b, j], Y[a:b, j], np.zeros((2 * m, 1)) if fresh else S0[:, j:j + 1])
            for total, part in zip(expected, g.arrays()):
                total += part / B
    assert worst(G, lstm.LSTM(*expected)) < 1e-10


def test_pytorchs_own_lstm_agrees(corpus):
    pytest.importorskip("torch")
    vocab, data = corpus
    P = lstm.init_lstm(vocab.K, 7, rng=np.random.default_rng(5), sigma=0.1)
    s0 = np.random.default_rng(6).standard_normal((14, 1)) * 0.3
    _, G, _ = lstm.loss_and_grads(P, data[:25], data[1:26], s0)
    assert worst(G, pytorch.torch_lstm_grads(P, data[:25], data[1:26], s0)) < 1e-10


@pytest.mark.parametrize("settings", [{}, {"batch_size": 3, "dtype": "float32", "optimizer": "adam", "eta": 0.01},
                                      {"batch_size": 2, "chunk_order": "shuffled"}, {"chunk_order": "random"}])
def test_training_resumes_to_the_bit_and_learns(corpus, tmp_path, settings):
    vocab, data = corpus
    train, held = data[:36_000], data[36_000:]

    def run(n, resume=False, check=tmp_path / "a.npz"):
        P = lstm.init_lstm(vocab.K, 16, rng=np.random.default_rng(7))
        h = training.train(P, train, n_updates=n, rng=np.random.default_rng(7), val_data=held, val_every=100,
                           checkpoint=check, checkpoint_every=150, resume=resume, sample_every=100,
                           sample_length=30, **settings)
        return P, h
    whole, hw = run(300, check=tmp_path / "whole.npz")
    run(150)
    resumed, hr = run(300, resume=True)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(whole.arrays(), resumed.arrays()))
    assert hw.loss.tobytes() == hr.loss.tobytes() and hw.val_loss.tobytes() == hr.val_loss.tobytes()
    assert type(hw.best) is lstm.LSTM and hw.best_h.shape == (32,)
    assert hw.val_loss[-1] < hw.val_loss[0] < math.log(vocab.K) + 0.05    # it learns, from about uniform


def test_the_held_out_score_is_the_one_character_at_a_time_reading(corpus):
    vocab, data = corpus
    P = lstm.init_lstm(vocab.K, 12, rng=np.random.default_rng(8), sigma=0.3)
    text = data[:1200]
    s, total = np.zeros((24, 1)), 0.0                      # the plain reading: feed, softmax, one by one
    for x, y in zip(text[:-1], text[1:]):
        s = lstm.feed(P, s, [x])
        o = P.V @ s[:12, 0] + P.c[:, 0]
        total += np.log(np.exp(o - o.max()).sum()) + o.max() - o[y]
    assert math.isclose(training.evaluate(P, text, streams=1), total / (len(text) - 1), rel_tol=1e-12)
    near_uniform = lstm.init_lstm(vocab.K, 12, rng=np.random.default_rng(8))
    assert abs(training.evaluate(near_uniform, text) - math.log(vocab.K)) < 0.01


def test_sampling_draws_from_the_softmax_of_the_state_it_reaches(corpus):
    vocab, data = corpus
    P = lstm.init_lstm(vocab.K, 8, rng=np.random.default_rng(9), sigma=0.5)
    s0 = lstm.feed(P, np.zeros((16, 1)), data[:50])
    s1 = lstm.feed(P, s0, [int(data[50])])
    o = P.V @ s1[:8, 0] + P.c[:, 0]
    p = np.exp(o - o.max())
    p /= p.sum()
    rng = np.random.default_rng(10)
    draws = np.array([lstm.synthesize(P, s0, int(data[50]), 1, rng=rng)[0] for _ in range(20_000)])
    counts = np.bincount(draws, minlength=vocab.K)
    seen = p * 20_000 > 5
    chi2 = (((counts - 20_000 * p) ** 2 / (20_000 * p))[seen]).sum()
    assert chi2 < seen.sum() + 5 * math.sqrt(2 * seen.sum())          # far inside the chi-square's tail
    assert lstm.synthesize(P, s0, int(data[50]), 1, rng=rng, greedy=True)[0] == int(p.argmax())
    top = lstm.synthesize(P, s0, int(data[50]), 1, rng=rng, top_p=1e-9)[0]
    assert top == int(p.argmax())                          # the smallest nucleus: the likeliest alone
    stop = int(p.argmax())
    assert len(lstm.synthesize(P, s0, int(data[50]), 5, rng=rng, greedy=True, stop_ix=stop)) == 0


def test_a_model_file_keeps_the_cell_and_its_state(corpus, tmp_path):
    vocab, _ = corpus
    P = lstm.init_lstm(vocab.K, 6, rng=np.random.default_rng(11))
    files.save_model(tmp_path / "m.npz", P, vocab, {"cell": "lstm"}, start=(np.arange(12.0), 3))
    Q, v, meta = files.load_model(tmp_path / "m.npz")
    assert type(Q) is lstm.LSTM and nets.of(Q).name == "lstm" and v == vocab
    assert all(a.tobytes() == b.tobytes() for a, b in zip(P.arrays(), Q.arrays()))
    assert meta["start_h"].tolist() == list(range(12)) and meta["start_x"] == 3
    R = rc.init_rnn(vocab.K, 6, rng=np.random.default_rng(11))
    files.save_model(tmp_path / "r.npz", R, vocab, start=(np.zeros(6), 3))
    assert type(files.load_model(tmp_path / "r.npz")[0]) is rc.RNN


def test_an_lstm_runs_report_names_the_cell_and_proves_its_gradients(tmp_path):
    make("report", "CELL=lstm", "N_UPDATES=200", f"P={TINY} prime_text=KING", reports=tmp_path)
    run = next(tmp_path.glob("classic-seed-1-lstm-*"))
    assert "a character-level LSTM" in pdf_first_page(run / "report.pdf")
    text = " ".join(pdf_text_of(run / "report.pdf").split())     # the table's cell wraps: its parts
    K = rc.Vocab(rc.load_text(ROOT / "data" / "shakespeare.txt")).K
    assert f"LSTM, m = 8 hidden units: {4 * 8 * (K + 8 + 1) + K * 9:,} parameters" in text
    assert f"a vanilla RNN of the same m has {8 * (K + 8 + 1) + K * 9:,})" in text
    check = json.loads((run / "grad_check.json").read_text())
    assert check["cell"] == "lstm"
    exact = [r for r in check["results"] if r["method"] == "complex step"]
    assert len(exact) == 5 and max(r["max"] for r in exact) < 1e-10
    assert type(files.load_model(run / "best_model.npz")[0]) is lstm.LSTM
    assert "prime text (read by the model, not written by it)" in text and "KING" in text


def run_of(cell, m, seed, val, seconds, updates=1000):
    """What compare.load_run gives, for the numbers cell_study reads."""
    return {"params": {"cell": cell, "m": m, "seed": seed}, "val": np.array(val, dtype=float),
            "val_last": val[-1][1], "wall_seconds": seconds, "updates": updates}


def test_the_gate_study_compares_at_equal_updates_and_equal_time():
    """Hand-made runs: the LSTM is slower per update; at the RNN's time it had made a quarter of
    its updates, and its score then is the one measured at update 250."""
    assert compare.cells_compared([["cell", ["rnn", "lstm"]]]) and not compare.cells_compared([["m", ["1"]]])
    pts = study.points(["classic"], ["1", "2"], [("cell", ["rnn", "lstm"])])
    extra = study.matched_points(pts, 100, 76)
    assert [p.values for p in extra] == [(("cell", "rnn"), ("m", str(lstm.matching_m(76, 100))))] * 2
    mm = lstm.matching_m(76, 100)                # the matched m takes the place of the user's own m
    assert extra[0].env({"M": "100", "P": "m=100 speed=False"})["P"] == f"speed=False cell=rnn m={mm}"
    assert "M" not in extra[0].env({"M": "100", "P": ""}) and pts[0].env({"M": "100", "P": "speed=False"}) == {
        "M": "100", "P": "speed=False cell=rnn", "PRESET": "classic", "SEED": "1"}
    groups = {
        "cell = lstm": [run_of("lstm", 10, s, [[250, 2.0 + d], [500, 1.8], [1000, 1.5 + d]], 40.0) for s, d in
                        ((1, 0.0), (2, 0.02))],
        "cell = rnn": [run_of("rnn", 10, s, [[250, 2.1], [500, 2.0], [1000, 1.9 + d]], 10.0) for s, d in
                       ((1, 0.0), (2, 0.02))],
    }
    equal, timed, sentence = compare.cell_study(groups, "val", 5)
    assert [r[:3] for r in equal] == [["LSTM, m = 10", f"{lstm.n_params('lstm', 5, 10):,}", "1.510 ± 0.014"],
                                      ["vanilla RNN, m = 10", f"{lstm.n_params('rnn', 5, 10):,}", "1.910 ± 0.014"]]
    assert timed == [["LSTM, m = 10", "250", "2.010 ± 0.014"], ["vanilla RNN, m = 10", "1,000", "1.910 ± 0.014"]]
    assert "the LSTM is lower by 0.400, more than twice the largest seed spread" in sentence
    assert "the LSTM had made 250 updates" in sentence and "the vanilla RNN, m = 10 is lower by 0.100" in sentence
