"""rnn_core: a character-level vanilla RNN in numpy (KTH DD2424, Assignment 4).

Letters as in the course: K characters in the vocabulary, m hidden units,
T = seq_length characters per chunk.

    a_t = W h_{t-1} + U x_t + b      h_t = tanh(a_t)
    o_t = V h_t + c                  p_t = softmax(o_t)
    loss = sum_t -log p_t[y_t]       (or its mean over t: the 2025 recipe)

Shapes: b (m, 1), c (K, 1), U (m, K), W (m, m), V (K, m), float64.

Sections follow the assignment: text and vocabulary -> parameters -> the forward and
backward pass of one chunk -> gradient checks -> optimisers -> sampling -> training.
Every random draw comes from a numpy.random.Generator passed in by the caller. Functions
trust their arguments: the workbook checks every value once (workbook/params.py) first.
What goes beyond the assignment (mini-batches, validation, checkpoints, the report) is in
the package workbook/, which builds on this file; this file imports only numpy.
"""
import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np


class RNNError(ValueError):
    """A problem with the user's input, stated in one line with its fix."""


# ----------------------------------------------------------------------------- text and vocabulary

def load_text(path) -> str:
    """The whole book as one string; Python reads Windows (CRLF) and old Mac (CR) line ends as LF."""
    with open(path, encoding="utf-8-sig") as f:      # -sig: a byte-order mark is not a character
        return f.read()


