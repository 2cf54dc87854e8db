"""rnn_core against independent expectations: numerical gradients, the textbook implementation,
known distributions; the package's text and model files that round-trip, and the one-line
errors for bad input (workbook/params.py's checks, workbook/textfiles.py's reading)."""
import math
import re
import os
from pathlib import Path

import numpy as np
import pytest

import rnn_core as rc
from workbook import files, params, pytorch, textfiles
from workbook import textbook as tb

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "shakespeare.txt"


@pytest.fixture(scope="module")
def corpus():
    text = rc.load_text(CORPUS)
    vocab = rc.Vocab(text)
    return text, vocab, vocab.encode(text)


def as_dict(rnn):
    return {n: a.copy() for n, a in zip(rc.RNN.NAMES, rnn.arrays())}


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("m", [5, 100])
def test_gradients_match_centred_differences_and_complex_step(corpus, m):
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, m, rng=np.random.default_rng(7), sigma=0.1)
    x, y, h0 = data[:25], data[1:26], np.zeros((m, 1))
    _, grads, _ = rc.loss_and_grads(rnn, x, y, h0)
    centred = rc.numerical_grads(rnn, x, y, h0, h=1e-4)
    exact = rc.complex_step_grads(rnn, x, y, h0)
    for name in rc.RNN.NAMES:
        ga = getattr(grads, name)
        assert np.abs(ga).max() > 0, name
        assert rc.relative_error(ga, getattr(centred, name)).max() < 1e-5, name
        assert rc.relative_error(ga, getattr(exact, name)).max() < 1e-10, name


def test_complex_step_catches_a_wrong_gradient(corpus):
    """A gradient off by 1e-7 relative, invisible under finite-difference noise, fails the complex step."""
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, 5, rng=np.random.default_rng(1), sigma=0.1)
    x, y, h0 = data[:25], data[1:26], np.zeros((5, 1))
    _, grads, _ = rc.loss_and_grads(rnn, x, y, h0)
    exact = rc.complex_step_grads(rnn, x, y, h0)
    grads.W[2, 3] *= 1 + 1e-7
    assert rc.relative_error(grads.W, exact.W).max() > 1e-8


def test_loss_grads_and_state_equal_the_textbook_version(corpus):
    _, vocab, data = corpus
    m = 20
    rnn = rc.init_rnn(vocab.K, m, rng=np.random.default_rng(3), sigma=0.1)
    h0 = np.random.default_rng(4).standard_normal((m, 1)) * 0.5
    x, y = data[100:125], data[101:126]
    loss, grads, h_last = rc.loss_and_grads(rnn, x, y, h0)
    loss_tb, grads_tb, h_tb = tb.compute_gradients(as_dict(rnn), x, y, h0)
    assert loss == pytest.approx(loss_tb, rel=1e-12)
    np.testing.assert_allclose(h_last, h_tb, rtol=1e-12, atol=1e-14)
    for name in rc.RNN.NAMES:
        np.testing.assert_allclose(getattr(grads, name), grads_tb[name], rtol=1e-9, atol=1e-13)


def test_initial_loss_is_T_log_K(corpus):
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, 100, rng=np.random.default_rng(0), sigma=0.01)
    loss, _, _ = rc.loss_and_grads(rnn, data[:25], data[1:26], np.zeros((100, 1)))
    assert loss == pytest.approx(25 * math.log(vocab.K), rel=0.01)


def test_xavier_init_has_the_2025_standard_deviations():
    rnn = rc.init_rnn(80, 200, rng=np.random.default_rng(0), init="xavier")
    assert rnn.U.std() == pytest.approx(1 / math.sqrt(160), rel=0.03)
    assert rnn.W.std() == pytest.approx(1 / math.sqrt(400), rel=0.03)
    assert rnn.V.std() == pytest.approx(1 / math.sqrt(200), rel=0.03)
    assert not rnn.b.any() and not rnn.c.any()
    assert [a.shape for a in rnn.arrays()] == [(200, 1), (80, 1), (200, 80), (200, 200), (80, 200)]


# ----------------------------------------------------------------------------- training

