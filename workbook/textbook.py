"""The RNN exactly as the assignment text describes it (the tests' second implementation, the
speed section's baseline): one-hot vectors, matrix products and per-step loops, one parameter
at a time. Written independently of rnn_core, it serves the tests as a second implementation
to compare against, and the report's speed section and `make bench` as the baseline to beat.
"""
import numpy as np

NAMES = ("b", "c", "U", "W", "V")


def softmax(o):
    e = np.exp(o - np.max(o))
    return e / np.sum(e)


def one_hot(i, K):
    v = np.zeros((K, 1))
    v[i] = 1.0
    return v


def forward(P, x, y, h0):
    K = P["c"].shape[0]
    h, hs, ps, loss = h0, {-1: h0}, {}, 0.0
    for t in range(len(x)):
        a = P["W"] @ h + P["U"] @ one_hot(x[t], K) + P["b"]
        h = np.tanh(a)
        o = P["V"] @ h + P["c"]
        p = softmax(o)
        loss += -np.log(p[y[t], 0])
        hs[t], ps[t] = h, p
    return loss, hs, ps


def compute_gradients(P, x, y, h0):
    K, m = P["c"].shape[0], P["b"].shape[0]
    loss, hs, ps = forward(P, x, y, h0)
    grads = {k: np.zeros_like(v) for k, v in P.items()}
    da_next = np.zeros((m, 1))
    for t in reversed(range(len(x))):
        g = ps[t] - one_hot(y[t], K)                    # dL/do_t
        grads["V"] += g @ hs[t].T
        grads["c"] += g
        dh = P["V"].T @ g + P["W"].T @ da_next
        da = dh * (1 - hs[t] ** 2)
        grads["W"] += da @ hs[t - 1].T
        grads["U"] += da @ one_hot(x[t], K).T
        grads["b"] += da
        da_next = da
    return loss, grads, hs[len(x) - 1]


def synthesize(P, h0, x0, n, rng):
    K = P["c"].shape[0]
    h, x, out = h0, one_hot(x0, K), []
    for _ in range(n):
        h = np.tanh(P["W"] @ h + P["U"] @ x + P["b"])
        p = softmax(P["V"] @ h + P["c"])
        cp = np.cumsum(p)
        a = rng.random()
        ii = int(np.flatnonzero(cp - a > 0)[0])
        out.append(ii)
        x = one_hot(ii, K)
    return out


def train(P, data, n_updates, seq_length=25, eta=0.1, rng=None):
    """AdaGrad with element-wise clipping to [-5, 5], summed loss; returns the smooth losses."""
    m = P["b"].shape[0]
    M = {k: np.zeros_like(v) for k, v in P.items()}
    e, hprev, smooth, smooth_losses = 0, np.zeros((m, 1)), None, []
    for k in range(n_updates):
        if e > len(data) - seq_length - 1:
            e, hprev = 0, np.zeros((m, 1))
        x, y = data[e:e + seq_length], data[e + 1:e + seq_length + 1]
        loss, grads, hprev = compute_gradients(P, x, y, hprev)
        for name in NAMES:
            g = np.clip(grads[name], -5, 5)
            M[name] += g * g
            P[name] -= eta * g / np.sqrt(M[name] + 1e-8)
        smooth = loss if smooth is None else 0.999 * smooth + 0.001 * loss
        smooth_losses.append(smooth)
        e += seq_length
    return smooth_losses


def stream_loss(P, x, y, h0, reset_ix=None):
    """Summed loss of one stream; with reset_ix, h is set to zero before each step whose input is it."""
    K = P["c"].shape[0]
    h, loss = h0, 0.0
    for t in range(len(x)):
        if reset_ix is not None and x[t] == reset_ix:
            h = np.zeros_like(h)
        h = np.tanh(P["W"] @ h + P["U"] @ one_hot(x[t], K) + P["b"])
        p = softmax(P["V"] @ h + P["c"])
        loss += -np.log(p[y[t], 0])
    return loss


def batch_loss(P, X, Y, H0, reset_ix=None):
    """Mean over the columns (streams) of X, Y (T, B) of each stream's summed loss."""
    B = X.shape[1]
    return sum(stream_loss(P, X[:, j], Y[:, j], H0[:, j:j + 1], reset_ix) for j in range(B)) / B
