"""An LSTM beside the vanilla RNN: one layer of m units, trained, checked and sampled like it.

The same five parameter names as rnn_core's RNN, the four gates' rows stacked in U, W and b
in the order o, i, f, g (the three sigmoid gates first, then the candidate):

    a_t = W h_{t-1} + U x_t + b                  (4m,): [a_o; a_i; a_f; a_g]
    o = sigma(a_o)  i = sigma(a_i)  f = sigma(a_f)  g = tanh(a_g)
    C_t = f * C_{t-1} + i * g                    the cell state
    h_t = o * tanh(C_t)
    p_t = softmax(V h_t + c)

Shapes: b (4m, 1), c (K, 1), U (4m, K), W (4m, m), V (K, m). The state a stream carries is
[h; C], 2m numbers. The forward and backward pass takes B streams side by side (B = 1 is the
assignment's loop), with the hidden and cell state restarting where a tweet starts; the
gradient checks run an independent forward pass (textbook formulas, complex-safe).
"""
from __future__ import annotations

import math

import numpy as np

import rnn_core as rc
from workbook.batched import BLAS, BatchBuffers, output_layer, resets, weight_grads


class LSTM(rc.RNN):
    """b, c, U, W, V of an LSTM layer (see the module's docstring); m is the number of units."""

    @property
    def m(self) -> int:
        return self.V.shape[1]

    @staticmethod
    def shapes(K: int, m: int) -> dict:
        return {"b": (4 * m, 1), "c": (K, 1), "U": (4 * m, K), "W": (4 * m, m), "V": (K, m)}


def is_lstm(model) -> bool:
    return isinstance(model, LSTM)


def state_size(model) -> int:
    """Numbers in the state a stream carries: h for the RNN, [h; C] for the LSTM."""
    return 2 * model.m if is_lstm(model) else model.m


def n_params(cell: str, K: int, m: int) -> int:
    shapes = (LSTM if cell == "lstm" else rc.RNN).shapes(K, m)
    return sum(math.prod(s) for s in shapes.values())


def matching_m(K: int, m: int) -> int:
    """The m of the vanilla RNN whose parameter count is nearest an LSTM's of m units."""
    target = n_params("lstm", K, m)
    return min(range(1, 8 * m + 8), key=lambda mm: abs(n_params("rnn", K, mm) - target))


def init_lstm(K: int, m: int, *, rng: np.random.Generator, init: str = "normal", sigma: float = 0.01) -> LSTM:
    """New parameters: U, W, V drawn from rng as rnn_core.init_rnn draws the RNN's (the same std by
    fan-in), c = 0, and b = 0 but the forget gate's, which starts at 1: f = sigma(1) = 0.73 keeps
    most of the cell state from the start, so gradients reach back through time while the gates
    learn (Gers et al. 2000; Jozefowicz et al. 2015 found it closes most of the gap to the GRU)."""
    P, _ = LSTM.packed(K, m)
    std = {"normal": {"U": sigma, "W": sigma, "V": sigma},
           "xavier": {"U": 1 / math.sqrt(2 * K), "W": 1 / math.sqrt(2 * m), "V": 1 / math.sqrt(m)}}[init]
    for name in ("U", "W", "V"):
        arr = getattr(P, name)
        arr[...] = rng.standard_normal(arr.shape) * std[name]
    P.b[2 * m:3 * m] = 1.0
    return P


# ----------------------------------------------------------------------------- forward and backward

class LSTMBuffers(BatchBuffers):
    """Work arrays for B streams of T characters, allocated once: BatchBuffers' (the output layer,
    the weight gradients) with the gates' sizes, and the cell state's."""

    def __init__(self, K: int, m: int, T: int, B: int, resets: bool, dtype=np.float64):
        super().__init__(K, m, T, B, resets, dtype)
        f = dtype
        self.C = np.empty((T + 1, B, m), f)         # C[t+1] = C_t; C[0] the carried one
        self.Cin = np.empty((T, B, m), f) if resets else self.C[:T]   # C_{t-1} as step t sees it
        self.A = np.empty((T, B, 4 * m), f)         # the gates [o, i, f, g] of each step
        self.TC = np.empty((T, B, m), f)            # tanh(C_t)
        self.F = np.empty((T, B, 4 * m), f)         # d gate / d a, times what it multiplies (backward)
        self.OD = np.empty((T, B, m), f)            # dh_t -> dC_t: o (1 - tanh^2 C_t)
        self.dA = np.empty((T, B, 4 * m), f)        # dL/da_t
        self.dC = np.empty((B, m), f)
        self.dCn = np.zeros((B, m), f)              # dL/dC_t through C_{t+1}
        self.gates = np.empty((B, 4 * m), f)
        self.WT = np.empty((m, 4 * m), f)           # W^T, its o, i, f columns halved (see forward)
        self.UbT = np.empty((K, 4 * m), f)
        self.half = np.ones(4 * m, f)
        self.half[:3 * m] = 0.5