def test_training_equals_the_textbook_loop_across_epoch_boundaries(corpus):
    """AdaGrad, clipping, hprev carry-over and the reset at the end of the text, against the plain version."""
    _, vocab, data = corpus
    short = data[:1000]          # 39 chunks of 25 per epoch: 300 updates cross 7 epoch boundaries
    rnn = rc.init_rnn(vocab.K, 30, rng=np.random.default_rng(5), sigma=0.1)
    expected = tb.train(as_dict(rnn), short, 300, eta=0.1)
    hist = rc.train(rnn, short, n_updates=300, rng=np.random.default_rng(0), sample_every=100)
    # round-off (1e-16) is amplified by AdaGrad's first steps, g / sqrt(g^2 + eps), to about 1e-7
    # after 40 updates; a wrong carry-over or reset would differ by more than 1e-3.
    np.testing.assert_allclose(hist.smooth_loss[:20], expected[:20], rtol=1e-13)
    np.testing.assert_allclose(hist.smooth_loss, expected, rtol=1e-5)
    assert hist.epoch[0] == 0 and hist.epoch[39] == 1 and hist.epoch[-1] == 299 // 39
    assert [k for k, _, _ in hist.samples] == [0, 100, 200, 300]


def test_mean_reduction_is_the_sum_over_T(corpus):
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, 10, rng=np.random.default_rng(5))
    loss, _, _ = rc.loss_and_grads(rnn, data[:25], data[1:26], np.zeros((10, 1)))
    hist = rc.train(rnn, data[:2000], n_updates=1, rng=np.random.default_rng(0), optimizer="adam",
                    eta=0.001, loss_reduction="mean", sample_length=0)
    assert hist.loss[0] == pytest.approx(loss / 25, rel=1e-12)


@pytest.mark.parametrize("optimizer", params.BY_NAME["optimizer"].kind.options)
def test_one_optimizer_step_matches_its_formula(corpus, optimizer):
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, 10, rng=np.random.default_rng(2), sigma=0.1)
    before = rnn.copy()
    _, g, _ = rc.loss_and_grads(rnn, data[:25], data[1:26], np.zeros((10, 1)))
    rc.train(rnn, data[:2000], n_updates=1, rng=np.random.default_rng(0), eta=0.01,
             optimizer=optimizer, clip=1.0, sample_length=0)
    for name in rc.RNN.NAMES:
        gc = np.clip(getattr(g, name), -1, 1)
        if optimizer == "adagrad":
            step = 0.01 * gc / np.sqrt(gc * gc + 1e-8)
        elif optimizer == "rmsprop":
            step = 0.01 * gc / np.sqrt(0.1 * gc * gc + 1e-8)
        else:   # first Adam step: m_hat = g, v_hat = g^2
            step = 0.01 * gc / (np.sqrt(gc * gc) + 1e-8)
        np.testing.assert_allclose(getattr(before, name) - getattr(rnn, name), step, rtol=1e-9, atol=1e-15)


def test_same_seed_same_history_other_seed_differs(corpus):
    _, vocab, data = corpus

    def run(seed):
        rng = np.random.default_rng(seed)
        rnn = rc.init_rnn(vocab.K, 16, rng=rng)
        return rc.train(rnn, data[:5000], n_updates=400, rng=rng, sample_every=200, sample_length=50)

    a, b, c = run(1), run(1), run(2)
    assert a.loss.tobytes() == b.loss.tobytes() and a.smooth_loss.tobytes() == b.smooth_loss.tobytes()
    assert [s[2].tobytes() for s in a.samples] == [s[2].tobytes() for s in b.samples]
    assert a.best_update == b.best_update
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.best.arrays(), b.best.arrays()))
    assert a.loss.tobytes() != c.loss.tobytes()


def test_best_model_is_the_lowest_smooth_loss(corpus):
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, 16, rng=np.random.default_rng(0))
    hist = rc.train(rnn, data[:20000], n_updates=600, rng=np.random.default_rng(0), sample_length=0)
    assert hist.best_update == int(np.argmin(hist.smooth_loss)) + 1
    assert hist.best_smooth_loss == hist.smooth_loss.min()
    assert hist.best_update < 600 or all(np.array_equal(x, y) for x, y in zip(hist.best.arrays(), rnn.arrays()))