class Vocab:
    """The sorted set of distinct characters of a text: the same in every process, which the
    order of a Python set is not. K characters; encode(str) -> indices, decode(indices) -> str.
    """

    def __init__(self, text: str):
        self.chars = "".join(sorted(set(text)))
        self.code_points = np.array([ord(ch) for ch in self.chars], dtype="<u4")   # index -> character
        self.index = np.full(int(self.code_points.max()) + 1, -1, dtype=np.intp)   # character -> index
        self.index[self.code_points] = np.arange(len(self.chars))

    @property
    def K(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def encode(self, text: str) -> np.ndarray:
        """The indices of the characters of text, shape (len(text),)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)   # each character's code point
        ix = self.index[np.minimum(codes, len(self.index) - 1)]           # looked up in the table at once
        unknown = (codes >= len(self.index)) | (ix < 0)
        if unknown.any():
            bad = sorted({text[i] for i in np.flatnonzero(unknown)[:1000]})
            raise RNNError(f"characters not in the vocabulary: {''.join(bad)!r}; "
                           f"use only characters of the training text (K={self.K})")
        return ix

    def decode(self, ix) -> str:
        """The characters of the indices ix, as one string."""
        return self.code_points[np.asarray(ix, dtype=np.intp)].tobytes().decode("utf-32-le")


# ----------------------------------------------------------------------------- parameters

@dataclass
class RNN:
    """The five parameter arrays; gradients and optimiser state reuse the same shapes."""

    b: np.ndarray  # (m, 1)
    c: np.ndarray  # (K, 1)
    U: np.ndarray  # (m, K)
    W: np.ndarray  # (m, m)
    V: np.ndarray  # (K, m)

    NAMES: ClassVar[tuple] = ("b", "c", "U", "W", "V")

    @property
    def K(self) -> int:
        return self.U.shape[1]

    @property
    def m(self) -> int:
        return self.U.shape[0]

    def arrays(self) -> list:
        return [getattr(self, n) for n in self.NAMES]

    def copy(self) -> "RNN":
        return type(self)(*(a.copy() for a in self.arrays()))

    def astype(self, dtype) -> "RNN":
        """The same parameters in dtype; arrays already in it are shared, not copied."""
        return type(self)(*(np.asarray(a, dtype=dtype) for a in self.arrays()))

    @staticmethod
    def shapes(K: int, m: int) -> dict:
        return {"b": (m, 1), "c": (K, 1), "U": (m, K), "W": (m, m), "V": (K, m)}

    @classmethod
    def packed(cls, K: int, m: int, dtype=np.float64) -> tuple["RNN", np.ndarray]:
        """A zero RNN whose arrays view one flat vector, returned too: clip and step it in one go."""
        shapes = cls.shapes(K, m)
        flat = np.zeros(sum(math.prod(s) for s in shapes.values()), dtype=dtype)
        views, start = [], 0
        for name in cls.NAMES:
            size = math.prod(shapes[name])
            views.append(flat[start:start + size].reshape(shapes[name]))
            start += size
        return cls(*views), flat


def init_rnn(K: int, m: int, *, rng: np.random.Generator, init: str = "normal", sigma: float = 0.01) -> RNN:
    """New parameters: b = c = 0 and U, W, V drawn from rng.

    init="normal": U, W, V ~ N(0, sigma^2), the 2017-2024 recipe (sigma 0.01).
    init="xavier": U std 1/sqrt(2K), W std 1/sqrt(2m), V std 1/sqrt(m), the 2025 recipe.
    """
    rnn, _ = RNN.packed(K, m)
    std = {"normal": {"U": sigma, "W": sigma, "V": sigma},
           "xavier": {"U": 1 / math.sqrt(2 * K), "W": 1 / math.sqrt(2 * m), "V": 1 / math.sqrt(m)}}[init]
    for name in ("U", "W", "V"):
        arr = getattr(rnn, name)
        arr[...] = rng.standard_normal(arr.shape) * std[name]
    return rnn


# ----------------------------------------------------------------------------- forward and backward

class Buffers:
    """Work arrays for chunks of T characters, allocated once per training run."""

    def __init__(self, K: int, m: int, T: int, dtype=np.float64):
        self.H = np.empty((T + 1, m), dtype)   # H[0] = h0, H[t+1] = h_t
        self.P = np.empty((T, K), dtype)       # probabilities, then dL/do
        self.dH = np.empty((T, m), dtype)      # dL/dh_t from the output layer
        self.dA = np.empty((T, m), dtype)      # dL/da_t
        self.D = np.empty((T, m), dtype)       # tanh'(a_t) = 1 - h_t^2
        self.tmp = np.empty(m, dtype)
        self.rows = np.arange(T)
        self.eye = np.eye(K, dtype=dtype)      # one-hot rows, for dU as one matrix product


def backward_through_time(dH, Hs, W, D, dA, tmp, keep=None) -> None:
    """dL/da_t for t = T..1 into dA, from dL/dh_t through the output layer (dH) and the hidden
    states h_t (Hs): dL/dh_t = dH_t + W^T dL/da_{t+1}, dL/da_t = dL/dh_t * (1 - h_t^2).

    Shapes (T, m), or (T, B, m) for B streams side by side (rows: dL/da W = (W^T dL/da)^T).
    dA may be dH itself: step t reads dH[t] before writing dA[t]. keep (T, B, 1): 0 where step
    t + 1 started afresh (a tweet's start), so that dL/dh_t gets nothing through it. D receives
    1 - h_t^2; tmp is the shape of one step.
    """
    np.multiply(Hs, Hs, out=D)
    np.subtract(1.0, D, out=D)
    T = len(dH)
    np.multiply(dH[T - 1], D[T - 1], out=dA[T - 1])
    for t in range(T - 2, -1, -1):
        np.dot(dA[t + 1], W, out=tmp)   # W^T da_{t+1}, for every stream at once
        if keep is not None:
            tmp *= keep[t + 1]
        tmp += dH[t]
        np.multiply(tmp, D[t], out=dA[t])


def forward_backward(P: RNN, x: np.ndarray, y: np.ndarray, h0, buf: Buffers, G: RNN) -> float:
    """The loss summed over the chunk x, y (int arrays (T,)) from h0; writes the gradients
    into G and h_1..h_T into buf.H[1:]."""
    T = len(x)
    H, Pr, dH, dA, D, tmp, rows = buf.H, buf.P, buf.dH, buf.dA, buf.D, buf.tmp, buf.rows
    W = P.W
    H[0] = h0.reshape(-1)
    XU = P.U.T[x]                       # (T, m): U x_t is column x_t of U, no one-hot product
    XU += P.b.T
    for t in range(T):                  # the forward recurrence: the only per-step work
        np.dot(W, H[t], out=tmp)
        tmp += XU[t]
        np.tanh(tmp, out=H[t + 1])
    Hs = H[1:]
    np.dot(Hs, P.V.T, out=Pr)           # all T outputs in one product, (T, K)
    Pr += P.c.T
    Pr -= Pr.max(axis=1, keepdims=True)  # log-softmax, shifted so exp cannot overflow
    target = Pr[rows, y].sum()
    np.exp(Pr, out=Pr)
    total = Pr.sum(axis=1, keepdims=True)
    loss = float(np.log(total).sum() - target)
    Pr /= total
    Pr[rows, y] -= 1.0                  # dL/do_t = p_t - onehot(y_t)
    np.dot(Pr.T, Hs, out=G.V)
    np.sum(Pr, axis=0, out=G.c[:, 0])
    np.dot(Pr, P.V, out=dH)
    backward_through_time(dH, Hs, W, D, dA, tmp)
    np.dot(dA.T, H[:-1], out=G.W)       # sum_t da_t h_{t-1}^T in one product
    np.sum(dA, axis=0, out=G.b[:, 0])
    np.dot(dA.T, buf.eye[x], out=G.U)   # sum_t da_t x_t^T
    return loss


def loss_and_grads(rnn: RNN, x, y, h0) -> tuple[float, RNN, np.ndarray]:
    """Cross-entropy summed over the T characters of x, y (int arrays (T,)) from h0 (m, 1),
    its unclipped gradients, and h_T (m, 1)."""
    x, y = np.asarray(x, dtype=np.intp), np.asarray(y, dtype=np.intp)
    G, _ = RNN.packed(rnn.K, rnn.m)
    buf = Buffers(rnn.K, rnn.m, len(x))
    loss = forward_backward(rnn, x, y, np.asarray(h0, dtype=np.float64), buf, G)
    return loss, G, buf.H[-1].reshape(-1, 1).copy()


# ----------------------------------------------------------------------------- gradient checks

def perturbed_losses(P: RNN, x, y, h0, name: str, delta, chunk: int = 2048) -> np.ndarray:
    """Per-character losses of many copies of the model at once, shape (size of `name`, T).

    Copy n has element n (flat order) of parameter `name` moved by `delta`, real or complex.
    The copies run side by side as the rows of one batch, by the plain forward formulas:
    an evaluation independent of the backward pass that it checks.
    """
    K, m, T = P.K, P.m, len(x)
    shape = RNN.shapes(K, m)[name]
    size = math.prod(shape)
    rows, cols = (np.unravel_index(np.arange(size), shape) + (np.zeros(size, dtype=np.intp),))[:2]
    dtype = np.result_type(P.W.dtype, delta)
    XU = (P.U[:, x] + P.b).T                          # (T, m)
    steps = np.arange(T)[:, None]

    def run(r, cc):                                    # losses (T, len(r)) of the copies r, cc
        n, ar = len(r), np.arange(len(r))
        recur = name in ("b", "U", "W")                # c and V leave the hidden states as they are:
        h = np.repeat(h0.reshape(1, m).astype(dtype), n if recur else 1, axis=0)  # run them once
        Hs = np.empty((T, len(h), m), dtype=dtype)
        for t in range(T):
            a = h @ P.W.T + XU[t]
            if name == "b":
                a[ar, r] += delta
            elif name == "U":
                a[ar, r] += delta * (cc == x[t])
            elif name == "W":
                a[ar, r] += delta * h[ar, cc]
            h = Hs[t] = np.tanh(a)
        O = np.repeat(Hs @ P.V.T + P.c.T, 1 if recur else n, axis=1)   # (T, n, K)
        if name == "c":
            O[:, ar, r] += delta
        elif name == "V":
            O[:, ar, r] += delta * Hs[:, 0, cc]
        O -= O.real.max(axis=2, keepdims=True)         # a real shift keeps the loss analytic
        return np.log(np.exp(O).sum(axis=2)) - O[steps, ar[None, :], y[:, None]]

    out = np.empty((size, T), dtype=dtype)
    todo = np.arange(size)
    if name == "U":                                    # a column of U for a character not in x is
        idle = ~np.isin(cols, x)                       # never used: those copies are the base model
        out[idle] = run(rows[:1], np.array([-1])).T
        todo = todo[~idle]
    for s in range(0, len(todo), chunk):               # chunks bound memory (W at m=100: 10,000 copies)
        part = todo[s:s + chunk]
        out[part] = run(rows[part], cols[part]).T
    return out


def numerical_grads(rnn: RNN, x, y, h0, *, h: float = 1e-4) -> RNN:
    """Centred differences (L(theta + h) - L(theta - h)) / 2h for every element.

    The difference is taken character by character before summing over the chunk, which keeps
    round-off near that of one character's loss (about 4) instead of the chunk's (about 100).
    """
    x, y, h0 = np.asarray(x, dtype=np.intp), np.asarray(y, dtype=np.intp), np.asarray(h0, dtype=np.float64)
    out = []
    for name, a in zip(RNN.NAMES, rnn.arrays()):
        diff = perturbed_losses(rnn, x, y, h0, name, h) - perturbed_losses(rnn, x, y, h0, name, -h)
        out.append((diff.sum(axis=1) / (2 * h)).reshape(a.shape))
    return RNN(*out)


def complex_step_grads(rnn: RNN, x, y, h0, *, step: float = 1e-30) -> RNN:
    """dL/dtheta = Im L(theta + i*step) / step: no subtraction, so exact to machine precision."""
    x, y, h0 = np.asarray(x, dtype=np.intp), np.asarray(y, dtype=np.intp), np.asarray(h0, dtype=np.float64)
    out = []
    for name, a in zip(RNN.NAMES, rnn.arrays()):
        losses = perturbed_losses(rnn, x, y, h0, name, 1j * step)
        out.append((losses.imag.sum(axis=1) / step).reshape(a.shape))
    return RNN(*out)


def relative_error(ga, gn, eps: float = 1e-6) -> np.ndarray:
    """|ga - gn| / max(eps, |ga| + |gn|), element by element: the course's measure."""
    ga, gn = np.asarray(ga), np.asarray(gn)
    return np.abs(ga - gn) / np.maximum(eps, np.abs(ga) + np.abs(gn))


# ----------------------------------------------------------------------------- optimisers

@dataclass
class Optimizer:
    """One step of "adagrad", "rmsprop" or "adam" over the flat parameter vector theta, given
    the flat gradient g. M, S and t are its state; name and eta its settings."""

    name: str
    eta: float
    M: np.ndarray            # (n,) AdaGrad's sum of g^2, RMSProp's running mean of g^2, Adam's 1st moment
    S: np.ndarray            # (n,) Adam's second moment; (0,) for the others
    t: int = 0               # steps taken (Adam's bias correction uses it)
    tmp: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.tmp = np.empty_like(self.M)

    @classmethod
    def new(cls, name: str, size: int, eta: float, dtype=np.float64) -> "Optimizer":
        return cls(name, eta, np.zeros(size, dtype), np.zeros(size if name == "adam" else 0, dtype))

    def step(self, theta: np.ndarray, g: np.ndarray) -> None:
        M, S, tmp, eta = self.M, self.S, self.tmp, self.eta
        self.t += 1
        if self.name == "adagrad":                   # M += g^2; theta -= eta g / sqrt(M + eps)
            np.multiply(g, g, out=tmp)
            M += tmp
            np.add(M, 1e-8, out=tmp)
        elif self.name == "rmsprop":                 # M = 0.9 M + 0.1 g^2
            np.multiply(g, g, out=tmp)
            tmp *= 0.1
            M *= 0.9
            M += tmp
            np.add(M, 1e-8, out=tmp)
        else:                                        # Adam, bias-corrected, eps 1e-8
            M *= 0.9
            np.multiply(g, 0.1, out=tmp)
            M += tmp
            np.multiply(g, g, out=tmp)
            tmp *= 0.001
            S *= 0.999
            S += tmp
            np.divide(S, 1 - 0.999 ** self.t, out=tmp)
            np.sqrt(tmp, out=tmp)
            tmp += 1e-8
            np.divide(M, tmp, out=tmp)
            theta -= (eta / (1 - 0.9 ** self.t)) * tmp
            return
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= eta
        theta -= tmp


# ----------------------------------------------------------------------------- sampling

def feed(rnn: RNN, h0, ix) -> np.ndarray:
    """The hidden state (m, 1) after the model reads the characters ix, from h0 (m, 1): how a
    prime text sets the state that sampling continues from."""
    rnn = rnn.astype(np.float64)
    h = np.array(h0, dtype=np.float64).reshape(-1)
    for x in np.asarray(ix, dtype=np.intp).tolist():
        h = np.tanh(rnn.W @ h + rnn.U[:, x] + rnn.b[:, 0])
    return h.reshape(-1, 1)


def synthesize(rnn: RNN, h0, x0: int, n: int, *, rng: np.random.Generator,
               temperature: float = 1.0, top_p: float = 1.0, stop_ix: int | None = None,
               greedy: bool = False) -> np.ndarray:
    """Draw n characters, each from p_t by its cumulative sum, starting from h0 (m, 1) and input x0.

    temperature divides the logits; top_p keeps the smallest set of most probable characters
    whose total probability reaches top_p, renormalised. greedy: the most probable character
    every time (the limit of temperature -> 0; no random draws). Returns int array of shape (n,).
    stop_ix: stop early when this character (the end of a tweet) is drawn; it is not returned.
    """
    K, m = rnn.K, rnn.m
    rnn = rnn.astype(np.float64)         # a model trained in float32 too
    XU = list((rnn.U + rnn.b).T.copy())  # row k: U x + b for x = k, done once (a list: faster to index)
    # one product a character: [W 0; V c] [h_t; 1] is W h_t for the next step above o_t = V h_t + c
    WV = np.zeros((m + K, m + 1))        # (temperature folded into V and c)
    WV[:m, :m], WV[m:, :m], WV[m:, m] = rnn.W, rnn.V / temperature, rnn.c[:, 0] / temperature
    hh = np.ones(m + 1)                  # [h; 1]; h, a view, is where tanh writes h_t
    hh[:m] = np.asarray(h0, dtype=np.float64).reshape(-1)
    h, Wh_o = hh[:m], np.empty(m + K)
    Wh, o = Wh_o[:m], Wh_o[m:]           # views: W h_t and o_t
    np.dot(rnn.W, h, out=Wh)             # W h_0
    # |o_k| <= sum_j |V_kj| + |c_k| as |h_j| <= 1: while that is far below exp's overflow, no max-shift
    shift = float(np.abs(WV[m:]).sum(axis=1).max()) > 600
    u = [] if greedy else rng.random(n).tolist()   # all uniform draws at once
    out, cp, x = np.empty(n, dtype=np.intp), np.empty(K), int(x0)
    accumulate = np.add.accumulate       # np.cumsum's ufunc, without its wrapper's cost per call
    for i in range(n):
        np.add(Wh, XU[x], out=h)         # a_t = W h_{t-1} + U x_t + b
        np.tanh(h, out=h)                # h_t
        np.dot(WV, hh, out=Wh_o)         # W h_t and o_t
        if shift:
            o -= o.max()
        np.exp(o, out=o)                 # unnormalised p_t: the draw below scales u instead
        if top_p < 1.0:
            order = np.argsort(-o, kind="stable")
            mass = accumulate(o[order])
            keep = int(mass.searchsorted(top_p * mass[-1])) + 1   # first prefix reaching top_p
            o[order[keep:]] = 0.0
        if greedy:
            x = int(o.argmax())
        else:
            accumulate(o, out=cp)
            x = int(cp.searchsorted(u[i] * cp.item(-1), "right"))   # first k with cp_k > u
        if x == stop_ix:
            return out[:i]
        out[i] = x
    return out


# ----------------------------------------------------------------------------- training

@dataclass
class History:
    """What a training run records.

    loss, smooth_loss, epoch : arrays of shape (updates done,), entry k for update k + 1
    samples : list of (updates done, smooth loss then, text); the first at 0 updates
    best : the parameters with the lowest smooth loss (best_smooth_loss, after best_update
        updates); None when training diverged and the best was the model whose loss did
    best_h, best_x : the hidden state (m,) the best model carried and the character that came
        next in the text: a state the model knows, to sample from; last_h : the final one
    stopped : "" when all n_updates ran, else why not ("diverged", or the workbook's
        "interrupted"); message says what happened and what to do
    resumed_from : the update a resumed run continued from; seconds : training time, all sessions
    """

    loss: np.ndarray
    smooth_loss: np.ndarray
    epoch: np.ndarray
    samples: list
    best: RNN | None
    best_h: np.ndarray
    best_x: int
    last_h: np.ndarray
    best_update: int
    best_smooth_loss: float
    seconds: float
    stopped: str = ""
    message: str = ""
    resumed_from: int = 0

    @property
    def updates(self) -> int:
        return len(self.loss)


@dataclass
class TrainState:
    """Everything a training run is after k updates: what the loop advances, and what saving
    and resuming a run (the workbook's checkpoints) write and read whole."""

    theta: np.ndarray            # (n,) the parameters b, c, U, W, V, flat
    opt: Optimizer               # the optimiser's state: M, S (flat like theta) and t
    hprev: np.ndarray            # (B, m) the hidden state each stream carries into its next chunk
    rng: np.random.Generator     # the run's generator
    best: np.ndarray             # (n,) the best parameters so far,
    best_h: np.ndarray           # (m,) and the hidden state they carried then (stream 0's)
    loss: np.ndarray             # (n_updates,) the loss of each update
    smooth_loss: np.ndarray      # (n_updates,) the smooth loss after it
    epoch: np.ndarray            # (n_updates,) the epoch it belongs to
    k: int = 0                   # updates done
    e: int = 0                   # where stream 0's next chunk starts
    current_epoch: int = 0
    smooth: float = 0.0          # the smooth loss after update k
    sample_update: list = field(default_factory=list)   # samples: when drawn,
    sample_text: list = field(default_factory=list)     # and their characters
    best_x: int = 0              # the character after the best model's chunk: where sampling starts
    best_update: int = 0
    best_smooth_loss: float = math.inf
    seconds: float = 0.0         # training time, over every session of the run
    P: RNN | None = field(default=None, repr=False)     # theta as b, c, U, W, V (views)

    @classmethod
    def new(cls, rnn: RNN, *, n_updates: int, optimizer: str, eta: float, rng: np.random.Generator,
            batch_size: int = 1, dtype=np.float64) -> "TrainState":
        """The state before the first update: rnn's parameters (copied, in dtype), h = 0."""
        P, theta = type(rnn).packed(rnn.K, rnn.m, dtype)
        for dst, src in zip(P.arrays(), rnn.arrays()):
            dst[...] = src
        return cls(theta=theta, opt=Optimizer.new(optimizer, theta.size, eta, dtype),
                   hprev=np.zeros((batch_size, rnn.m), dtype), rng=rng, best=theta.copy(),
                   best_h=np.zeros(rnn.m, dtype), loss=np.empty(n_updates), smooth_loss=np.empty(n_updates),
                   epoch=np.empty(n_updates, np.int64), P=P)

    def record(self, loss: float) -> None:
        """Update k + 1 is done: smooth its loss and keep both."""
        k = self.k
        self.smooth = loss if k == 0 else 0.999 * self.smooth + 0.001 * loss
        self.loss[k], self.smooth_loss[k], self.epoch[k] = loss, self.smooth, self.current_epoch
        self.k = k + 1

    def keep_best(self, smooth_loss: float, next_x: int) -> None:
        """The model after update k is the best so far: keep it, with the hidden state it carries
        and the character that comes next (a passage from it starts there)."""
        self.best_update, self.best_smooth_loss, self.best_x = self.k, smooth_loss, next_x
        np.copyto(self.best, self.theta)
        np.copyto(self.best_h, self.hprev[0])

    def history(self) -> History:
        """The run so far as a History, models in float64. Sample j was drawn from the model after
        j updates: it is labelled with the smooth loss then."""
        k = self.k
        best, best_flat = type(self.P).packed(self.P.K, self.P.m)
        best_flat[...] = self.best
        samples = [(j, float(self.smooth_loss[max(j - 1, 0)]) if k else math.nan, ix)
                   for j, ix in zip(self.sample_update, self.sample_text)]
        return History(loss=self.loss[:k], smooth_loss=self.smooth_loss[:k], epoch=self.epoch[:k],
                       samples=samples, best=best, best_h=self.best_h.astype(np.float64), best_x=self.best_x,
                       last_h=self.hprev[0].astype(np.float64), best_update=self.best_update,
                       best_smooth_loss=self.best_smooth_loss, seconds=self.seconds)


class Reader:
    """How training reads the text: the assignment's order, chunk after chunk from position e
    with the hidden state carried from one to the next, and back to e = 0 and h = 0 at the end
    of the text (one epoch); and the pass that learns from a chunk."""

    def __init__(self, data: np.ndarray, K: int, m: int, *, T: int, loss_reduction: str = "sum",
                 dtype=np.float64):
        self.data, self.T = data, T
        self.L = len(data) - 1                 # characters each stream reads
        self.starts = np.zeros(1, np.intp)     # where each stream's part of the text starts
        self.buf = Buffers(K, m, T, dtype)
        self.G, self.grad = RNN.packed(K, m, dtype)      # the gradients, as b, c, U, W, V and flat
        self.scale = 1.0 / T if loss_reduction == "mean" else 1.0

    def next_chunk(self, st: TrainState) -> np.ndarray:
        """Where each stream's next chunk starts (B,); at the text's end, a new epoch from h = 0."""
        if st.e > self.L - self.T:             # e > N - T - 1: the assignment's test
            st.e, st.current_epoch = 0, st.current_epoch + 1
            st.hprev[:] = 0.0
        return self.starts + st.e

    def learn(self, st: TrainState, starts: np.ndarray) -> float:
        """Forward and backward pass of the chunk at e: its loss (summed, or averaged with
        loss_reduction "mean"), its gradient in self.grad, and h_T carried into st.hprev."""
        xy = self.data[st.e:st.e + self.T + 1].astype(np.intp, copy=False)   # X then Y, one shifted
        loss = forward_backward(st.P, xy[:-1], xy[1:], st.hprev[0], self.buf, self.G) * self.scale
        if self.scale != 1.0:
            self.grad *= self.scale
        st.hprev[...] = self.buf.H[self.T]
        return loss

    def advance(self, st: TrainState) -> None:
        st.e += self.T


class Watch:
    """What the loop reports and keeps: samples every sample_every updates, the best model by
    smooth loss, progress (at the start, every 100 updates, at the end), time, how it stopped."""

    best_by = "smooth"                         # the loss that picks the best model

    def __init__(self, *, sample_every: int = 10_000, sample_length: int = 200,
                 progress: Callable[[int, float], None] | None = None):
        self.sample_every, self.sample_length, self.progress = sample_every, sample_length, progress
        self.stopped = self.message = ""
        self.best_lost = False

    def begin(self, st: TrainState) -> None:
        self.k0 = st.k                         # 0, or the update a resumed run starts from
        self.clock, self.seconds0 = time.perf_counter(), st.seconds
        if self.progress is not None:
            self.progress(st.k, st.smooth)

    def carry_on(self, st: TrainState) -> bool:
        """Asked before each chunk; False stops the run there (the workbook's watch: Ctrl-C)."""
        return True

    def sample(self, st: TrainState, x0: int) -> None:
        """Every sample_every updates: sample_length characters from hprev and the input x0."""
        if st.k % self.sample_every == 0 and self.sample_length:
            st.sample_update.append(st.k)
            st.sample_text.append(synthesize(st.P, st.hprev[0], x0, self.sample_length, rng=st.rng))

    def after_update(self, st: TrainState, next_x: int) -> None:
        """After update k; next_x is the character after the chunk just learned."""
        self.keep_best(st, next_x)
        if self.progress is not None and st.k % 100 == 0:
            self.progress(st.k, st.smooth)

    def keep_best(self, st: TrainState, next_x: int) -> None:
        if st.smooth < st.best_smooth_loss:
            st.keep_best(st.smooth, next_x)

    def diverged(self, st: TrainState, what: str) -> None:
        """The loss became NaN or infinite: say so, and which best model is kept, if any."""
        self.stopped = "diverged"
        self.best_lost = self.best_by == "smooth" and st.best_update == st.k
        self.message = what + ("; no best model is kept: the best so far is the model whose loss this is"
                               if self.best_lost else f"; the best model is that of update {st.best_update:,}")

    def end(self, st: TrainState) -> History:
        st.seconds = self.seconds0 + time.perf_counter() - self.clock
        if self.progress is not None and st.k % 100:
            self.progress(st.k, st.smooth)
        hist = st.history()
        hist.stopped, hist.message, hist.resumed_from = self.stopped, self.message, self.k0
        if self.best_lost:
            hist.best = None
        return hist


def train(rnn: RNN, data, *, n_updates: int, rng: np.random.Generator, seq_length: int = 25,
          eta: float = 0.1, optimizer: str = "adagrad", clip: float = 5.0, loss_reduction: str = "sum",
          sample_every: int = 10_000, sample_length: int = 200,
          progress: Callable[[int, float], None] | None = None,
          state: TrainState | None = None, reader: Reader | None = None, watch: Watch | None = None) -> History:
    """Train rnn in place with the assignment's loop and return its History.

    data : int array (N,), the encoded text. The position e steps by seq_length; hprev carries
    over between chunks; when e > N - seq_length - 1, e returns to 0 and hprev to zeros (a new
    epoch). Gradients are clipped element-wise to [-clip, clip] before the optimiser's step.
    smooth_loss starts at the first loss, then 0.999 smooth_loss + 0.001 loss. loss_reduction
    "sum" (2017-2024) or "mean" over the chunk (2025). At 0 updates and every sample_every,
    sample_length characters are drawn from hprev and the current input. progress(updates
    done, smooth loss) is called at the start, every 100 updates and at the end. A NaN or
    infinite loss stops the run before that update (History.stopped "diverged").

    state, reader, watch : the loop's collaborators, by default the assignment's (made from the
    arguments above); the workbook passes richer ones (mini-batches, validation, checkpoints).
    """
    st = state or TrainState.new(rnn, n_updates=n_updates, optimizer=optimizer, eta=eta, rng=rng)
    reader = reader or Reader(data, rnn.K, rnn.m, T=seq_length, loss_reduction=loss_reduction)
    watch = watch or Watch(sample_every=sample_every, sample_length=sample_length, progress=progress)
    watch.begin(st)
    with np.errstate(over="ignore", invalid="ignore"):   # a NaN or infinite loss is caught below
        while watch.carry_on(st):
            starts = reader.next_chunk(st)               # where each stream's next chunk starts
            watch.sample(st, int(data[starts[0]]))       # every sample_every updates
            if st.k == n_updates:
                break
            loss = reader.learn(st, starts)              # forward and backward pass
            if not math.isfinite(loss):
                last = f"; the last finite smooth loss was {st.smooth:.4g} at update {st.k:,}" if st.k else ""
                watch.diverged(st, f"the loss became {loss} at update {st.k + 1:,}{last}. Lower eta "
                                   f"(now {eta:g}) or clip (now {clip:g}) and train again")
                break
            np.clip(reader.grad, -clip, clip, out=reader.grad)   # in place, in one pass
            st.opt.step(st.theta, reader.grad)
            st.record(loss)                              # smooth loss and history; k + 1
            watch.after_update(st, next_x=int(data[starts[0] + reader.T]))   # best model, progress
            reader.advance(st)
    hist = watch.end(st)
    for dst, src in zip(rnn.arrays(), st.P.arrays()):
        dst[...] = src
    return hist