def forward(P: LSTM, X: np.ndarray, S0: np.ndarray, buf: LSTMBuffers, keep=None) -> None:
    """The T steps of B streams: X (T, B) inputs, S0 (B, 2m) each stream's [h; C]. Writes the
    gates into buf.A, h_t into buf.H[t+1], C_t into buf.C[t+1], tanh(C_t) into buf.TC.

    sigma(a) = (1 + tanh(a / 2)) / 2: the o, i, f columns of W^T and U^T + b^T are halved once
    a chunk, so that one tanh over all 4m pre-activations gives every gate.
    """
    T, B = X.shape
    m = P.m
    H, C, Hin, Cin, A, TC, gates = buf.H, buf.C, buf.Hin, buf.Cin, buf.A, buf.TC, buf.gates
    H[0], C[0] = S0[:, :m], S0[:, m:]
    np.multiply(P.W.T, buf.half, out=buf.WT)
    np.add(P.U, P.b, out=buf.UbT.T)
    buf.UbT *= buf.half
    np.take(buf.UbT, X, axis=0, out=A)          # A[t] = (U x_t + b) / 2 (o, i, f) until step t adds W h
    with BLAS.serial():
        for t in range(T):
            if keep is not None:                # a tweet's start: h and C restart from 0
                np.multiply(H[t], keep[t], out=Hin[t])
                np.multiply(C[t], keep[t], out=Cin[t])
            a = A[t]
            np.dot(Hin[t], buf.WT, out=gates)
            a += gates
            np.tanh(a, out=a)
            sig = a[:, :3 * m]
            sig *= 0.5
            sig += 0.5                          # o, i, f = sigma(a_o), sigma(a_i), sigma(a_f); g = tanh(a_g)
            o, i, f, g = a[:, :m], a[:, m:2 * m], a[:, 2 * m:3 * m], a[:, 3 * m:]
            np.multiply(f, Cin[t], out=C[t + 1])            # C_t = f C_{t-1} + i g
            np.multiply(i, g, out=gates[:, :m])
            C[t + 1] += gates[:, :m]
            np.tanh(C[t + 1], out=TC[t])
            np.multiply(o, TC[t], out=H[t + 1])            # h_t = o tanh(C_t)


def forward_backward(P: LSTM, X: np.ndarray, Y: np.ndarray, S0: np.ndarray, buf: LSTMBuffers, G: LSTM,
                     keep: np.ndarray | None = None, scale: float = 1.0) -> float:
    """Loss summed over all T x B characters of X, Y (T, B) from the states S0 (B, 2m); the
    gradients of scale x that loss into G; the states into buf.H, buf.C (the last: [H[T], C[T]]).
    keep (T, B, 1) of 0.0/1.0 restarts a stream's h and C before step t, as in the RNN's pass."""
    T, B = X.shape
    m, n = P.m, T * B
    forward(P, X, S0, buf, keep)
    A, TC, F, OD, dA, dH = buf.A, buf.TC, buf.F, buf.OD, buf.dA, buf.dH
    loss = output_layer(buf.H[1:].reshape(n, m), Y, P, buf, G, dH.reshape(n, m), scale)   # dH[t] = dL/dh_t (output)
    o, i, f, g = A[..., :m], A[..., m:2 * m], A[..., 2 * m:3 * m], A[..., 3 * m:]
    # the local derivatives of all steps at once: dL/da = (what reaches the gate) x F
    np.multiply(TC, o * (1 - o), out=F[..., :m])                 # da_o = dh_t  tanh(C_t) o (1 - o)
    np.multiply(g, i * (1 - i), out=F[..., m:2 * m])             # da_i = dC_t  g i (1 - i)
    np.multiply(buf.Cin, f * (1 - f), out=F[..., 2 * m:3 * m])   # da_f = dC_t  C_{t-1} f (1 - f)
    np.multiply(i, 1 - g * g, out=F[..., 3 * m:])                # da_g = dC_t  i (1 - g^2)
    np.multiply(o, 1 - TC * TC, out=OD)                         # dC_t = dh_t o (1 - tanh^2 C_t) + ...
    dC, dCn, tmp = buf.dC, buf.dCn, buf.tmp
    dCn[...] = 0.0
    F4, dA4 = F.reshape(T, B, 4, m), dA.reshape(T, B, 4, m)      # the gates as an axis
    with BLAS.serial():
        for t in range(T - 1, -1, -1):
            dh = dH[t]                          # dL/dh_t = from the output + W^T dL/da_{t+1}
            if t < T - 1:
                np.dot(dA[t + 1], P.W, out=tmp)
                if keep is not None:
                    tmp *= keep[t + 1]
                dh += tmp
            np.multiply(dh, OD[t], out=dC)      # dL/dC_t = dh_t o (1 - tanh^2 C_t) + f_{t+1} dL/dC_{t+1}
            dC += dCn
            np.multiply(dh, F4[t, :, 0], out=dA4[t, :, 0])                   # da_o
            np.multiply(dC[:, None, :], F4[t, :, 1:], out=dA4[t, :, 1:])     # da_i, da_f, da_g
            np.multiply(dC, f[t], out=dCn)      # what C_{t-1} gets through C_t = f C_{t-1} + ...
            if keep is not None:
                dCn *= keep[t]
    weight_grads(dA.reshape(n, 4 * m), buf.Hin.reshape(n, m), X, buf, G)
    return loss