# ----------------------------------------------------------------------------- sampling

def fixed_logits_rnn(logits):
    """An RNN whose output logits are `logits` whatever the input: W = U = V = 0, c = logits."""
    K, m = len(logits), 3
    rnn, _ = rc.RNN.packed(K, m)
    rnn.c[:, 0] = logits
    return rnn


LOGITS = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def softmax(o):
    e = np.exp(o - o.max())
    return e / e.sum()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_sample_frequencies_follow_softmax_of_logits_over_temperature(temperature):
    n = 200_000
    draws = rc.synthesize(fixed_logits_rnn(LOGITS), np.zeros((3, 1)), 0, n,
                          rng=np.random.default_rng(11), temperature=temperature)
    freq = np.bincount(draws, minlength=len(LOGITS)) / n
    p = softmax(LOGITS / temperature)
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-9)


def test_top_p_keeps_only_the_nucleus_renormalised():
    n = 200_000
    p = softmax(LOGITS)                      # 0.57, 0.21, 0.13, 0.08, ...
    draws = rc.synthesize(fixed_logits_rnn(LOGITS), np.zeros((3, 1)), 0, n,
                          rng=np.random.default_rng(12), top_p=0.85)
    freq = np.bincount(draws, minlength=len(LOGITS)) / n
    nucleus = np.cumsum(p) < 0.85           # smallest prefix reaching 0.85: the first three
    nucleus[np.argmin(nucleus)] = True
    assert nucleus.sum() == 3
    assert freq[~nucleus].sum() == 0
    q = p * nucleus / (p * nucleus).sum()
    assert np.all(np.abs(freq - q) < 5 * np.sqrt(q * (1 - q) / n) + 1e-9)


def test_synthesis_matches_the_textbook_draw_by_cumulative_sum(corpus):
    _, vocab, _ = corpus
    rnn = rc.init_rnn(vocab.K, 20, rng=np.random.default_rng(1), sigma=0.3)
    h0 = np.random.default_rng(2).standard_normal((20, 1)) * 0.3
    ours = rc.synthesize(rnn, h0, 5, 300, rng=np.random.default_rng(9))
    theirs = tb.synthesize(as_dict(rnn), h0, 5, 300, np.random.default_rng(9))
    assert ours.tolist() == theirs


@pytest.mark.parametrize("values, message", [
    ({"temperatures": [0]}, "temperature must be a number > 0"),
    ({"temperatures": -1.0}, "temperature must be a number > 0"),
    ({"top_ps": [0]}, "top_p must be in (0, 1]"),
    ({"top_ps": [0.5, 1.5]}, "top_p must be in (0, 1]"),
])
def test_bad_sampling_settings_are_named(values, message):
    with pytest.raises(rc.RNNError, match=message.replace("(", r"\(").replace("]", r"\]")):
        params.check(values)


# ----------------------------------------------------------------------------- text and files

def test_vocabulary_is_sorted_and_round_trips_non_ascii():
    text = "Harry • Flöte ü – «quoted» 🦉 Harry\n"      # 🦉 is beyond 16 bits
    vocab = rc.Vocab(text)
    assert vocab.chars == "".join(sorted(set(text)))
    assert vocab.decode(vocab.encode(text)) == text == vocab.decode(textfiles.encode_compact(vocab, text))
    assert vocab.decode([]) == "" and vocab.decode([vocab.chars.index("🦉")]) == "🦉"
    assert rc.Vocab(vocab.chars) == vocab
    with pytest.raises(rc.RNNError, match="not in the vocabulary: 'Z'"):
        vocab.encode("HaZ")


def test_default_corpus_is_the_documented_one(corpus):
    text, vocab, data = corpus
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    assert f"{len(text):,}" in readme and f"K = {vocab.K}" in readme
    import hashlib
    assert hashlib.sha256(CORPUS.read_bytes()).hexdigest() in readme