def last_state(buf: LSTMBuffers) -> np.ndarray:
    """(B, 2m): each stream's [h_T; C_T], the state carried into its next chunk."""
    return np.concatenate([buf.H[-1], buf.C[-1]], axis=1)


def loss_and_grads(P: LSTM, X, Y, S0, *, reset_ix: int | None = None) -> tuple[float, LSTM, np.ndarray]:
    """rnn_core.loss_and_grads for the LSTM, for B streams side by side: X, Y (T, B) or one
    stream (T,); S0 (2m, B) the states [h; C]. The loss is the mean over the streams of each one's
    summed loss; returns it, the gradients and the last states (2m, B)."""
    X, Y = np.asarray(X, dtype=np.intp), np.asarray(Y, dtype=np.intp)
    if X.ndim == 1:
        X, Y = X[:, None], Y[:, None]
    T, B = X.shape
    G, _ = LSTM.packed(P.K, P.m)
    buf = LSTMBuffers(P.K, P.m, T, B, reset_ix is not None)
    S0 = np.asarray(S0, dtype=np.float64).reshape(2 * P.m, B).T
    loss = forward_backward(P, X, Y, S0, buf, G, resets(X, reset_ix), 1 / B) / B
    return loss, G, last_state(buf).T.copy()


# ----------------------------------------------------------------------------- gradient checks

def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def perturbed_losses(P: LSTM, x, y, s0, name: str, delta, chunk: int = 1024) -> np.ndarray:
    """Per-character losses (size of `name`, T) of copies of the model, copy n with element n of
    parameter `name` moved by delta (real or complex): rnn_core.perturbed_losses for the LSTM,
    by the textbook formulas (sigma = 1 / (1 + e^-a), the gates in turn), an evaluation that
    shares nothing with forward_backward."""
    K, m, T = P.K, P.m, len(x)
    shape = LSTM.shapes(K, m)[name]
    size = math.prod(shape)
    rows, cols = (np.unravel_index(np.arange(size), shape) + (np.zeros(size, dtype=np.intp),))[:2]
    dtype = np.result_type(P.W.dtype, delta)
    XU = (P.U[:, x] + P.b).T                           # (T, 4m)
    s0 = np.asarray(s0, dtype=np.float64).reshape(-1)
    steps = np.arange(T)[:, None]
    recur = name in ("b", "U", "W")

    def run(r, cc):
        n, ar = len(r), np.arange(len(r))
        k = n if recur else 1                          # c and V leave the states as they are: run them once
        h = np.repeat(s0[None, :m].astype(dtype), k, axis=0)
        C = np.repeat(s0[None, m:].astype(dtype), k, axis=0)
        Hs = np.empty((T, k, m), dtype=dtype)
        for t in range(T):
            a = h @ P.W.T + XU[t]
            if name == "b":
                a[ar, r] += delta
            elif name == "U":
                a[ar, r] += delta * (cc == x[t])
            elif name == "W":
                a[ar, r] += delta * h[ar, cc]
            o, i, f, g = sigmoid(a[:, :m]), sigmoid(a[:, m:2 * m]), sigmoid(a[:, 2 * m:3 * m]), np.tanh(a[:, 3 * m:])
            C = f * C + i * g
            h = Hs[t] = o * np.tanh(C)
        O = np.repeat(Hs @ P.V.T + P.c.T, 1 if recur else n, axis=1)   # (T, n, K)
        if name == "c":
            O[:, ar, r] += delta
        elif name == "V":
            O[:, ar, r] += delta * Hs[:, 0, cc]
        O -= O.real.max(axis=2, keepdims=True)
        return np.log(np.exp(O).sum(axis=2)) - O[steps, ar[None, :], y[:, None]]

    out = np.empty((size, T), dtype=dtype)
    todo = np.arange(size)
    if name == "U":                                    # columns of characters not in x: the base model
        idle = ~np.isin(cols, x)
        out[idle] = run(rows[:1], np.array([-1])).T
        todo = todo[~idle]
    for s in range(0, len(todo), chunk):
        part = todo[s:s + chunk]
        out[part] = run(rows[part], cols[part]).T
    return out