def test_model_file_round_trips(tmp_path, corpus):
    _, vocab, _ = corpus
    rnn = rc.init_rnn(vocab.K, 12, rng=np.random.default_rng(0))
    meta = {"m": 12, "eta": 0.1, "corpus": "shakespeare.txt"}
    path = tmp_path / "model.npz"
    files.save_model(path, rnn, vocab, meta)
    back, vocab2, meta2 = files.load_model(path)
    assert vocab2 == vocab and meta2 == meta
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(rnn.arrays(), back.arrays()))
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]   # no temp file left behind


def test_truncated_model_file_gives_a_clear_error(tmp_path, corpus):
    _, vocab, _ = corpus
    path = tmp_path / "model.npz"
    files.save_model(path, rc.init_rnn(vocab.K, 4, rng=np.random.default_rng(0)), vocab)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(rc.RNNError, match="not a readable model file"):
        files.load_model(path)


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "is empty"),
    (b"\x00\x01\x02binary", "binary file"),
    ("line one\nbad \xe9 here".encode("latin-1"), "not UTF-8: byte 0xe9 at line 2, column 5"),
])
def test_bad_text_files_are_named(tmp_path, content, message):
    path = tmp_path / "book.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(rc.RNNError, match=message):
        textfiles.read_text(path)


def test_unreadable_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "book.txt"
    path.write_text("text")

    def deny(self):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(rc.RNNError, match="cannot read .*Permission denied"):
        textfiles.read_text(path)


@pytest.mark.parametrize("values, message", [
    ({"n_updates": 0}, "n_updates must be >= 1"),
    ({"seq_length": 0}, "seq_length must be >= 1"),
    ({"eta": 0}, "eta must be a number > 0"),
    ({"eta": -0.1}, "eta must be a number > 0"),
    ({"optimizer": "sgd"}, "unknown optimizer 'sgd'; choose one of: adagrad, rmsprop, adam"),
    ({"sample_every": 0}, "sample_every must be >= 1"),
])
def test_bad_training_settings_are_named(values, message):
    """Each value is checked once, by the parameter spec, before it reaches rnn_core."""
    with pytest.raises(rc.RNNError, match=message):
        params.check({"n_updates": 10, **values})


def test_a_text_shorter_than_a_chunk_is_named():
    from workbook.training import check_reading
    with pytest.raises(rc.RNNError, match="the text has 50 characters, fewer than seq_length \\+ 1 = 61"):
        check_reading(50, 60, 1, "sequential")


@pytest.mark.parametrize("values, message", [
    ({"m": 0}, "m must be >= 1"),
    ({"m": 2.5}, "m must be a whole number"),
    ({"init": "he"}, "unknown init 'he'"),
])
def test_bad_init_settings_are_named(values, message):
    with pytest.raises(rc.RNNError, match=message):
        params.check(values)


@pytest.mark.parametrize("init", params.BY_NAME["init"].kind.options)
def test_every_init_the_spec_allows_has_its_standard_deviations(init):
    rnn = rc.init_rnn(50, 200, rng=np.random.default_rng(0), init=init, sigma=0.1)
    want = {"normal": (0.1, 0.1, 0.1), "xavier": (1 / math.sqrt(100), 1 / math.sqrt(400), 1 / math.sqrt(200))}[init]
    assert np.allclose([rnn.U.std(), rnn.W.std(), rnn.V.std()], want, rtol=0.05)
    assert not rnn.b.any() and not rnn.c.any()


# ----------------------------------------------------------------------------- tweets