def numerical_grads(P: LSTM, x, y, s0, *, h: float = 1e-4) -> LSTM:
    """Centred differences, character by character, of every element (rnn_core.numerical_grads)."""
    x, y = np.asarray(x, dtype=np.intp), np.asarray(y, dtype=np.intp)
    out = []
    for name, a in zip(LSTM.NAMES, P.arrays()):
        diff = perturbed_losses(P, x, y, s0, name, h) - perturbed_losses(P, x, y, s0, name, -h)
        out.append((diff.sum(axis=1) / (2 * h)).reshape(a.shape))
    return LSTM(*out)


def complex_step_grads(P: LSTM, x, y, s0, *, step: float = 1e-30) -> LSTM:
    """Im L(theta + i step) / step for every element: exact to machine precision."""
    x, y = np.asarray(x, dtype=np.intp), np.asarray(y, dtype=np.intp)
    out = []
    for name, a in zip(LSTM.NAMES, P.arrays()):
        out.append((perturbed_losses(P, x, y, s0, name, 1j * step).imag.sum(axis=1) / step).reshape(a.shape))
    return LSTM(*out)


# ----------------------------------------------------------------------------- reading and sampling

def step(P: LSTM, s: np.ndarray, x, out: np.ndarray) -> np.ndarray:
    """One step of every row of s (n, 2m) = [h; C] on inputs x (n,), into out (n, 2m)."""
    m = P.m
    a = s[:, :m] @ P.W.T + P.U.T[x] + P.b[:, 0]
    o, i, f, g = sigmoid(a[:, :m]), sigmoid(a[:, m:2 * m]), sigmoid(a[:, 2 * m:3 * m]), np.tanh(a[:, 3 * m:])
    np.multiply(f, s[:, m:], out=out[:, m:])
    out[:, m:] += i * g
    np.multiply(o, np.tanh(out[:, m:]), out=out[:, :m])
    return out


def feed(P: LSTM, s0, ix) -> np.ndarray:
    """The state [h; C] (2m, 1) after reading the characters ix from s0 (2m, 1)."""
    P = P.astype(np.float64)
    s = np.array(s0, dtype=np.float64).reshape(1, -1)
    for x in np.asarray(ix, dtype=np.intp).tolist():
        s = step(P, s, [x], np.empty_like(s))
    return s.reshape(-1, 1)


def synthesize(P: LSTM, s0, x0: int, n: int, *, rng: np.random.Generator, temperature: float = 1.0,
               top_p: float = 1.0, stop_ix: int | None = None, greedy: bool = False) -> np.ndarray:
    """rnn_core.synthesize for the LSTM, from the state s0 (2m, 1) = [h; C]: the same rules
    (temperature, top-p, greedy, a stop character) and the same draw, p's cumulative sum
    against one uniform number per character."""
    P = P.astype(np.float64)
    m = P.m
    s = np.array(s0, dtype=np.float64).reshape(1, 2 * m)
    nxt = np.empty_like(s)
    Vt = P.V / temperature
    ct = P.c[:, 0] / temperature
    u = [] if greedy else rng.random(n).tolist()
    out = np.empty(n, dtype=np.intp)
    x = int(x0)
    for k in range(n):
        s, nxt = step(P, s, [x], nxt), s
        o = Vt @ s[0, :m] + ct
        p = np.exp(o - o.max())
        if top_p < 1.0:
            order = np.argsort(-p, kind="stable")
            mass = np.cumsum(p[order])
            keep = int(mass.searchsorted(top_p * mass[-1])) + 1
            p[order[keep:]] = 0.0
        if greedy:
            x = int(p.argmax())
        else:
            cp = np.cumsum(p)
            x = int(cp.searchsorted(u[k] * cp[-1], "right"))
        if x == stop_ix:
            return out[:k]
        out[k] = x
    return out