def test_tweet_loader_unescapes_drops_retweets_and_links_and_ends_each_tweet(tmp_path):
    import json
    tweets = [{"source": "web", "id_str": "1", "text": "Jobs &amp; growth &gt; all! https://t.co/xyz",
               "created_at": "x", "retweet_count": 0, "in_reply_to_user_id_str": None, "favorite_count": 0,
               "is_retweet": False},
              {"source": "web", "id_str": "2", "text": "RT @someone: not mine", "created_at": "x",
               "retweet_count": 0, "in_reply_to_user_id_str": None, "favorite_count": 0, "is_retweet": True},
              {"source": "web", "id_str": "3", "text": "Great night \U0001F1FA\U0001F1F8 \u2764\ufe0f", "created_at": "x",
               "retweet_count": 0, "in_reply_to_user_id_str": None, "favorite_count": 0, "is_retweet": False},
              {"source": "web", "id_str": "4", "text": "https://t.co/only", "created_at": "x",
               "retweet_count": 0, "in_reply_to_user_id_str": None, "favorite_count": 0, "is_retweet": False}]
    path = tmp_path / "condensed.json"
    path.write_text(json.dumps(tweets), encoding="utf-8")
    text = textfiles.load_tweets(path)
    assert text == "Jobs & growth > all!" + textfiles.EOT + "Great night \U0001F1FA\U0001F1F8 \u2764\ufe0f" + textfiles.EOT
    kept = textfiles.load_tweets([path], keep_retweets=True, keep_links=True)
    assert kept.split(textfiles.EOT)[:-1] == ["Jobs & growth > all! https://t.co/xyz", "RT @someone: not mine",
                                       "Great night \U0001F1FA\U0001F1F8 \u2764\ufe0f", "https://t.co/only"]
    (tmp_path / "bad.json").write_text('{"text": "x"}')
    with pytest.raises(rc.RNNError, match="not a tweet archive"):
        textfiles.load_tweets(tmp_path / "bad.json")


def test_synthesis_stops_at_the_end_character():
    # character 0 has probability ~1 - 1e-9 of being drawn, so the first draw ends the tweet
    rnn = fixed_logits_rnn(np.array([20.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    out = rc.synthesize(rnn, np.zeros((3, 1)), 1, 140, rng=np.random.default_rng(0), stop_ix=0)
    assert len(out) == 0
    rnn = fixed_logits_rnn(np.array([-2.0, 1.0, 1.0, 1.0, 1.0, 1.0]))   # p(end) = 0.026 per character
    rng = np.random.default_rng(1)
    lengths = [len(rc.synthesize(rnn, np.zeros((3, 1)), 1, 140, rng=rng, stop_ix=0)) for _ in range(400)]
    p = math.exp(-2) / (math.exp(-2) + 5 * math.e)
    expected = sum((1 - p) ** k for k in range(1, 141))     # E[min(geometric - 1, 140)]
    assert max(lengths) == 140 and min(lengths) < 140
    assert np.mean(lengths) == pytest.approx(expected, rel=0.08)
    full = rc.synthesize(rnn, np.zeros((3, 1)), 1, 140, rng=np.random.default_rng(1))
    assert 0 in full.tolist()                                 # without stop_ix the end character is just drawn


# ----------------------------------------------------------------------------- text as people mean it, priming

def test_crlf_and_cr_line_endings_read_as_lf_give_the_same_run(tmp_path, corpus):
    text = corpus[0][:20_000]
    paths = {}
    for name, newline in (("lf", "\n"), ("crlf", "\r\n"), ("cr", "\r")):
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_bytes(text.replace("\n", newline).encode("utf-8"))
    lines = text.count("\n")
    read = {name: textfiles.read_text(p) for name, p in paths.items()}   # and rnn_core's own reading:
    assert read["lf"] == (text, 0) and read["crlf"] == (text, lines) and read["cr"] == (text, lines)
    assert rc.Vocab(rc.load_text(paths["crlf"])).K == rc.Vocab(text).K and "\r" not in rc.load_text(paths["cr"])
    runs = []
    for p in paths.values():
        t = rc.load_text(p)
        vocab = rc.Vocab(t)
        rng = np.random.default_rng(3)
        rnn = rc.init_rnn(vocab.K, 10, rng=rng)
        runs.append(rc.train(rnn, vocab.encode(t), n_updates=50, rng=rng, sample_every=25, sample_length=20))
    for other in runs[1:]:
        assert other.loss.tobytes() == runs[0].loss.tobytes()
        assert [s[2].tobytes() for s in other.samples] == [s[2].tobytes() for s in runs[0].samples]


def test_a_prime_text_sets_the_state_the_continuation_starts_from(corpus):
    _, vocab, _ = corpus
    rnn = rc.init_rnn(vocab.K, 12, rng=np.random.default_rng(1), sigma=0.3)
    h0 = np.random.default_rng(2).standard_normal((12, 1)) * 0.5
    prime = vocab.encode("To be, or not to be")
    h = h0.copy()                                            # the model reads the prime, written out
    for x in prime[:-1]:
        h = np.tanh(rnn.W @ h + rnn.U[:, [x]] + rnn.b)
    np.testing.assert_allclose(rc.feed(rnn, h0, prime[:-1]), h, rtol=1e-13, atol=1e-15)
    primed = rc.synthesize(rnn, rc.feed(rnn, h0, prime[:-1]), int(prime[-1]), 50, rng=np.random.default_rng(3))
    expected = tb.synthesize(as_dict(rnn), h, int(prime[-1]), 50, np.random.default_rng(3))
    assert vocab.decode(primed) == vocab.decode(expected)
    assert vocab.decode(primed) != vocab.decode(rc.synthesize(rnn, h0, int(prime[-1]), 50,
                                                               rng=np.random.default_rng(3)))
    with pytest.raises(rc.RNNError, match="characters not in the vocabulary: '€'"):
        vocab.encode("To € or not")


def test_greedy_sampling_takes_the_likeliest_character_every_step(corpus):
    _, vocab, _ = corpus
    rnn = rc.init_rnn(vocab.K, 12, rng=np.random.default_rng(1), sigma=0.3)
    out = rc.synthesize(rnn, np.zeros((12, 1)), 0, 40, rng=np.random.default_rng(0), greedy=True)
    h, x = np.zeros(12), 0
    for got in out:
        h = np.tanh(rnn.W @ h + rnn.U[:, x] + rnn.b[:, 0])
        x = int(np.argmax(rnn.V @ h + rnn.c[:, 0]))
        assert got == x
    cold = rc.synthesize(rnn, np.zeros((12, 1)), 0, 40, rng=np.random.default_rng(0), temperature=1e-3)
    assert cold.tolist() == out.tolist()                     # the limit of temperature -> 0


def test_whole_numbers_written_as_floats_are_taken():
    checked = params.check({"n_updates": 1e5, "seed": 3.0, "check_m": 5.0})
    assert checked["n_updates"] == 100000 and isinstance(checked["n_updates"], int)
    assert type(checked["seed"]) is int and checked["check_m"] == [5]     # one value is a list of one
    with pytest.raises(rc.RNNError, match="n_updates must be a whole number >= 1, got 1.5"):
        params.check({"n_updates": 1.5})


def test_a_model_file_keeps_its_start_state_and_refuses_non_finite_weights(tmp_path, corpus):
    _, vocab, _ = corpus
    rnn = rc.init_rnn(vocab.K, 6, rng=np.random.default_rng(0))
    h = np.linspace(-0.5, 0.5, 6)
    files.save_model(tmp_path / "with.npz", rnn, vocab, {"a": 1}, start=(h, 7))
    _, _, meta = files.load_model(tmp_path / "with.npz")
    assert meta["start_h"].tolist() == h.tolist() and meta["start_x"] == 7 and meta["a"] == 1
    files.save_model(tmp_path / "without.npz", rnn, vocab, {"a": 1})     # as files before the start state
    assert "start_h" not in files.load_model(tmp_path / "without.npz")[2]
    for bad in (0x110000, 0xD800):                    # beyond Unicode, a lone surrogate
        with np.load(tmp_path / "with.npz") as z:
            members = {k: z[k] for k in z.files}
        members["vocab"] = members["vocab"].copy()
        members["vocab"][-1] = bad
        np.savez(tmp_path / "codes.npz", **members)
        with pytest.raises(rc.RNNError, match="codes.npz: its vocabulary holds codes that are not distinct characters"):
            files.load_model(tmp_path / "codes.npz")
    rnn.W[1, 2] = np.nan
    files.save_model(tmp_path / "nan.npz", rnn, vocab)
    with pytest.raises(rc.RNNError, match="NaN or infinite weights"):
        files.load_model(tmp_path / "nan.npz")


# ----------------------------------------------------------------------------- PyTorch's autograd (optional)

def test_pytorch_autograd_agrees_with_the_complex_step_and_flags_a_wrong_gradient(corpus):
    pytest.importorskip("torch", reason="PyTorch is not installed (make torch installs it)")
    _, vocab, data = corpus
    rnn = rc.init_rnn(vocab.K, 10, rng=np.random.default_rng(7), sigma=0.1)
    x, y, h0 = data[:25], data[1:26], np.zeros((10, 1))
    auto = pytorch.torch_grads(rnn, x, y, h0)
    exact = rc.complex_step_grads(rnn, x, y, h0)
    _, grads, _ = rc.loss_and_grads(rnn, x, y, h0)
    for name in rc.RNN.NAMES:
        assert rc.relative_error(getattr(auto, name), getattr(exact, name)).max() < 1e-10, name
        assert rc.relative_error(getattr(grads, name), getattr(auto, name)).max() < 1e-10, name
    grads.W[2, 3] *= 1 + 1e-7                              # off by 1e-7: autograd sees it
    assert rc.relative_error(grads.W, auto.W).max() > 1e-8


def test_check_torch_true_without_pytorch_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(params, "torch_installed", lambda: False)
    with pytest.raises(rc.RNNError, match=r"^check_torch=True needs PyTorch, which is not installed; run make torch"):
        params.check({"check_torch": True})
    assert params.check({"check_torch": "auto"})["check_torch"] == "auto"
    monkeypatch.setattr(pytorch, "torch_version", lambda: None)
    assert pytorch.use_torch("auto") is False and pytorch.use_torch(False) is False


def npy_header(shape) -> bytes:
    import io
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return out.getvalue()


def test_zip_bombs_and_lying_headers_are_refused_in_one_line_before_any_data_is_read(tmp_path, corpus):
    """A 2 MB .npz whose W inflates to 2 GB, and a header that declares 10^12 floats, each refused in
    one line by a process that may use 1 GB of address space at most."""
    import subprocess
    import sys
    import zipfile
    _, vocab, _ = corpus
    good = tmp_path / "good.npz"
    files.save_model(good, rc.init_rnn(vocab.K, 8, rng=np.random.default_rng(0)), vocab)
    with np.load(good) as z:
        members = {k: z[k] for k in z.files if k != "W"}
    for name, shape, inflate in (("bomb", (16384, 16384), True), ("header", (10**6, 10**6), False)):
        path = tmp_path / f"{name}.npz"
        np.savez(path, **members)
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            with zf.open("W.npy", "w", force_zip64=True) as f:
                f.write(npy_header(shape))
                for _ in range(128 if inflate else 0):      # 128 x 16 MB of zeros: 2 GB inflated
                    f.write(bytes(1 << 24))
        assert path.stat().st_size < 3_000_000
        script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
                  "import rnn_core as rc\nfrom workbook import files\n"
                  "try:\n    files.load_model(sys.argv[1])\nexcept rc.RNNError as err:\n    print(err)\n")
        proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-500:]
        assert proc.stdout.count("\n") == 1 and f"{name}.npz: its arrays claim" in proc.stdout, proc.stdout


def test_special_files_are_refused_at_once_without_being_read(tmp_path):
    """A FIFO would make a read wait forever and /dev/zero never ends: both are refused from their
    file type, in one line, before anything is opened; so is a link to nothing."""
    import time
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    cases = {fifo: "is a FIFO (named pipe), not a text file", Path("/dev/zero"): "is a device, not a text file",
             tmp_path / "dangling.txt": f"is a link to {tmp_path / 'gone.txt'}, which does not exist"}
    for path, message in cases.items():
        t0 = time.perf_counter()
        with pytest.raises(rc.RNNError, match=re.escape(message)):
            textfiles.read_text(path)
        assert time.perf_counter() - t0 < 1.0


def test_tweets_nested_too_deep_are_named_in_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(rc.RNNError, match="nests its JSON too deep to read"):
        textfiles.load_tweets(path)
